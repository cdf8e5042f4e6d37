"""From a risk event to a proposed intervention (pure): action, channel, approved message.

The policy engine names the action and the channels in order of preference with a template each;
the contact policy picks the first channel this customer may be contacted on now (or routes a
vulnerable customer to a specialist, or defers, or blocks); the template is rendered in the
customer's language (English when the template has no variant in it). Nothing is sent here: the
proposal becomes a case, and the contact policy is checked again at the moment of sending.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from equilibrate.alert.contact_policy import ContactHistory, ContactRules, Decision, choose
from equilibrate.risk.policy import Policy, RenderedMessage
from equilibrate.risk.policy_words import PLACEHOLDERS
from equilibrate.settings import Settings

#: Levels at which the engine proposes contact.
CONTACT_LEVELS = frozenset({"MEDIUM", "HIGH", "CRITICAL"})


@dataclass(frozen=True)
class Proposal:
    customer_id: str
    action: str
    route: str  # send, specialist, defer, blocked (from the contact policy), or "monitor"
    channel: str | None
    message: RenderedMessage | None
    decision: Decision | None
    reason: str | None

    def case_fields(self, event: Mapping[str, object]) -> dict[str, object]:
        """What the case records of the proposal and of the risk event behind it."""
        m = self.message
        return {
            "action": self.action,
            "route": self.route,
            "channel": self.channel or "",
            "template_id": m.template_id if m else "",
            "template_version": m.version if m else "",
            "approval_ref": m.approval if m else "",
            "language": m.language if m else "",
            "subject": (m.subject or "") if m else "",
            "message": m.body if m else "",
            "policy_checks": self.decision.audit if self.decision else "",
            "policy_result": self.route,
            "reason": self.reason or "",
            "risk_score": event.get("risk_score", ""),
            "risk_level": event.get("risk_level", ""),
            "hardship_type": event.get("hardship_type", ""),
            "reasons": event.get("reasons", ""),
            "model_version": event.get("model_version", ""),
            "scored_at": event.get("scored_at", ""),
        }


def first_name(full_name: str) -> str:
    """The customer's first name, cut to what the templates allow (never an empty greeting)."""
    name = (full_name or "").strip().split(" ")[0] or "there"
    return name[: PLACEHOLDERS["first_name"].max_length]


def bank_values(settings: Settings) -> dict[str, str]:
    return {
        "bank_name": settings.bank_name,
        "helpline": settings.bank_helpline,
        "app_link": settings.bank_app_link,
        "opening_hours": settings.bank_opening_hours,
    }


def propose(
    event: Mapping[str, object],
    customer: Mapping[str, str],
    policy: Policy,
    history: ContactHistory,
    now: datetime,
    *,
    rules: ContactRules,
    values: Mapping[str, str],
) -> Proposal:
    """The intervention for a customer whose risk `event` (risk-events payload) just arrived."""
    customer_id = str(event["customer_id"])
    level, hardship = str(event.get("risk_level", "LOW")), str(event.get("hardship_type", "None"))
    recommendation = policy.recommend(hardship, level)
    if level not in CONTACT_LEVELS or not recommendation.contacts:
        return Proposal(customer_id, recommendation.action, "monitor", None, None, None, f"{level}: no contact")
    decision = choose(customer, list(recommendation.channels), history, now, rules)
    template = None
    if decision.channel is not None:
        template = next(c.template for c in recommendation.contacts if c.channel == decision.channel)
    message = None
    if template is not None:
        fill = {**values, "first_name": first_name(customer.get("name", "")), "reference": customer_id[-12:]}
        message = policy.message(template, customer.get("language", "en") or "en", fill)
    return Proposal(customer_id, recommendation.action, decision.route, decision.channel, message, decision,
                    decision.reason)  # fmt: skip
