"""Sends approved messages from the outbox: the contact policy again at the moment of sending, then the
channel, then the result recorded on the case, the contact mirror and the audit queue in one MULTI.

See `outbox` for what a crash at each point leads to. The policy's "now" is event time (the stream
watermark), like everything else in the pipeline; retries after a gateway failure wait in wall-clock
time, because the outage is real.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

import redis

from equilibrate.alert import audit_queue, contact_history, outbox, outcomes
from equilibrate.alert.actions import SYSTEM, audit_record, event_time_text, with_audit
from equilibrate.alert.cases import CaseStore, case_key
from equilibrate.alert.channels import Channel, DeliveryResult, OutboundMessage, backoff_delay, failure
from equilibrate.alert.contact_policy import ContactRules, Decision, evaluate
from equilibrate.alert.lifecycle import TransitionError
from equilibrate.settings import Settings
from equilibrate.storage.customer_registry import profile_key

log = logging.getLogger(__name__)

#: Where each channel's address is in the customer's hash (in-app messages go to the customer id).
ADDRESS_FIELD = {"email": "email", "sms": "phone", "voice": "phone"}
#: Case states from which a send is made: approved (first try) and failed (a retry).
SENDABLE = frozenset({"approved", "failed"})


@dataclass
class SendCounts:
    sent: int = 0
    failed: int = 0
    blocked: int = 0
    deferred: int = 0
    skipped: int = 0  # already sent, superseded or no longer approved
    by_result: dict[str, int] = field(default_factory=dict)


def customer_view(client: redis.Redis, customer_id: str) -> dict[str, str]:
    raw = cast(dict[bytes, bytes], client.hgetall(profile_key(customer_id)))
    return {k.decode(): v.decode() for k, v in raw.items()}


class Sender:
    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        channels: Mapping[str, Channel],
        rules: ContactRules,
        *,
        consumer: str,
    ) -> None:
        self.redis = client
        self.settings = settings
        self.channels = channels
        self.rules = rules
        self.consumer = consumer
        self.cases = CaseStore(client)
        self.counts = SendCounts()
        outbox.ensure_group(client)

    def step(self, now: datetime, limit: int = 50) -> int:
        """Release due deferred / retried sends, then make up to `limit` sends; returns entries handled."""
        outbox.release_due(self.redis, outbox.DEFERRED_KEY, int(now.timestamp() * 1000))
        outbox.release_due(self.redis, outbox.RETRY_KEY, int(time.time() * 1000))
        claim_ms = int(self.settings.outbox_claim_idle_s * 1000)
        entries = outbox.take(self.redis, self.consumer, limit, claim_ms)
        for entry in entries:
            result = self.handle(entry, now)
            self.counts.by_result[result] = self.counts.by_result.get(result, 0) + 1
        return len(entries)

    def _ack(self, entry: outbox.Entry) -> None:
        with self.redis.pipeline(transaction=True) as pipe:
            outbox.ack(pipe, entry)
            pipe.execute()

    def handle(self, entry: outbox.Entry, now: datetime) -> str:
        """One outbox entry to its end: sent, failed (retry scheduled), deferred, blocked or skipped."""
        case = self.cases.get(entry.case_id) if entry.case_id else None
        if case is None or case.get("message_id") != entry.message_id or case["state"] not in SENDABLE:
            # Superseded, already sent (its result step acknowledged it, or died just before), or moved on.
            if case is not None and case.get("sent_message_id") == entry.message_id:
                log.info("case %s: message %s was already sent; not sending it twice", entry.case_id, entry.message_id)
            self._ack(entry)
            self.counts.skipped += 1
            return "skipped"
        try:
            return self._send(entry, case, now)
        except TransitionError as exc:  # an operator acted on the case meanwhile: theirs stands
            log.info("case %s: %s", entry.case_id, exc)
            self._ack(entry)
            self.counts.skipped += 1
            return "skipped"

    def _send(self, entry: outbox.Entry, case: dict[str, str], now: datetime) -> str:
        customer_id, channel = case["customer_id"], case.get("channel", "")
        customer = customer_view(self.redis, customer_id)
        history = contact_history.load(self.redis, customer_id, now, self.rules.window)
        decision = evaluate(customer, channel, history, now, self.rules)
        if not decision.allowed:
            return self._not_now(entry, case, decision, now)
        gateway = self.channels.get(channel)
        to = customer_id if channel == "app" else customer.get(ADDRESS_FIELD.get(channel, ""), "")
        interrupted = case.get("sending") == entry.message_id
        if gateway is None:
            result = failure(f"channel {channel} is not configured (see .env.example)", permanent=True, attempts=0)
        else:
            message = self._message(entry, case, to)
            self.redis.hset(case_key(entry.case_id), "sending", entry.message_id)
            result = gateway.send(message)
        checks = decision.audit
        if result.ok:
            return self._sent(entry, case, result, checks, now, interrupted=interrupted)
        return self._failed(entry, case, result, checks)

    def _message(self, entry: outbox.Entry, case: Mapping[str, str], to: str) -> OutboundMessage:
        return OutboundMessage(
            message_id=entry.message_id,
            case_id=entry.case_id,
            customer_id=case["customer_id"],
            channel=case["channel"],  # type: ignore[arg-type]  # the policy chose it
            to=to,
            language=case.get("language", "en"),
            subject=case.get("subject") or None,
            body=case.get("message", ""),
            template_id=case.get("template_id", ""),
            template_version=int(case.get("template_version") or 0),
            approval_ref=case.get("approval_ref", ""),
        )

    def _not_now(self, entry: outbox.Entry, case: dict[str, str], decision: Decision, now: datetime) -> str:
        checks, reason = decision.audit, decision.reason or ""
        if decision.route == "defer" and decision.next_allowed_at is not None:
            until = decision.next_allowed_at
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(case_key(entry.case_id), mapping={"deferred_until": event_time_text(until)})
                outbox.defer(pipe, entry, int(until.timestamp() * 1000))
                detail = f"message {entry.message_id} held until {event_time_text(until)} ({reason})"
                row = audit_record(case, "deferred", actor=SYSTEM, policy_checks=checks, policy_result="defer",
                                   detail=detail)  # fmt: skip
                audit_queue.queue(pipe, row)
                pipe.execute()
            self.counts.deferred += 1
            return "deferred"
        fields = {"policy_checks": checks, "policy_result": decision.route, "reason": reason}
        if decision.route == "specialist":
            fields["route"] = "specialist"

        def add(pipe: redis.client.Pipeline, written: dict[str, str]) -> None:
            outbox.ack(pipe, entry)
            audit_queue.queue(pipe, audit_record(written, "blocked", actor=SYSTEM, detail=f"at send: {reason}"))

        self.cases.transition(entry.case_id, "blocked", actor=SYSTEM, fields=fields, expect=case["state"], also=add)
        log.info("case %s: send blocked by the contact policy: %s", entry.case_id, reason)
        self.counts.blocked += 1
        return "blocked"

    def _sent(
        self,
        entry: outbox.Entry,
        case: dict[str, str],
        result: DeliveryResult,
        checks: str,
        now: datetime,
        *,
        interrupted: bool,
    ) -> str:
        sent_at = event_time_text(now)
        fields = {
            "sent_message_id": entry.message_id,
            "sent_at": sent_at,
            "delivery_ref": result.reference or "",
            "delivery_status": result.status,
            "delivery_detail": result.detail,
            "policy_checks": checks,
            "policy_result": "send",
            "sending": "",
        }
        note = "; sent again after an interrupted send (same message id)" if interrupted else ""
        detail = f"message {entry.message_id}: {result.detail} ({result.attempts} attempt(s)){note}"

        def add(pipe: redis.client.Pipeline, written: dict[str, str]) -> None:
            outbox.ack(pipe, entry)
            contact_history.add_sent(pipe, written["customer_id"], written["channel"], now, self.rules.window)
            outcomes.schedule(pipe, entry.case_id, written["customer_id"], now,
                              self.settings.intervention_response_days)  # fmt: skip
            audit_queue.queue(pipe, audit_record(written, "sent", actor=SYSTEM, delivery_status=result.status,
                                                 detail=detail))  # fmt: skip

        self.cases.transition(entry.case_id, "sent", actor=SYSTEM, fields=fields, expect=case["state"], also=add)
        if result.status == "delivered":
            self.cases.transition(entry.case_id, "delivered", actor=SYSTEM, expect="sent",
                                  also=with_audit("delivered", SYSTEM, delivery_status="delivered",
                                                  detail=f"message {entry.message_id}: {result.detail}"))  # fmt: skip
        log.info("case %s: %s message %s %s", entry.case_id, case.get("channel"), entry.message_id, result.status)
        self.counts.sent += 1
        return "sent"

    def _failed(self, entry: outbox.Entry, case: dict[str, str], result: DeliveryResult, checks: str) -> str:
        failures = int(case.get("failures") or 0) + 1
        retry = not result.permanent and failures <= self.settings.delivery_retries
        retry_s = backoff_delay(failures, self.settings.delivery_retry_s, max_s=self.settings.delivery_retry_s * 64)
        plan = (
            f"retry in {retry_s:.0f} s ({failures} of {self.settings.delivery_retries})" if retry else "no retry left"
        )
        if result.permanent:
            plan = "not retried (permanent)"
        fields = {"failures": failures, "last_error": result.detail, "delivery_status": "failed", "sending": "",
                  "policy_checks": checks}  # fmt: skip

        def add(pipe: redis.client.Pipeline, written: dict[str, str]) -> None:
            if retry:
                outbox.retry_later(pipe, entry, int((time.time() + retry_s) * 1000))
            else:
                outbox.ack(pipe, entry)
            detail = f"message {entry.message_id}: {result.detail}; {plan}"
            audit_queue.queue(
                pipe, audit_record(written, "failed", actor=SYSTEM, delivery_status="failed", detail=detail)
            )

        self.cases.transition(entry.case_id, "failed", actor=SYSTEM, fields=fields, expect=case["state"], also=add)
        log.warning("case %s: %s send failed: %s; %s", entry.case_id, case.get("channel"), result.detail, plan)
        self.counts.failed += 1
        return "failed"
