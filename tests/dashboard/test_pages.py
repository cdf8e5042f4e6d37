"""Every console page through Streamlit's AppTest, against a real Redis filled by the pipeline's code."""

from __future__ import annotations

import orjson
import pytest
from streamlit.testing.v1 import AppTest

from equilibrate.alert import audit_queue
from equilibrate.alert.audit_log import AuditLog
from equilibrate.alert.cases import CaseStore
from equilibrate.alert.demo_inbox import Inbox, InboxEntry, inbox_path
from equilibrate.dashboard import queries
from equilibrate.risk.keys import reasons_key
from tests.dashboard.conftest import APP, Bank

PAGES = ("home", "portfolio", "queue", "customer", "interventions", "audit", "model")


def open_page(page: str, **query: str) -> AppTest:
    """The console on `page`, with `query` as its address's parameters (a deep link), rendered."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    if page != "home":
        at.switch_page(f"pages/{page}.py")
        for name, value in query.items():
            at.query_params[name] = value
        at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_an_exception(bank: Bank, page: str) -> None:
    at = open_page(page)
    assert at.title and at.title[0].value
    assert not at.error, [e.value for e in at.error]


def test_home_shows_the_live_counts(bank: Bank) -> None:
    at = open_page("home")
    metrics = {m.label: m.value for m in at.metric}
    overview = queries.overview(bank.redis)
    assert metrics["Customers"] == f"{overview.customers:,}"
    assert metrics["High"] == f"{overview.levels['HIGH']:,}" and overview.levels["HIGH"] > 0
    assert at.dataframe and len(at.dataframe[0].value) == min(10, overview.levels["HIGH"] + overview.levels["CRITICAL"])


def test_queue_filters_change_the_rows(bank: Bank) -> None:
    at = open_page("queue")
    everyone = at.dataframe[0].value
    assert len(everyone) == 50 and list(everyone["risk_score"]) == sorted(everyone["risk_score"], reverse=True)
    at.multiselect(key="q-levels").set_value(["HIGH"]).run()
    high = at.dataframe[0].value
    assert 0 < len(high) < len(everyone) and set(high["risk_level"]) == {"HIGH"}
    city = str(high["city"].iloc[0])
    at.multiselect(key="q-cities").set_value([city]).run()
    both = at.dataframe[0].value
    assert set(both["city"]) == {city} and set(both["risk_level"]) == {"HIGH"} and len(both) <= len(high)
    name = str(both["name"].iloc[0])
    at.multiselect(key="q-levels").set_value([]).run()
    at.multiselect(key="q-cities").set_value([]).run()
    at.text_input(key="q-search").set_value(name.split(maxsplit=1)[0].lower()).run()
    found = at.dataframe[0].value
    assert name in set(found["name"]) and all(
        n.lower().startswith(name.split(maxsplit=1)[0].lower()) for n in found["name"]
    )


def test_customer_profile_shows_features_reasons_and_cases(bank: Bank) -> None:
    case = CaseStore(bank.redis).get(bank.cases[0])
    assert case is not None
    at = open_page("customer", customer=case["customer_id"])
    assert at.text_input(key="c-id").value == case["customer_id"]
    tables = [d.value for d in at.dataframe]
    assert any("days_since_salary" in t.index for t in tables)  # the behaviour table
    assert any("case_id" in t.columns and case["case_id"] in set(t["case_id"]) for t in tables)


def test_customer_profile_says_when_a_level_is_kept_above_the_score(bank: Bank) -> None:
    cid = str(queries.queue_page(bank.redis, queries.QueueFilter(levels=("MEDIUM",)), 1, 1).rows[0]["customer_id"])
    key = reasons_key(cid)
    stored = bank.redis.get(key)
    assert isinstance(stored, bytes)
    held = {**orjson.loads(stored), "level_by_score": "LOW", "level_release_point": 20.0}
    bank.redis.set(key, orjson.dumps(held))
    try:
        at = open_page("customer", customer=cid)
        assert any("Kept at MEDIUM: the score alone gives LOW" in i.value for i in at.info)
    finally:
        bank.redis.set(key, stored)


def test_an_approval_in_the_intervention_center_writes_an_audit_row(bank: Bank) -> None:
    case_id = bank.cases[0]
    at = open_page("interventions", case=case_id)
    approve = next(b for b in at.button if b.label == "Approve and send")
    assert approve.disabled  # no operator named yet
    at.text_input(key="operator_input").set_value("alice").run()
    next(b for b in at.button if b.label == "Approve and send").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("Approved" in s.value for s in at.success)
    assert (CaseStore(bank.redis).get(case_id) or {})["state"] == "approved"
    rows = [r.record for r in AuditLog(bank.settings.data_dir).rows() if r.record.case_id == case_id]
    assert [r.action for r in rows][-1] == "approved" and rows[-1].actor == "ops:alice"
    assert audit_queue.pending(bank.redis) == 0


def test_the_intervention_center_shows_what_the_demo_gateway_received(bank: Bank) -> None:
    case_id = bank.cases[2]
    path = inbox_path(bank.settings.data_dir)
    text = "Hi Priya, we can help: call us on 0800 123 4567."
    Inbox(path).add(InboxEntry("sms", "m-demo-1", "+447700900123", "", text, case_id, "C1", "valid"), "2026-11-23")
    try:
        at = open_page("interventions", case=case_id)
        assert "As the customer received it (demo gateway)" in [h.value for h in at.subheader]
        assert text in [t.value for t in at.text]
        assert len(at.expander) and any("demo gateway received (1 newest)" in e.label for e in at.expander)
    finally:
        path.unlink()


def test_an_edit_that_breaks_the_rules_cannot_be_approved(bank: Bank) -> None:
    case_id = bank.cases[1]
    at = open_page("interventions", case=case_id)
    at.text_input(key="operator_input").set_value("bob").run()
    assert not next(b for b in at.button if b.label == "Approve and send").disabled  # the rendered text is fine
    body = next(t for t in at.text_area if t.key and t.key.startswith(f"ic-body-{case_id}"))
    body.set_value("URGENT: pay now or face legal action.").run()
    assert any("pressure wording" in e.value for e in at.error)
    assert next(b for b in at.button if b.label == "Approve and send").disabled


def test_a_redis_that_does_not_answer_is_a_banner_not_a_crash(bank: Bank, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamlit as st

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    st.cache_resource.clear()
    try:
        for page in ("home", "queue"):
            at = open_page(page)
            assert any("is not answering" in e.value for e in at.error)
    finally:
        monkeypatch.undo()
        st.cache_resource.clear()
    assert bank.redis.ping()


def test_the_portfolio_counts_hardship_by_level_once_per_ttl(bank: Bank, monkeypatch: pytest.MonkeyPatch) -> None:
    import redis
    import streamlit as st

    st.cache_data.clear()
    calls: list[int] = []
    real = redis.client.Pipeline.sintercard

    def counted(self: redis.client.Pipeline, *args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(redis.client.Pipeline, "sintercard", counted)
    at = open_page("portfolio")
    first = len(calls)
    at.run()  # a live refresh within the TTL
    assert not at.exception
    assert first >= 20 and len(calls) == first  # the home page it opens from counts a few too
