"""Cases and the contact-history mirror on the real Redis of the test session."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import redis

from equilibrate.alert import contact_history
from equilibrate.alert.cases import CaseStore, open_key
from equilibrate.alert.contact_policy import ContactHistory, ContactRules, evaluate
from equilibrate.alert.lifecycle import TransitionError

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_one_open_case_per_customer_and_its_lifecycle(redis_client: redis.Redis) -> None:
    store = CaseStore(redis_client)
    opened = store.propose("C1", {"risk_level": "HIGH", "action": "reduced_payment_plan"}, priority=62.5)
    assert opened is not None and opened["state"] == "proposed" and opened["customer_id"] == "C1"
    first = opened["case_id"]
    assert store.propose("C1", {"risk_level": "HIGH"}) is None  # already open
    second = store.propose("C2", {"risk_level": "MEDIUM"}, priority=31.0)
    assert second is not None
    other = second["case_id"]
    assert store.proposed() == [first, other]  # highest risk first
    case = store.get(first)
    assert case is not None and case["state"] == "proposed" and case["action"] == "reduced_payment_plan"

    store.transition(first, "approved", actor="ops:alice", expect="proposed", fields={"approval_note": "ok"})
    assert store.proposed() == [other]
    with pytest.raises(TransitionError, match="is approved, not proposed"):
        store.transition(first, "rejected", actor="ops:bob", expect="proposed")
    store.transition(first, "sent", actor="system", fields={"outbox_id": "M1"})
    store.transition(first, "delivered", actor="system")
    closed = store.transition(first, "outcome", actor="ops:alice", outcome="plan_agreed")
    assert closed["state"] == "outcome" and closed["outcome"] == "plan_agreed" and closed["last_actor"] == "ops:alice"
    assert store.open_case("C1") is None and redis_client.get(open_key("C1")) is None
    assert store.propose("C1", {"risk_level": "HIGH"}) is not None  # a new case may open now
    with pytest.raises(TransitionError, match="no case"):
        store.transition("K99999999", "approved", actor="x")


def test_racing_actors_cannot_both_move_a_case(redis_client: redis.Redis) -> None:
    store = CaseStore(redis_client)
    opened = store.propose("C7", {})
    assert opened is not None
    case_id = opened["case_id"]
    results: list[str] = []

    def act(target: str) -> None:
        try:
            store.transition(case_id, target, actor=target, expect="proposed")
            results.append(target)
        except TransitionError:
            results.append("refused")

    threads = [threading.Thread(target=act, args=(t,)) for t in ("approved", "rejected") * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results).count("refused") == 7
    winner = next(r for r in results if r != "refused")
    assert (store.get(case_id) or {})["state"] == winner


def test_the_contact_mirror_feeds_the_caps_and_suppression(redis_client: redis.Redis) -> None:
    rules = ContactRules()
    customer = {"consent_sms": "true", "phone": "+447700900123", "timezone": "Europe/London", "vulnerable": "false"}
    assert contact_history.load(redis_client, "C3", T0, rules.window) == ContactHistory()
    contact_history.record_sent(redis_client, "C3", "sms", T0 - timedelta(days=20), rules.window)
    contact_history.record_sent(redis_client, "C3", "sms", T0 - timedelta(days=2), rules.window)
    history = contact_history.load(redis_client, "C3", T0, rules.window)
    assert [s.channel for s in history.sent] == ["sms"]  # the 20-day-old send is outside the window (and trimmed)
    assert redis_client.zcard("eq:contacts:C3") == 1
    blocked = evaluate(customer, "sms", history, T0, rules)
    assert not blocked.allowed and "cap_sms" in (blocked.reason or "")
    assert evaluate(customer, "sms", contact_history.load(redis_client, "C3", T0 + timedelta(days=6), rules.window),
                    T0 + timedelta(days=6), rules).allowed  # fmt: skip

    for days in (30, 20, 10):
        contact_history.record_outcome(redis_client, "C4", False, T0 - timedelta(days=days))
    unanswered = contact_history.load(redis_client, "C4", T0, rules.window)
    assert unanswered.unanswered == 3 and unanswered.last_unanswered_at == T0 - timedelta(days=10)
    assert not evaluate(customer, "sms", unanswered, T0, rules).allowed  # suppressed
    contact_history.record_outcome(redis_client, "C4", True, T0)
    assert contact_history.load(redis_client, "C4", T0, rules.window).unanswered == 0
