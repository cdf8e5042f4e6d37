"""From a risk event to a proposed intervention: policy action, allowed channel, rendered template."""

from __future__ import annotations

from datetime import UTC, datetime

from equilibrate.alert.contact_policy import ContactHistory, ContactRules
from equilibrate.alert.proposals import Proposal, bank_values, first_name, propose
from equilibrate.risk.policy import load_policy
from equilibrate.settings import Settings

POLICY = load_policy()
VALUES = bank_values(Settings(_env_file=None))
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CUSTOMER = {
    "name": "Priya Sharma",
    "language": "en",
    "timezone": "Europe/London",
    "preferred_channel": "email",
    "consent_email": "true",
    "consent_sms": "true",
    "consent_app": "true",
    "consent_voice": "false",
    "vulnerable": "false",
    "email": "priya@example.com",
    "phone": "+447700900123",
}
EVENT = {"customer_id": "C0000042", "risk_level": "HIGH", "hardship_type": "Income Shock", "risk_score": 70.0}


def _propose(event: dict[str, object], customer: dict[str, str], now: datetime = NOON) -> Proposal:
    return propose(event, customer, POLICY, ContactHistory(), now, rules=ContactRules(), values=VALUES)


def test_a_high_risk_customer_gets_the_policy_action_on_their_preferred_allowed_channel() -> None:
    p = _propose(EVENT, CUSTOMER)
    assert p.route == "send" and p.channel == "email"
    assert p.action == POLICY.recommend("Income Shock", "HIGH").action
    assert p.message is not None and p.message.channel == "email" and p.message.language == "en"
    assert "Priya" in p.message.body and "{" not in p.message.body and VALUES["bank_name"] in p.message.body
    fields = p.case_fields(EVENT)
    assert fields["template_id"] == p.message.template_id and fields["approval_ref"] == p.message.approval
    assert "consent_email:ok" in str(fields["policy_checks"])


def test_language_vulnerability_quiet_hours_and_low_risk() -> None:
    hindi = _propose(EVENT, CUSTOMER | {"language": "hi"})
    assert hindi.message is not None and hindi.message.language == "hi"
    vulnerable = _propose(EVENT, CUSTOMER | {"vulnerable": "true"})
    assert vulnerable.route == "specialist" and vulnerable.message is None and vulnerable.channel is None
    night = _propose(EVENT, CUSTOMER, datetime(2026, 3, 2, 6, 30, tzinfo=UTC))
    assert night.route == "defer" and night.decision is not None and night.decision.next_allowed_at is not None
    low = _propose(EVENT | {"risk_level": "LOW"}, CUSTOMER)
    assert low.route == "monitor" and low.message is None
    nobody = _propose(EVENT, CUSTOMER | {"consent_email": "false", "consent_sms": "false", "consent_app": "false"})
    assert nobody.route == "blocked" and "consent" in (nobody.reason or "")


def test_first_names_fit_the_templates() -> None:
    assert first_name("Priya Sharma") == "Priya"
    assert first_name("") == "there"
    assert len(first_name("Wolfeschlegelsteinhausenbergerdorff Smith")) == 20
