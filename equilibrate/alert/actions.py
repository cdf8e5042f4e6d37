"""The steps people and the engine take on a case, each with its audit row in the same MULTI.

The console, the API, the `equilibrate interventions` command line and the engine all act through
these functions, so every step is checked against the lifecycle (and the state the actor saw), and
every step that happens has exactly one audit row: the row is queued in Redis with the step
(`audit_queue`) and moved into the CSV log by whoever flushes next.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime

import redis

from equilibrate.alert import audit_queue, contact_history, outbox
from equilibrate.alert.audit import AuditRecord
from equilibrate.alert.cases import Also, CaseStore
from equilibrate.alert.lifecycle import RESPONDED, TransitionError
from equilibrate.risk.policy import PolicyError
from equilibrate.risk.policy_checks import edited_message_problems

log = logging.getLogger(__name__)

SYSTEM = "system"
#: States a case has a message out in (its outcome tells the contact policy whether it was answered).
CONTACTED = frozenset({"sent", "delivered", "failed"})


def audit_record(case: Mapping[str, str], action: str, *, actor: str, **extra: str) -> AuditRecord:
    """The audit row of a step on `case` (the case as written by the step); `extra` overrides fields."""
    values = {
        "customer_id": case.get("customer_id", ""),
        "case_id": case.get("case_id", ""),
        "channel": case.get("channel", ""),
        "template_id": case.get("template_id", ""),
        "template_version": case.get("template_version", ""),
        "approval_ref": case.get("approval_ref", ""),
        "language": case.get("language", ""),
        "message": case.get("message", ""),
        "risk_level": case.get("risk_level", ""),
        "hardship_type": case.get("hardship_type", ""),
        "model_version": case.get("model_version", ""),
        "reasons": case.get("reasons", ""),
        "policy_checks": case.get("policy_checks", ""),
        "policy_result": case.get("policy_result", ""),
        "delivery_status": case.get("delivery_status", ""),
    } | extra
    score = case.get("risk_score", "")
    try:
        risk_score = float(score) if score else None
    except ValueError:
        risk_score = None
    return AuditRecord(action=action, actor=actor, risk_score=risk_score, **values)


def with_audit(action: str, actor: str, **extra: str) -> Also:
    """A case step's `also`: queue the step's audit row in its MULTI."""

    def add(pipe: redis.client.Pipeline, case: dict[str, str]) -> None:
        audit_queue.queue(pipe, audit_record(case, action, actor=actor, **extra))

    return add


def chain(*steps: Also) -> Also:
    def add(pipe: redis.client.Pipeline, case: dict[str, str]) -> None:
        for step in steps:
            step(pipe, case)

    return add


def event_time_text(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_event_time(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class CaseActions:
    """Operator steps on cases (approve, reject, close, retry): what the console and the API call."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self.cases = CaseStore(client)

    def _case(self, case_id: str) -> dict[str, str]:
        case = self.cases.get(case_id)
        if case is None:
            raise TransitionError(f"no case {case_id}")
        return case

    def approve(
        self,
        case_id: str,
        actor: str,
        note: str = "",
        *,
        expect: str | None = None,
        message: str | None = None,
        subject: str | None = None,
        language: str | None = None,
    ) -> dict[str, str]:
        """Approve the proposed (or blocked) message: the case and its outbox entry in one MULTI.

        `message` (and `subject`, `language`): an operator's edit of the rendered text, checked against
        the policy's text rules (PolicyError listing what it breaks) and recorded as an override. The
        contact policy is checked again when the message is sent: an approval never overrides it.
        """
        case = self._case(case_id)
        if case.get("route") == "specialist":
            raise TransitionError(
                f"case {case_id} is for a specialist (vulnerable customer): nothing is sent automatically; "
                "record the outcome of the specialist's contact instead"
            )
        if not case.get("channel") or not case.get("message"):
            raise TransitionError(f"case {case_id} has no message to approve ({case.get('reason') or 'no channel'})")
        number = int(case.get("approvals") or 0) + 1
        message_id = f"{case_id}-{number}"
        fields: dict[str, object] = {
            "message_id": message_id,
            "approvals": number,
            "approved_by": actor,
            "approval_note": note,
        }
        override = ""
        edited = {"message": message, "subject": subject, "language": language}
        if any(value is not None and value != case.get(name, "") for name, value in edited.items()):
            lang = language or case.get("language", "en")
            body = case.get("message", "") if message is None else message
            title = case.get("subject") if subject is None else subject
            problems = edited_message_problems(case["channel"], lang, body, title)
            if problems:
                raise PolicyError("the edited message breaks the policy's rules: " + "; ".join(problems))
            fields |= {"message": body, "subject": title or "", "language": lang, "edited_by": actor}
            override = f"message edited by {actor} before approval"

        def add(pipe: redis.client.Pipeline, written: dict[str, str]) -> None:
            outbox.enqueue(pipe, case_id, message_id)
            detail = f"message {message_id}" + (f"; {note}" if note else "")
            row = audit_record(written, "approved", actor=actor, detail=detail, override_reason=override)
            audit_queue.queue(pipe, row)

        return self.cases.transition(
            case_id, "approved", actor=actor, fields=fields, expect=expect or case["state"], also=add
        )

    def reject(self, case_id: str, actor: str, reason: str, *, expect: str = "proposed") -> dict[str, str]:
        if not reason.strip():
            raise TransitionError(f"rejecting case {case_id} needs a reason (it goes into the audit log)")
        return self.cases.transition(
            case_id, "rejected", actor=actor, fields={"reject_reason": reason}, expect=expect,
            also=with_audit("rejected", actor, override_reason=reason),
        )  # fmt: skip

    def close(self, case_id: str, outcome: str, actor: str, note: str = "") -> dict[str, str]:
        """Close the case with its outcome; an answered or unanswered contact updates the contact mirror."""
        case = self._case(case_id)
        written = self.cases.transition(
            case_id, "outcome", actor=actor, outcome=outcome, fields={"outcome_note": note}, expect=case["state"],
            also=with_audit("outcome", actor, detail=f"{outcome}" + (f": {note}" if note else "")),
        )  # fmt: skip
        sent_at = parse_event_time(case.get("sent_at", ""))
        if case["state"] in CONTACTED and sent_at is not None and outcome in RESPONDED | {"no_response"}:
            contact_history.record_outcome(self.redis, case["customer_id"], outcome in RESPONDED, sent_at)
        return written

    def retry(self, case_id: str, actor: str) -> dict[str, str]:
        """Send a failed case's message again now (same message id, so the gateway can de-duplicate)."""
        case = self._case(case_id)
        message_id = case.get("message_id", "")
        if not message_id:
            raise TransitionError(f"case {case_id} has no approved message to retry")

        def add(pipe: redis.client.Pipeline, written: dict[str, str]) -> None:
            pipe.zrem(outbox.RETRY_KEY, f"{case_id}|{message_id}")
            outbox.enqueue(pipe, case_id, message_id)
            audit_queue.queue(pipe, audit_record(written, "retry", actor=actor, detail=f"message {message_id}"))

        return self.cases.transition(case_id, "failed", actor=actor, expect="failed", also=add)
