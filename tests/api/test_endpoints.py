"""Every endpoint and its error paths, through FastAPI's TestClient on a real Redis."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from equilibrate.alert.audit_log import AuditLog
from equilibrate.alert.cases import CaseStore
from equilibrate.dashboard import queries
from equilibrate.errors import ConfigError
from equilibrate.features.compute import FEATURES
from equilibrate.risk.keys import level_index
from tests.api.conftest import Api

V1 = "/api/v1"


def auth(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def top_customer(api: Api, level: str = "HIGH") -> str:
    return str(queries.queue_page(api.redis, queries.QueueFilter(levels=(level,)), 1, 1).rows[0]["customer_id"])


def test_keys_are_required_and_scoped(api: Api, http: TestClient) -> None:
    cid = top_customer(api)
    assert http.get(f"{V1}/customers/{cid}").status_code == 401
    assert http.get(f"{V1}/customers/{cid}", headers=auth("eqk_nope_nope")).status_code == 401
    assert http.get(f"{V1}/customers/{cid}", headers={"Authorization": f"Bearer {api.reader}"}).status_code == 200
    denied = http.post(f"{V1}/interventions", json={"customer_id": cid}, headers=auth(api.reader))
    assert denied.status_code == 403 and "write" in denied.json()["error"]
    assert http.get(f"{V1}/health").json() == {"status": "ok"}  # probes need no key


def test_predict_from_live_features_matches_the_risk_engine(api: Api, http: TestClient) -> None:
    cid = top_customer(api)
    answer = http.post(f"{V1}/predict", json={"customer_id": cid}, headers=auth(api.reader))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    stored = queries.customer_detail(api.redis, cid)
    assert stored is not None
    assert body["risk_level"] == stored.profile["risk_level"] and body["risk_score"] == float(
        stored.profile["risk_score"]
    )
    assert body["hardship_type"] == stored.profile["hardship_type"] and body["reasons"]


def test_predict_from_a_payload_and_its_validation(api: Api, http: TestClient) -> None:
    cid = top_customer(api)
    stored = queries.customer_detail(api.redis, cid)
    assert stored is not None
    features = {f: float(stored.profile[f]) for f in FEATURES}
    same = http.post(f"{V1}/predict", json={"features": features}, headers=auth(api.reader)).json()
    assert same["risk_level"] == stored.profile["risk_level"] and same["customer_id"] is None
    missing = http.post(f"{V1}/predict", json={"features": {"balance": 1.0}}, headers=auth(api.reader))
    assert missing.status_code == 422 and "missing" in str(missing.json()["detail"])
    assert http.post(f"{V1}/predict", json={}, headers=auth(api.reader)).status_code == 422
    assert http.post(f"{V1}/predict", json={"customer_id": "C404"}, headers=auth(api.reader)).status_code == 404
    extra = http.post(f"{V1}/predict", json={"customer_id": cid, "persona": "stable"}, headers=auth(api.reader))
    assert extra.status_code == 422  # unknown fields are refused, the persona above all
    broken = http.post(
        f"{V1}/predict", content=b"{not json", headers=auth(api.reader) | {"Content-Type": "application/json"}
    )
    assert broken.status_code == 422 and "Traceback" not in broken.text


def test_batch_scores_many_and_has_a_maximum(api: Api, http: TestClient) -> None:
    ids = [r["customer_id"] for r in queries.queue_page(api.redis, queries.QueueFilter(), 1, 120).rows]
    answer = http.post(
        f"{V1}/predict/batch", json={"items": [{"customer_id": c} for c in ids]}, headers=auth(api.reader)
    )
    assert answer.status_code == 200
    assert [p["customer_id"] for p in answer.json()["predictions"]] == ids
    with api.client(api_max_batch=10) as small:
        over = small.post(
            f"{V1}/predict/batch", json={"items": [{"customer_id": c} for c in ids[:11]]}, headers=auth(api.reader)
        )
        assert over.status_code == 422 and "at most 10" in over.json()["error"]


def test_customer_transactions_explain_and_queue(api: Api, http: TestClient) -> None:
    cid = top_customer(api)
    profile = http.get(f"{V1}/customers/{cid}", headers=auth(api.reader)).json()
    assert (
        profile["risk"]["risk_level"] == "HIGH" and "balance" in profile["features"] and profile["attributes"]["name"]
    )
    assert "persona" not in str(profile)
    txns = http.get(f"{V1}/customers/{cid}/transactions?days=30&limit=5", headers=auth(api.reader)).json()
    assert 0 < len(txns["transactions"]) <= 5 and txns["transactions"][0]["ts"] >= txns["transactions"][-1]["ts"]
    assert http.get(f"{V1}/customers/C404", headers=auth(api.reader)).status_code == 404
    explained = http.get(f"{V1}/explain/{cid}", headers=auth(api.reader)).json()
    assert (
        explained["risk_level"] == "HIGH" and sum(r["points"] for r in explained["reasons"]) == explained["rule_score"]
    )

    high = int(api.redis.scard(level_index("HIGH")))
    seen, cursor = [], None
    while True:
        params: dict[str, str | int] = {"level": "HIGH", "limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = http.get(f"{V1}/high-risk-customers", params=params, headers=auth(api.reader)).json()
        seen += [i["customer_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == high == page["total"]
    assert http.get(f"{V1}/high-risk-customers?cursor=bogus", headers=auth(api.reader)).status_code == 422
    assert http.get(f"{V1}/high-risk-customers?hardship=Nope", headers=auth(api.reader)).status_code == 422


def test_interventions_share_the_console_lifecycle_and_audit_log(api: Api, http: TestClient) -> None:
    case_id = api.cases[3]
    key = {"Idempotency-Key": "approve-once-42"} | auth(api.writer)
    first = http.post(f"{V1}/interventions/{case_id}/approve", json={"note": "CRM workflow 7"}, headers=key)
    assert first.status_code == 200 and first.json()["state"] == "approved"
    again = http.post(f"{V1}/interventions/{case_id}/approve", json={"note": "CRM workflow 7"}, headers=key)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    twice = http.post(f"{V1}/interventions/{case_id}/approve", json={}, headers=auth(api.writer))
    assert twice.status_code == 409  # without the key it is a second approval: refused by the lifecycle
    rows = [r.record for r in AuditLog(api.settings.data_dir).rows() if r.record.case_id == case_id]
    assert [r.action for r in rows].count("approved") == 1 and rows[-1].actor == "api:collections"
    assert http.get(f"{V1}/interventions/{case_id}", headers=auth(api.reader)).json()["state"] == "approved"
    assert http.get(f"{V1}/interventions/K404", headers=auth(api.reader)).status_code == 404

    edited = http.post(
        f"{V1}/interventions/{api.cases[4]}/approve",
        json={"message": "Pay now or face court."},
        headers=auth(api.writer),
    )
    assert edited.status_code == 422 and "pressure wording" in edited.json()["error"]

    cid = CaseStore(api.redis).get(api.cases[5])["customer_id"]  # type: ignore[index]
    assert http.post(f"{V1}/interventions", json={"customer_id": cid}, headers=auth(api.writer)).status_code == 409
    low = top_customer(api, "LOW")
    refused = http.post(f"{V1}/interventions", json={"customer_id": low}, headers=auth(api.writer))
    assert refused.status_code == 422 and "LOW" in refused.json()["error"]
    medium = queries.queue_page(api.redis, queries.QueueFilter(levels=("MEDIUM",)), 1, 50).rows
    fresh = next(r["customer_id"] for r in medium if CaseStore(api.redis).open_case(r["customer_id"]) is None)
    made = http.post(
        f"{V1}/interventions", json={"customer_id": fresh}, headers=auth(api.writer) | {"Idempotency-Key": "p1"}
    )
    assert made.status_code == 201 and made.json()["customer_id"] == fresh
    replay = http.post(
        f"{V1}/interventions", json={"customer_id": fresh}, headers=auth(api.writer) | {"Idempotency-Key": "p1"}
    )
    assert replay.status_code == 201 and replay.json()["case_id"] == made.json()["case_id"]


def test_generate_message_renders_without_sending(api: Api, http: TestClient) -> None:
    cid = top_customer(api)
    answer = http.post(f"{V1}/generate-message", json={"customer_id": cid, "language": "hi"}, headers=auth(api.reader))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["language"] == "hi" and body["template_id"] and "{" not in body["body"]
    wrong = http.post(
        f"{V1}/generate-message", json={"customer_id": cid, "template_id": "nope"}, headers=auth(api.reader)
    )
    assert wrong.status_code == 422


def test_ready_metrics_limits_and_sizes(api: Api, http: TestClient) -> None:
    ready = http.get(f"{V1}/ready")
    assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "ok", ready.text
    text = http.get(f"{V1}/metrics").text
    assert 'equilibrate_customers_by_level{level="HIGH"}' in text and "equilibrate_api_requests_total{" in text
    assert 'route="/api/v1/predict"' in text and "equilibrate_api_request_seconds_bucket" in text
    with api.client(api_rate_per_key=1.0, api_rate_per_ip=1000.0, api_rate_burst=2) as slow:
        codes = [slow.get(f"{V1}/explain/{top_customer(api)}", headers=auth(api.reader)).status_code for _ in range(4)]
        assert codes[:2] == [200, 200] and codes[-1] == 429
        limited = slow.get(f"{V1}/explain/{top_customer(api)}", headers=auth(api.reader))
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    big = http.post(
        f"{V1}/predict", content=b"x" * 2_000_000, headers=auth(api.reader) | {"Content-Type": "application/json"}
    )
    assert big.status_code == 413


def test_production_refuses_an_open_configuration(api: Api) -> None:
    with pytest.raises(ConfigError, match="API_KEYS_FILE"):
        api.client(api_keys_file=None)
    with pytest.raises(ConfigError, match='without "\\*"'):
        api.client(api_cors_origins="*")
    with pytest.raises(ConfigError, match="API_DEBUG"):
        api.client(api_debug=True)
    with api.client(api_mode="development", api_keys_file=None) as open_dev:
        assert open_dev.get(f"{V1}/customers/{top_customer(api)}").status_code == 200  # development: no key needed


def test_no_stack_trace_leaks(api: Api, http: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from equilibrate.api import scoring

    def broken(*_args: object, **_kwargs: object) -> object:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(scoring, "assess", broken)
    answer = http.post(f"{V1}/predict", json={"customer_id": top_customer(api)}, headers=auth(api.reader))
    assert answer.status_code == 500 and answer.json()["error"] == "internal error" and "secret" not in answer.text


def test_a_redis_that_does_not_answer_is_a_503_not_a_crash(api: Api) -> None:
    with api.client(api_mode="development", api_keys_file=None, redis_url="redis://127.0.0.1:1/0") as down:
        answer = down.get(f"{V1}/customers/C0000001")
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
        assert "Redis" in answer.json()["error"] and "Traceback" not in answer.text
        one = {"customer_id": "C0000001"}
        for path, body in (("predict", one), ("predict/batch", {"items": [one]})):
            scored = down.post(f"{V1}/{path}", json=body)
            assert scored.status_code == 503 and "Redis" in scored.json()["error"], path
        assert down.get(f"{V1}/ready").status_code == 503


def test_scoring_reconnects_after_redis_dropped_the_api_connections(api: Api) -> None:
    """As after a Redis restart: the API's pooled connections are gone; the next calls are answered."""
    cid = top_customer(api)
    with api.client() as http:
        for path, body in (("predict", {"customer_id": cid}), ("predict/batch", {"items": [{"customer_id": cid}]})):
            assert http.post(f"{V1}/{path}", json=body, headers=auth(api.reader)).status_code == 200
        own = api.redis.client_id()
        db = api.redis.connection_pool.connection_kwargs.get("db", 0)
        others = [c["id"] for c in api.redis.client_list() if int(c["db"]) == db and int(c["id"]) != own]
        assert others  # the API's connections, open in its pools
        for client_id in others:
            api.redis.client_kill_filter(_id=client_id)
        for path, body in (("predict", {"customer_id": cid}), ("predict/batch", {"items": [{"customer_id": cid}]})):
            answer = http.post(f"{V1}/{path}", json=body, headers=auth(api.reader))
            assert answer.status_code == 200, (path, answer.text)
        assert http.get(f"{V1}/customers/{cid}", headers=auth(api.reader)).status_code == 200


def test_predict_by_id_keeps_the_level_the_engine_holds(api: Api, http: TestClient) -> None:
    """A customer scored by id keeps the level the risk engine has them at while the score clears
    that level's release point (rules: one point under the threshold), exactly as the engine would."""
    medium = [m.decode() for m in api.redis.smembers(level_index("MEDIUM"))]  # type: ignore[union-attr]
    four = next(c for c in sorted(medium) if api.redis.hget(f"customer:{c}", "rule_score") == b"4")
    lows = sorted(m.decode() for m in api.redis.smembers(level_index("LOW")))  # type: ignore[union-attr]
    low = next(c for c in lows if api.redis.hget(f"customer:{c}", "rule_score") in (b"0", b"1"))  # < 2: below release
    try:
        for cid in (four, low):
            api.redis.hset(f"customer:{cid}", "risk_level", "HIGH")  # as if the engine had them at HIGH
        held = http.post(f"{V1}/predict", json={"customer_id": four}, headers=auth(api.reader)).json()
        assert (held["risk_level"], held["rule_score"]) == ("HIGH", 4)  # 4 >= HIGH's release point (5 - 1)
        assert held["recommended_action"] != "monitor"
        dropped = http.post(f"{V1}/predict", json={"customer_id": low}, headers=auth(api.reader)).json()
        assert dropped["risk_level"] == "LOW"
        payload = {f: 0.0 for f in FEATURES}
        fresh = http.post(f"{V1}/predict", json={"features": payload}, headers=auth(api.reader)).json()
        assert fresh["risk_level"] == "LOW"  # a payload has no level to keep
    finally:
        api.redis.hset(f"customer:{four}", "risk_level", "MEDIUM")
        api.redis.hset(f"customer:{low}", "risk_level", "LOW")
