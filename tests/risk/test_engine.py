"""The risk engine on the real Redis and broker: scores, queue, reasons, changes, sweeps, and live."""

from __future__ import annotations

import importlib.resources
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import redis

from equilibrate.features import store as feature_store
from equilibrate.features.compute import compute, format_profiles
from equilibrate.features.state import apply_events, new_records, pack, to_arrays
from equilibrate.kafka.transport import make_consumer, make_producer
from equilibrate.ops.stopping import StopFlag
from equilibrate.risk.engine import RiskEngine
from equilibrate.risk.keys import (
    CHANGES_KEY,
    HARDSHIP_TYPES,
    LEVELS,
    LEVELS_KEY,
    QUEUE_KEY,
    RISK_FIELDS,
    STATS_KEY,
    TREND_KEY,
    hardship_index,
    level_index,
    reasons_key,
)
from equilibrate.schema import parse_transaction
from equilibrate.settings import Settings
from equilibrate.storage import customer_registry
from tests.factories import T0, encode, txn
from tests.processes import start_component, wait_until

DAY = timedelta(days=1)


def _history(
    cid: str, days: int, *, salary_stops: int | None = None, failed_from: int | None = None
) -> list[dict[str, Any]]:
    """A month-paid customer with daily groceries; pay can stop and repayments can start failing."""
    out = []
    for d in range(days):
        at = T0 + d * DAY
        if d % 30 == 0 and (salary_stops is None or d < salary_stops):
            out.append(txn(cid, at=at, amount=2200, direction="credit", category="salary", balance_after=2600))
        out.append(txn(cid, at=at + timedelta(hours=5), amount=35, category="groceries", balance_after=2500 - d))
        out.append(txn(cid, at=at + timedelta(hours=9), amount=9, category="dining", balance_after=2480 - d))
        if failed_from is not None and d >= failed_from and d % 7 == 0:
            out.append(
                txn(cid, at=at + timedelta(hours=2), amount=180, category="loan_repayment", status="failed",
                    balance_after=-40)
            )  # fmt: skip
            out.append(
                txn(cid, at=at + timedelta(hours=3), amount=300, direction="credit", category="payday_loan",
                    balance_after=-20)
            )  # fmt: skip
    return out


def _load(client: redis.Redis, settings: Settings, histories: dict[str, list[dict[str, Any]]]) -> int:
    """Fold histories with the feature engine's code and write them as its batch path does."""
    ids = sorted(histories)
    records = new_records(len(ids))
    for i, cid in enumerate(ids):
        txns = [parse_transaction(encode(e)) for e in histories[cid]]
        apply_events(records, to_arrays(txns, [i] * len(txns)))
    feature_store.write_rebuilt(client, ids, [pack(r) for r in records], format_profiles(records, compute(records)))
    newest = max(int(r["last_ms"]) for r in records)
    _set_watermark(client, settings, newest)
    customer_registry.register_ids(client, ids)
    return newest


def _set_watermark(client: redis.Redis, settings: Settings, ms: int) -> None:
    feature_store.set_positions(client, {}, {(settings.topic_transactions, 0): ms})


def _engine(settings: Settings) -> RiskEngine:
    return RiskEngine(settings, StopFlag())


def _risk(client: redis.Redis, cid: str) -> dict[str, str]:
    row = cast(list[bytes | None], client.hmget(f"customer:{cid}", list(RISK_FIELDS)))
    return {k: v.decode() for k, v in zip(RISK_FIELDS, row, strict=True) if v is not None}


def _changes(client: redis.Redis) -> list[dict[str, Any]]:
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(CHANGES_KEY))
    return [orjson.loads(fields[b"event"]) for _id, fields in entries]


def _read_events(settings: Settings, want: int) -> list[dict[str, Any]]:
    consumer = make_consumer(settings, "risk-events-reader", client_id="t")
    consumer.subscribe([settings.topic_risk_events])
    got: list[dict[str, Any]] = []

    def more() -> bool:
        got.extend(orjson.loads(r.value) for r in consumer.consume(100, 0.5) if r.value is not None)
        return len(got) >= want

    try:
        wait_until(more, 40, "risk events on Kafka")
    finally:
        consumer.close()
    return got


def test_a_full_pass_scores_everyone_with_reasons_queue_and_events(
    settings: Settings, redis_client: redis.Redis
) -> None:
    _load(
        redis_client,
        settings,
        {
            "C0000001": _history("C0000001", 100),
            "C0000002": _history("C0000002", 100, salary_stops=40, failed_from=70),
            "C0000003": _history("C0000003", 100, salary_stops=55),
        },
    )
    customer_registry.register_ids(redis_client, ["C0000099"])  # known, but no transaction yet
    engine = _engine(settings)
    assert engine.rescore_all() == 3

    steady, shock, gap = (_risk(redis_client, c) for c in ("C0000001", "C0000002", "C0000003"))
    assert set(steady) == set(RISK_FIELDS)
    assert (steady["risk_level"], steady["rule_score"], steady["hardship_type"]) == ("LOW", "0", "None"), steady
    assert steady["recommended_action"] == "monitor"
    assert shock["risk_level"] == "HIGH" and int(shock["rule_score"]) >= 5
    assert shock["hardship_type"] == "Income Shock"
    assert "No salary credit for" in shock["reasons"]
    assert shock["recommended_action"] != "monitor"
    assert shock["model_version"] == engine.rules.version and shock["model_version"].startswith("rules-")
    assert shock["scored_at"].startswith("2026-06-0")  # event time (the watermark), not today
    assert gap["risk_level"] in ("MEDIUM", "HIGH")
    assert _risk(redis_client, "C0000099") == {}

    queue = [c.decode() for c in cast(list[bytes], redis_client.zrevrange(QUEUE_KEY, 0, -1))]
    assert queue[0] == "C0000002" and queue[-1] == "C0000001"
    # The console's indices: each customer in their level's and hardship type's set only.
    for cid, risk in (("C0000001", steady), ("C0000002", shock), ("C0000003", gap)):
        in_levels = [lv for lv in LEVELS if redis_client.sismember(level_index(lv), cid)]
        in_types = [h for h in HARDSHIP_TYPES if redis_client.sismember(hardship_index(h), cid)]
        assert in_levels == [risk["risk_level"]] and in_types == [risk["hardship_type"]], (cid, in_levels, in_types)
    engine.trend_point(force=True)
    trend = cast(list[tuple[bytes, dict[bytes, bytes]]], redis_client.xrange(TREND_KEY))
    assert len(trend) == 1 and int(trend[0][1][steady["risk_level"].encode()]) >= 1
    explained = orjson.loads(cast(bytes, redis_client.get(reasons_key("C0000002"))))
    assert sum(r["points"] for r in explained["reasons"]) == explained["rule_score"] == int(shock["rule_score"])
    assert "Income Shock" in explained["hardship_rules_fired"]

    # Level changes (from nothing to MEDIUM/HIGH) went to the stream and to Kafka; LOW made none.
    changes = _changes(redis_client)
    assert {c["customer_id"] for c in changes} == {"C0000002", "C0000003"}
    got = _read_events(settings, 2)
    assert {(e["customer_id"], e["previous_level"], e["risk_level"]) for e in got} == {
        ("C0000002", None, "HIGH"),
        ("C0000003", None, changes[[c["customer_id"] for c in changes].index("C0000003")]["risk_level"]),
    }
    # Re-scoring the same state changes nothing and publishes nothing.
    assert engine.rescore_all() == 3
    assert redis_client.xlen(CHANGES_KEY) == 2


def test_only_changed_customers_are_rescored(settings: Settings, redis_client: redis.Redis) -> None:
    _load(redis_client, settings, {f"C{i:07d}": _history(f"C{i:07d}", 60) for i in range(1, 6)})
    engine = _engine(settings)
    engine.rescore_all()
    redis_client.delete(feature_store.DIRTY_KEY)
    assert engine.changes_step().scored == 0
    redis_client.sadd(feature_store.DIRTY_KEY, "C0000003")
    before = redis_client.hget("customer:C0000001", "scored_at")
    scored = int(redis_client.hget(STATS_KEY, "scored") or 0)
    assert engine.changes_step().scored == 1
    assert int(redis_client.hget(STATS_KEY, "scored") or 0) == scored + 1
    assert _risk(redis_client, "C0000003")["risk_level"] == "LOW"
    assert redis_client.hget("customer:C0000001", "scored_at") == before
    assert redis_client.scard(feature_store.DIRTY_KEY) == 0


def test_the_sweep_moves_time_based_signals_with_the_watermark(settings: Settings, redis_client: redis.Redis) -> None:
    ids = [f"C{i:07d}" for i in range(1, 41)]
    histories = {cid: _history(cid, 60) for cid in ids}
    newest = _load(redis_client, settings, histories)
    engine = _engine(settings.model_copy(update={"risk_sweep_batch": 10, "risk_sweep_interval_s": 0.01}))
    assert engine.sweep_step().scored > 0  # the start-up pass
    steps = 1
    while engine.sweep is not None:
        engine.sweep_step()
        steps += 1
    assert steps >= 3  # cut into cycles of about risk_sweep_batch customers
    assert {_risk(redis_client, c)["risk_level"] for c in ids} == {"LOW"}
    assert engine.sweep_step().scored == 0  # same day: nothing time-based moved, no pass

    # Forty days pass with no transaction from these customers (others keep the stream going):
    # no salary for 70 days, no activity for 40.
    _set_watermark(redis_client, settings, newest + 40 * 86_400_000)
    engine.rescore_all()
    late = _risk(redis_client, ids[0])
    assert (late["risk_level"], late["rule_score"]) == ("MEDIUM", "4")
    assert "No salary credit for 69 days" in late["reasons"]
    assert "No account activity for 40 days" in late["reasons"]
    assert late["scored_at"] == "2026-06-08T18:00:00Z"  # as of the watermark, 40 days on


@pytest.mark.timeout(180)
def test_live_distress_reaches_high_through_the_pipeline(
    settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """produce -> features -> risk as real processes: the distressed customer turns HIGH, the steady stays LOW."""
    steady, shock = _history("C0000001", 100), _history("C0000002", 100, salary_stops=40, failed_from=75)
    customer_registry.register_ids(redis_client, ["C0000001", "C0000002"])
    features = start_component(settings, "features", log_path=tmp_path / "features.log")
    risk = start_component(settings, "risk", log_path=tmp_path / "risk.log")
    try:
        producer = make_producer(settings)
        for e in sorted(steady + shock, key=lambda e: e["ts"]):
            producer.produce(settings.topic_transactions, encode(e), key=e["customer_id"].encode())
        assert producer.flush(30) == 0
        wait_until(
            lambda: redis_client.hget("customer:C0000002", "risk_level") == b"HIGH",
            90,
            "the distressed customer to be HIGH\n" + (tmp_path / "risk.log").read_text(errors="replace"),
        )
        wait_until(lambda: redis_client.hget("customer:C0000001", "risk_level") == b"LOW", 30, "steady to be LOW")
        assert redis_client.zscore(QUEUE_KEY, "C0000002") == 10 * int(
            redis_client.hget("customer:C0000002", "rule_score") or 0
        )
        assert cast(bytes, redis_client.hget(LEVELS_KEY, "C0000002")).startswith(b"HIGH|")
    finally:
        for proc in (risk, features):
            proc.send_signal(signal.SIGTERM)
        for proc in (risk, features):
            assert proc.wait(30) == 0
    assert "Traceback" not in (tmp_path / "risk.log").read_text(errors="replace")


def test_a_level_is_kept_until_the_score_falls_below_its_release_point(
    settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The engine keeps a customer at the level it had them at while the score clears that level's
    release point: no level change, no event, until it falls below it. Here the release is two rule
    points under the threshold (a rules file of the bank's own), so HIGH (>= 5) holds down to 3."""
    shipped = importlib.resources.files("equilibrate.risk").joinpath("rules.yaml").read_text(encoding="utf-8")
    assert "  rule_points: 1\n" in shipped
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(shipped.replace("  rule_points: 1\n", "  rule_points: 2\n"))
    _load(redis_client, settings, {
        "C0000001": _history("C0000001", 100),
        "C0000003": _history("C0000003", 100, salary_stops=55),
    })  # fmt: skip
    engine = _engine(settings.model_copy(update={"risk_rules_file": rules_file}))
    engine.rescore_all()
    steady, gap = _risk(redis_client, "C0000001"), _risk(redis_client, "C0000003")
    assert (steady["risk_level"], steady["rule_score"]) == ("LOW", "0")
    assert (gap["risk_level"], gap["rule_score"]) == ("MEDIUM", "3")
    before = redis_client.xlen(CHANGES_KEY)

    # As if both had been at HIGH (an earlier score): 3 clears HIGH's release point (5 - 2), 0 does not.
    redis_client.hset(LEVELS_KEY, mapping={"C0000001": "HIGH|earlier", "C0000003": "HIGH|earlier"})
    engine.rescore_all()
    held = _risk(redis_client, "C0000003")
    assert (held["risk_level"], held["rule_score"]) == ("HIGH", "3")
    assert redis_client.sismember(level_index("HIGH"), "C0000003")
    assert not redis_client.sismember(level_index("MEDIUM"), "C0000003")
    explained = orjson.loads(cast(bytes, redis_client.get(reasons_key("C0000003"))))
    assert (explained["level_by_score"], explained["level_release_point"]) == ("MEDIUM", 30.0)
    assert _risk(redis_client, "C0000001")["risk_level"] == "LOW"
    dropped = _changes(redis_client)[before:]
    assert [(c["customer_id"], c["previous_level"], c["risk_level"]) for c in dropped] == [("C0000001", "HIGH", "LOW")]
