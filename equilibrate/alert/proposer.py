"""From a risk event to a proposed case (and, with AUTO_INTERVENE, an approval): the engine's first step,
shared with the console and the API, which may propose for a customer on an operator's request.

A risk event the customer's current score has superseded is skipped. A proposal nobody has acted on
yet follows the customer's level: withdrawn when they fall below MEDIUM, replaced when their level
changes (the action and template depend on it), so the approval queue shows who needs contact now.
Once approved, a case runs its course.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from equilibrate.alert import contact_history
from equilibrate.alert.actions import SYSTEM, CaseActions, event_time_text, parse_event_time, with_audit
from equilibrate.alert.cases import CaseStore
from equilibrate.alert.contact_policy import ContactRules
from equilibrate.alert.lifecycle import TransitionError
from equilibrate.alert.proposals import CONTACT_LEVELS, Proposal, bank_values, propose
from equilibrate.alert.sender import customer_view
from equilibrate.errors import InvalidEventError
from equilibrate.risk.policy import Policy
from equilibrate.settings import Settings

STATS_KEY = "eq:interventions:stats"


def count_stats(client: redis.Redis, **counts: int) -> None:
    """Add to the engine's counters (proposed, withdrawn, missed payments, ...) shown by `status`."""
    with client.pipeline(transaction=False) as pipe:
        for name, n in counts.items():
            if n:
                pipe.hincrby(STATS_KEY, name, n)
        pipe.execute()


@dataclass(frozen=True, slots=True)
class RiskEvent:
    customer_id: str
    level: str
    score: float
    at: datetime | None
    body: dict[str, Any]


def read_risk_event(raw: bytes | None) -> RiskEvent:
    """A risk-events payload, or InvalidEventError naming what is wrong with it."""
    if not raw:
        raise InvalidEventError("empty_message", "no payload")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEventError("not_json", str(exc)) from None
    if not isinstance(body, dict):
        raise InvalidEventError("not_an_object", type(body).__name__)
    customer_id, level = body.get("customer_id"), body.get("risk_level")
    if not isinstance(customer_id, str) or not customer_id:
        raise InvalidEventError("missing_customer_id", "risk event without customer_id")
    if not isinstance(level, str) or not level:
        raise InvalidEventError("missing_risk_level", "risk event without risk_level")
    score = body.get("risk_score")
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise InvalidEventError("bad_risk_score", f"risk_score {score!r}")
    at = parse_event_time(str(body.get("scored_at", "")))
    return RiskEvent(customer_id, level, float(score), at, body)


def event_from_profile(customer_id: str, profile: Mapping[str, str], now: datetime) -> RiskEvent:
    """A risk event made from the customer's current score (an operator proposing from the console)."""
    try:
        score = float(profile.get("risk_score") or 0.0)
    except ValueError:
        score = 0.0
    scored_at = profile.get("scored_at") or event_time_text(now)
    body: dict[str, Any] = {k: profile.get(k, "") for k in ("risk_level", "hardship_type", "reasons", "model_version")}
    body |= {"customer_id": customer_id, "risk_score": score, "scored_at": scored_at}
    level = profile.get("risk_level") or "LOW"
    return RiskEvent(customer_id, level, score, parse_event_time(scored_at), body)


class Proposer:
    def __init__(self, client: redis.Redis, settings: Settings, policy: Policy) -> None:
        self.redis = client
        self.settings = settings
        self.policy = policy
        self.rules = ContactRules.from_settings(settings)
        self.values = bank_values(settings)
        self.cases = CaseStore(client)
        self.actions = CaseActions(client)

    def _count(self, **counts: int) -> None:
        count_stats(self.redis, **counts)

    def propose(self, event: RiskEvent, *, force: bool = False) -> dict[str, str] | None:
        """Open a case for the event's customer when they need contact and have no open case
        (`force`: an operator asked, so a superseded-event check does not apply)."""
        customer = customer_view(self.redis, event.customer_id)
        if not force and _superseded(event, customer):
            self._count(superseded=1)
            return None
        open_id = self.cases.open_case(event.customer_id)
        if open_id is not None:
            current = self.cases.get(open_id) or {}
            if current.get("state") != "proposed" or current.get("risk_level") == event.level:
                return None  # acted on already, or the same level again (a duplicate event)
            note = f"risk level now {event.level} (was {current.get('risk_level', '?')})"
            try:
                self.cases.transition(open_id, "outcome", actor=SYSTEM, outcome="withdrawn", expect="proposed",
                                      also=with_audit("outcome", SYSTEM, detail=f"withdrawn: {note}"))  # fmt: skip
            except TransitionError:
                return None  # an operator acted on it meanwhile: theirs stands
            self._count(withdrawn=1)
        if event.level not in CONTACT_LEVELS:
            return None
        now = event.at or datetime.now(UTC)
        history = contact_history.load(self.redis, event.customer_id, now, self.rules.window)
        proposal = propose(event.body, customer, self.policy, history, now, rules=self.rules, values=self.values)
        if proposal.route == "monitor":
            return None
        detail = _proposal_detail(proposal)
        case = self.cases.propose(
            event.customer_id, proposal.case_fields(event.body), priority=event.score,
            also=with_audit("proposed", SYSTEM, detail=detail),
        )  # fmt: skip
        if case is None:
            return None  # another engine opened one first
        self._count(proposed=1, specialist=int(proposal.route == "specialist"))
        if proposal.route == "blocked":
            return self.cases.transition(
                case["case_id"], "outcome", actor=SYSTEM, outcome="contact_blocked", expect="proposed",
                also=with_audit("blocked", SYSTEM, detail=f"no channel allowed: {proposal.reason}"),
            )  # fmt: skip
        if self._auto(proposal, event.score):
            note = (f"AUTO_INTERVENE: score {event.score:g} >= {self.settings.auto_intervene_min_score:g} "
                    f"on {proposal.channel}")  # fmt: skip
            self._count(auto_approved=1)
            return self.actions.approve(case["case_id"], SYSTEM, note, expect="proposed")
        return case

    def _auto(self, proposal: Proposal, score: float) -> bool:
        s = self.settings
        return (
            s.auto_intervene
            and proposal.route in ("send", "defer")
            and proposal.channel in s.auto_channels
            and score >= s.auto_intervene_min_score
        )


def _superseded(event: RiskEvent, customer: Mapping[str, str]) -> bool:
    """The customer has been scored to another level since this event (an engine catching up on a
    backlog, e.g. after a backfill): the event is history, and a later one says where they are now.

    The risk engine publishes an event before it writes the customer's hash, so a hash still older
    than the event is not yet written, and the event stands.
    """
    current = parse_event_time(customer.get("scored_at", ""))
    if current is None or event.at is None or current <= event.at:
        return False
    return customer.get("risk_level", event.level) != event.level


def _proposal_detail(p: Proposal) -> str:
    if p.route == "specialist":
        return "vulnerable customer: routed to a specialist, never contacted automatically"
    if p.route == "defer" and p.decision is not None and p.decision.next_allowed_at is not None:
        return f"quiet hours now: the send waits until {p.decision.next_allowed_at:%Y-%m-%dT%H:%MZ}"
    if p.route == "blocked":
        return f"blocked: {p.reason}"
    return f"{p.action} on {p.channel}"
