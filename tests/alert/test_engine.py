"""The intervention engine on the session's real Redis and Kafka, with a real SMTP relay and webhook gateway."""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

import orjson
import pytest
import redis
from pydantic import SecretStr

from equilibrate.alert import audit_queue, contact_history, outbox, outcomes
from equilibrate.alert.actions import CaseActions
from equilibrate.alert.audit_log import AuditLog
from equilibrate.alert.cases import CaseStore
from equilibrate.alert.engine import InterventionEngine
from equilibrate.alert.lifecycle import TransitionError
from equilibrate.alert.proposer import read_risk_event
from equilibrate.alert.webhook_channel import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from equilibrate.errors import InvalidEventError
from equilibrate.features.store import WATERMARK_KEY
from equilibrate.kafka.transport import Record, make_producer
from equilibrate.ops.stopping import StopFlag
from equilibrate.risk.policy import load_policy
from equilibrate.settings import Settings
from equilibrate.storage.customer_registry import KNOWN_CUSTOMERS_KEY, profile_key
from tests.alert.gateways import Gateway, Inbox
from tests.processes import wait_until

POLICY = load_policy()
SECRET = "whsec-engine-test"  # noqa: S105  # a test signing key
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # 12:00 in London
_offsets = itertools.count()


def customer(**changes: str) -> dict[str, str]:
    return {
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
    } | changes


def register(client: redis.Redis, customer_id: str, attributes: dict[str, str]) -> None:
    client.hset(profile_key(customer_id), mapping=attributes)  # type: ignore[arg-type]
    client.sadd(KNOWN_CUSTOMERS_KEY, customer_id)


def set_time(client: redis.Redis, at: datetime) -> None:
    """The stream watermark (event time), as the feature engine records it."""
    client.hset(WATERMARK_KEY, "transactions:0", int(at.timestamp() * 1000))


def risk_event(customer_id: str, level: str = "HIGH", score: float = 72.0, at: datetime = NOON) -> dict[str, object]:
    return {
        "schema_version": 1,
        "customer_id": customer_id,
        "previous_level": "LOW",
        "risk_level": level,
        "risk_score": score,
        "rule_score": 5,
        "hardship_type": "Income Shock",
        "reasons": "No salary for 41 days; Spending down 38%",
        "recommended_action": "payment_holiday_offer",
        "scored_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model_version": "rules-test",
    }


def record(topic: str, body: dict[str, object] | bytes) -> Record:
    value = body if isinstance(body, bytes) else orjson.dumps(body)
    return Record(topic, 0, next(_offsets), b"k", value, 0)


def failed_repayment(customer_id: str, at: datetime) -> dict[str, object]:
    return {
        "txn_id": f"T-{uuid.uuid4().hex[:12]}",
        "customer_id": customer_id,
        "ts": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "amount": 240.0,
        "direction": "debit",
        "category": "loan_repayment",
        "channel": "direct_debit",
        "merchant": "Equilibrate Loans",
        "balance_after": 12.5,
        "currency": "GBP",
        "status": "failed",
        "schema_version": 1,
    }


@dataclass
class Rig:
    settings: Settings
    engine: InterventionEngine
    redis: redis.Redis
    inbox: Inbox
    gateway: Gateway
    actions: CaseActions
    cases: CaseStore
    audit: AuditLog

    def configure(self, **changes: object) -> None:
        """Change the engine's settings (and its proposer's and sender's) for one test."""
        updated = self.settings.model_copy(update=changes)
        self.engine.settings = self.engine.proposer.settings = self.engine.sender.settings = updated

    def run(self, at: datetime, rounds: int = 3) -> None:
        """The engine's work other than consuming: sends, follow-ups, the audit log."""
        set_time(self.redis, at)
        for _ in range(rounds):
            self.engine.sender.step(at)
            self.engine.follow_ups(at)
            self.engine.flush_audit()

    def propose(self, customer_id: str, **event: object) -> dict[str, str]:
        case = self.engine.propose(read_risk_event(orjson.dumps(risk_event(customer_id) | event)))
        assert case is not None
        self.engine.flush_audit()
        return case

    def actions_of(self, case_id: str) -> list[str]:
        return [row.record.action for row in self.audit.rows() if row.record.case_id == case_id]

    def rows(self, case_id: str, action: str) -> list[dict[str, object]]:

        return [
            asdict(r.record) for r in self.audit.rows() if r.record.case_id == case_id and r.record.action == action
        ]


@pytest.fixture
def rig(settings: Settings, smtp_server: tuple[Inbox, int], gateway: Gateway) -> Iterator[Rig]:
    inbox, port = smtp_server
    s = settings.model_copy(
        update={
            "smtp_url": f"smtp://127.0.0.1:{port}",
            "sms_webhook_url": gateway.url,
            "app_webhook_url": gateway.url.replace("/messages", "/push"),
            "webhook_secret": SecretStr(SECRET),
            "delivery_retry_s": 0.2,
            "interventions_consumer": f"engine-{uuid.uuid4().hex[:6]}",
        }
    )
    engine = InterventionEngine(s, StopFlag(), policy=POLICY, group=f"interventions-{uuid.uuid4().hex[:8]}")
    client = engine.redis
    set_time(client, NOON)
    try:
        yield Rig(s, engine, client, inbox, gateway, CaseActions(client), CaseStore(client), AuditLog(s.data_dir))
    finally:
        engine.producer.close()
        engine.consumer.close()


def test_risk_event_to_case_to_approved_email_and_sms_with_an_audit_trail(rig: Rig) -> None:
    """Done-when: a consenting customer's risk event -> a proposed case -> approved -> a real email and a
    real webhook call; every step in the audit log, which `audit verify` passes and a 1-byte change breaks."""
    register(rig.redis, "C001", customer())
    register(rig.redis, "C002", customer(name="Arjun Mehta", preferred_channel="sms"))
    register(rig.redis, "C003", customer())
    producer = make_producer(rig.settings)
    for body in (risk_event("C001"), risk_event("C002", score=64.0), risk_event("C003", level="LOW", score=9.0)):
        producer.produce(rig.settings.topic_risk_events, orjson.dumps(body), key=str(body["customer_id"]).encode())
    producer.produce(rig.settings.topic_risk_events, b"{not json", key=b"C9")
    assert producer.flush(10.0) == 0
    rig.engine.consumer.subscribe([rig.settings.topic_risk_events, rig.settings.topic_transactions])
    wait_until(lambda: rig.engine.step() >= 0 and len(rig.cases.proposed()) == 2, 60, "two proposed cases")

    proposed = {c["customer_id"]: c for c in rig.cases.recent(10, state="proposed")}
    assert set(proposed) == {"C001", "C002"}  # LOW: no case
    email_case, sms_case = proposed["C001"], proposed["C002"]
    assert email_case["channel"] == "email" and sms_case["channel"] == "sms"
    assert "Priya" in email_case["message"] and email_case["template_id"] and email_case["approval_ref"]
    assert rig.cases.proposed() == [email_case["case_id"], sms_case["case_id"]]  # highest risk first
    assert rig.redis.hget("eq:dlq:counts", "interventions:not_json") == b"1"
    assert not rig.inbox.received and not rig.gateway.seen  # nothing goes out without an approval

    rig.actions.approve(email_case["case_id"], "ops:alice")
    rig.actions.approve(sms_case["case_id"], "ops:bob", "customer asked for text messages")
    wait_until(lambda: rig.engine.step() >= 0 and len(rig.inbox.received) == 1 and len(rig.gateway.seen) == 1,
               30, "one email and one webhook call")  # fmt: skip

    mail = email.message_from_bytes(rig.inbox.received[0].content, policy=email.policy.default)  # type: ignore[arg-type]
    plain = mail.get_body(("plain",))
    assert plain is not None
    text = plain.get_content()
    assert rig.inbox.received[0].rcpt_tos == ["priya@example.com"]
    assert email_case["message"].splitlines()[0] in text and rig.settings.email_opt_out_text in text
    assert f"{email_case['case_id']}-1" in str(mail["Message-ID"])
    call = rig.gateway.seen[0]
    assert call.headers[IDEMPOTENCY_HEADER] == f"{sms_case['case_id']}-1"
    assert verify_signature(SECRET, call.headers[TIMESTAMP_HEADER], call.body, call.headers[SIGNATURE_HEADER])
    assert json.loads(call.body)["to"] == "+447700900123"

    sent = rig.cases.get(email_case["case_id"]) or {}
    assert sent["state"] == "sent" and sent["sent_message_id"] == f"{email_case['case_id']}-1"
    assert contact_history.load(rig.redis, "C001", NOON, timedelta(days=7)).sent[0].channel == "email"
    assert rig.actions_of(email_case["case_id"]) == ["proposed", "approved", "sent"]
    assert rig.actions_of(sms_case["case_id"])[:3] == ["proposed", "approved", "sent"]
    sent_row = rig.rows(email_case["case_id"], "sent")[0]
    assert sent_row["message"] == email_case["message"] and sent_row["template_id"] == email_case["template_id"]
    assert "consent_email:ok" in str(sent_row["policy_checks"]) and sent_row["risk_level"] == "HIGH"
    assert rig.rows(sms_case["case_id"], "approved")[0]["actor"] == "ops:bob"

    # The compliance reviewer's check: intact, then one byte changed in one row.
    verify = [sys.executable, "-m", "equilibrate", "audit", "verify", "--dir", str(rig.settings.data_dir)]
    ok = subprocess.run(verify, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and ok.stdout.startswith("audit log OK: 6 rows"), ok.stdout + ok.stderr
    lines = rig.audit.path.read_bytes().split(b"\n")
    target = lines[3]
    at = target.index(b"ops:alice")
    lines[3] = target[:at] + b"ops:alicf" + target[at + 9 :]
    rig.audit.path.write_bytes(b"\n".join(lines))
    bad = subprocess.run(verify, capture_output=True, text=True, check=False)
    event_id = target.split(b",")[0].strip(b'"').decode()
    assert bad.returncode == 1 and f"intervention_log.csv line 4 (event {event_id})" in bad.stdout, bad.stdout


def test_quiet_hours_defer_the_send_to_the_local_morning(rig: Rig) -> None:
    register(rig.redis, "C010", customer())
    case = rig.propose("C010")
    late = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)  # 22:30 in London
    rig.actions.approve(case["case_id"], "ops:alice")
    rig.run(late)
    held = rig.cases.get(case["case_id"]) or {}
    assert held["state"] == "approved" and held["deferred_until"] == "2026-03-03T08:00:00Z"
    assert not rig.inbox.received
    deferred = rig.rows(case["case_id"], "deferred")[0]
    assert "quiet_hours:blocked(22:30 Europe/London)" in str(deferred["policy_checks"])
    rig.run(datetime(2026, 3, 3, 7, 59, tzinfo=UTC))
    assert not rig.inbox.received  # still quiet
    rig.run(datetime(2026, 3, 3, 8, 1, tzinfo=UTC))
    assert len(rig.inbox.received) == 1 and (rig.cases.get(case["case_id"]) or {})["state"] == "sent"


def test_caps_opt_out_and_consent_block_with_the_reason_logged(rig: Rig) -> None:
    register(rig.redis, "C020", customer())
    contact_history.record_sent(rig.redis, "C020", "email", NOON - timedelta(days=2), timedelta(days=7))
    capped = rig.propose("C020", risk_level="HIGH")
    # The proposal already saw the cap on email and chose another allowed channel...
    assert capped["channel"] != "email"
    # ...and when every allowed channel is capped, the case closes as contact_blocked with the reason.
    register(rig.redis, "C021", customer(consent_sms="false", consent_app="false"))
    contact_history.record_sent(rig.redis, "C021", "email", NOON - timedelta(days=1), timedelta(days=7))
    blocked = rig.engine.propose(read_risk_event(orjson.dumps(risk_event("C021"))))
    assert blocked is not None and blocked["state"] == "outcome" and blocked["outcome"] == "contact_blocked"
    rig.engine.flush_audit()
    row = rig.rows(blocked["case_id"], "blocked")[0]
    assert "cap_email" in str(row["detail"]) and "cap_email:blocked(1/1 in 7d)" in str(row["policy_checks"])

    # Opted out after the approval: the send-time check blocks it, the case stays open for an operator.
    register(rig.redis, "C022", customer())
    case = rig.propose("C022")
    rig.actions.approve(case["case_id"], "ops:alice")
    rig.redis.hset(profile_key("C022"), "opted_out_email", "true")
    rig.run(NOON)
    assert not rig.inbox.received
    now = rig.cases.get(case["case_id"]) or {}
    assert now["state"] == "blocked" and "opt_out_email: opted out" in now["reason"]
    assert "opt_out_email: opted out" in str(rig.rows(case["case_id"], "blocked")[0]["detail"])

    # No consent on any channel at all: never a case that could send.
    register(rig.redis, "C023", customer(consent_email="false", consent_sms="false", consent_app="false"))
    refused = rig.engine.propose(read_risk_event(orjson.dumps(risk_event("C023"))))
    assert refused is not None and refused["outcome"] == "contact_blocked" and "consent" in refused["reason"]


def test_vulnerable_customers_go_to_a_specialist_and_are_never_contacted(rig: Rig) -> None:
    rig.configure(auto_intervene=True, auto_intervene_min_score=10.0)
    register(rig.redis, "C030", customer(vulnerable="true", preferred_channel="app"))
    case = rig.propose("C030", risk_score=95.0)
    assert case["route"] == "specialist" and case["state"] == "proposed" and not case["message"]
    with pytest.raises(TransitionError, match="specialist"):
        rig.actions.approve(case["case_id"], "ops:alice")
    rig.run(NOON)
    assert not rig.inbox.received and not rig.gateway.seen
    row = rig.rows(case["case_id"], "proposed")[0]
    assert row["policy_result"] == "specialist" and "vulnerability:blocked(flagged" in str(row["policy_checks"])
    closed = rig.actions.close(case["case_id"], "plan_agreed", "specialist:dev", "agreed a 3-month plan by phone")
    assert closed["state"] == "outcome"


def test_auto_intervene_sends_low_touch_channels_only_above_the_threshold(rig: Rig) -> None:
    rig.configure(auto_intervene=True, auto_intervene_min_score=50.0)
    register(rig.redis, "C040", customer(preferred_channel="app"))
    register(rig.redis, "C041", customer(preferred_channel="sms"))
    register(rig.redis, "C042", customer(preferred_channel="app"))
    app = rig.propose("C040", risk_score=70.0)
    sms = rig.propose("C041", risk_score=90.0)
    low = rig.propose("C042", risk_level="MEDIUM", risk_score=35.0)
    assert app["state"] == "approved" and app["approved_by"] == "system"
    assert sms["state"] == "proposed" and low["state"] == "proposed"  # sms needs an approval; below threshold
    rig.run(NOON)
    assert [call.path for call in rig.gateway.seen] == ["/v1/push"]
    assert "AUTO_INTERVENE" in str(rig.rows(app["case_id"], "approved")[0]["detail"])


def test_a_failing_gateway_keeps_the_case_failed_and_retries(rig: Rig) -> None:
    register(rig.redis, "C050", customer(preferred_channel="sms"))
    case = rig.propose("C050")
    rig.gateway.script = [503] * 3  # every try of the channel's first round fails
    rig.actions.approve(case["case_id"], "ops:alice")
    rig.run(NOON, rounds=1)
    failed = rig.cases.get(case["case_id"]) or {}
    assert failed["state"] == "failed" and "503" in failed["last_error"] and failed["failures"] == "1"
    assert rig.redis.zcard(outbox.RETRY_KEY) == 1

    def retried() -> bool:
        rig.run(NOON, rounds=1)
        return (rig.cases.get(case["case_id"]) or {})["state"] == "sent"

    wait_until(retried, 10, "the retry to go through")
    keys = [call.headers[IDEMPOTENCY_HEADER] for call in rig.gateway.seen]
    assert keys == [f"{case['case_id']}-1"] * 4  # one message: the same key on every try
    assert rig.actions_of(case["case_id"]) == ["proposed", "approved", "failed", "sent"]


def test_outcomes_missed_payments_no_response_and_cure_rates(rig: Rig) -> None:
    register(rig.redis, "C060", customer())
    register(rig.redis, "C061", customer(email="arjun@example.com"))
    first, second = rig.propose("C060"), rig.propose("C061")
    for case in (first, second):
        rig.actions.approve(case["case_id"], "ops:alice")
    rig.run(NOON)
    assert len(rig.inbox.received) == 2

    # C060 misses a repayment 10 days later: the case closes as missed_payment.
    topic = rig.settings.topic_transactions
    txns = [record(topic, failed_repayment("C060", NOON + timedelta(days=10))),
            record(topic, failed_repayment("C999", NOON + timedelta(days=10)))]  # fmt: skip
    assert rig.engine.on_transactions(txns) == 1  # only followed customers are kept
    assert (rig.cases.get(first["case_id"]) or {})["outcome"] == "missed_payment"
    # C061 never answers: closed as no_response after INTERVENTION_RESPONSE_DAYS (+ a day's grace).
    rig.run(NOON + timedelta(days=16))
    assert (rig.cases.get(second["case_id"]) or {})["outcome"] == "no_response"
    assert contact_history.load(rig.redis, "C061", NOON + timedelta(days=16), timedelta(days=7)).unanswered == 1

    rig.run(NOON + timedelta(days=62))
    assert (rig.cases.get(first["case_id"]) or {})["missed_30d"] == "true"
    assert (rig.cases.get(second["case_id"]) or {})["missed_60d"] == "false"
    rates = {(r.days, r.channel): r for r in outcomes.cure_rates(rig.redis)}
    assert rates[(30, "email")].followed == 2 and rates[(30, "email")].missed == 1
    assert rates[(30, "email")].cure_rate == pytest.approx(0.5)
    assert rates[(60, "email")].followed == 2
    assert [r["detail"] for r in rig.rows(first["case_id"], "follow_up")] == [
        "30 days after the send: 1 missed payment(s)",
        "60 days after the send: 1 missed payment(s)",
    ]
    assert rig.redis.zcard(outcomes.WATCH_KEY) == 0  # follow-ups done: no longer followed
    assert rig.audit.verify().ok


def test_bad_risk_events_are_named() -> None:
    for raw, reason in ((b"", "empty_message"), (b"[1]", "not_an_object"), (b'{"risk_level": "HIGH"}',
                        "missing_customer_id"), (b'{"customer_id": "C1", "risk_level": "HIGH", "risk_score": "x"}',
                        "bad_risk_score")):  # fmt: skip
        with pytest.raises(InvalidEventError) as caught:
            read_risk_event(raw)
        assert caught.value.reason == reason


def test_an_audit_row_queued_with_its_step_is_written_once_even_if_the_writer_died(rig: Rig) -> None:
    register(rig.redis, "C070", customer())
    case = rig.engine.propose(read_risk_event(orjson.dumps(risk_event("C070"))))
    assert case is not None and audit_queue.pending(rig.redis) == 1
    # A writer that appended the row and died before removing it from the queue:
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], rig.redis.xrange(audit_queue.QUEUE_KEY))
    rig.audit.append_queued(lambda: [audit_queue.read_record(entries[0][1][b"record"])], lambda: None)
    assert audit_queue.pending(rig.redis) == 1
    rig.engine.flush_audit()  # the next writer recognises it
    assert audit_queue.pending(rig.redis) == 0 and rig.actions_of(case["case_id"]) == ["proposed"]
    rig.redis.xadd(audit_queue.QUEUE_KEY, {"record": b"{broken"})
    rig.engine.flush_audit()
    assert audit_queue.pending(rig.redis) == 0 and rig.redis.xlen(audit_queue.REJECTED_KEY) == 1


def test_an_untouched_proposal_follows_the_customers_level(rig: Rig) -> None:
    register(rig.redis, "C080", customer())
    medium = rig.propose("C080", risk_level="MEDIUM", risk_score=35.0)
    again = rig.engine.propose(read_risk_event(orjson.dumps(risk_event("C080", level="MEDIUM", score=35.0))))
    assert again is None  # the same level twice (an at-least-once duplicate): nothing new
    high = rig.propose("C080", risk_level="HIGH", risk_score=71.0)
    assert high["case_id"] != medium["case_id"] and high["risk_level"] == "HIGH"
    replaced = rig.cases.get(medium["case_id"]) or {}
    assert replaced["outcome"] == "withdrawn"
    assert rig.engine.propose(read_risk_event(orjson.dumps(risk_event("C080", level="LOW", score=8.0)))) is None
    assert (rig.cases.get(high["case_id"]) or {})["outcome"] == "withdrawn"
    assert rig.cases.open_case("C080") is None and rig.cases.proposed() == []
    rig.engine.flush_audit()
    assert [r["detail"] for r in rig.rows(high["case_id"], "outcome")] == ["withdrawn: risk level now LOW (was HIGH)"]

    approved = rig.propose("C080", risk_level="HIGH", risk_score=71.0)
    rig.actions.approve(approved["case_id"], "ops:alice")
    assert rig.engine.propose(read_risk_event(orjson.dumps(risk_event("C080", level="LOW", score=8.0)))) is None
    assert (rig.cases.get(approved["case_id"]) or {})["state"] == "approved"  # an operator's decision stands


def test_events_the_customers_current_score_has_superseded_are_skipped(rig: Rig) -> None:
    """An engine catching up on a backlog (after a backfill) acts on where customers are now."""
    register(rig.redis, "C090", customer(risk_level="LOW", scored_at="2026-03-05T00:00:00Z"))
    assert rig.engine.propose(read_risk_event(orjson.dumps(risk_event("C090")))) is None  # HIGH on 2 March: history
    assert rig.cases.open_case("C090") is None
    register(rig.redis, "C091", customer(risk_level="HIGH", scored_at="2026-03-05T00:00:00Z"))
    assert rig.engine.propose(read_risk_event(orjson.dumps(risk_event("C091")))) is not None  # still HIGH
    register(rig.redis, "C092", customer(risk_level="LOW", scored_at="2026-03-01T00:00:00Z"))
    assert rig.engine.propose(read_risk_event(orjson.dumps(risk_event("C092")))) is not None  # hash not yet written
