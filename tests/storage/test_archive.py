"""The archive component against the real broker and Redis: exactly once, even across kill -9."""

from __future__ import annotations

import base64
import signal
import time
import uuid
from pathlib import Path

import orjson
import redis

from equilibrate.kafka.dlq import read_counts
from equilibrate.kafka.transport import make_consumer, make_producer
from equilibrate.settings import Settings
from equilibrate.storage import customer_registry
from equilibrate.storage.archive import export_csv
from equilibrate.storage.archive_store import ArchiveStore
from tests.factories import encode, stream, txn
from tests.processes import start_component, wait_until


def _archived_rows(settings: Settings) -> int:
    return ArchiveStore(settings.data_dir / "archive").load().rows


def _produce(settings: Settings, events: list[bytes], keys: list[bytes]) -> None:
    producer = make_producer(settings)
    for value, key in zip(events, keys, strict=True):
        producer.produce(settings.topic_transactions, value, key=key)
    assert producer.flush(30) == 0


def test_bad_input_goes_to_the_dlq_with_its_reason(
    settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    customer_registry.register_ids(redis_client, ["C0000001", "C0000002"])
    good = [txn("C0000001", txn_id="g1"), txn("C0000002", txn_id="g2")]
    bad = {
        "not_json": b"{{{{ definitely not json",
        "bad_amount": encode(txn("C0000001", amount=-3)),
        "bad_direction": encode(txn("C0000001", direction="up")),
        "bad_timestamp": encode(txn("C0000001", ts="31/02/2026")),
        "unknown_customer": encode(txn("C9999999")),
        "duplicate_txn_id": encode(good[0]),
    }
    values = [encode(e) for e in good] + list(bad.values())
    _produce(settings, values, [b"C0000001"] * len(values))
    proc = start_component(settings, "archive", log_path=tmp_path / "archive.log")
    try:
        wait_until(
            lambda: _archived_rows(settings) == 2 and sum(read_counts(redis_client).values()) == 6,
            60,
            "2 rows archived and 6 rejected",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert "Traceback" not in (tmp_path / "archive.log").read_text()
    counts = read_counts(redis_client)
    assert counts == {f"archive:{reason}": 1 for reason in bad}

    consumer = make_consumer(settings, f"dlq-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([settings.topic_dlq])
    dead: list[dict[str, object]] = []
    deadline = time.monotonic() + 60
    while len(dead) < 6 and time.monotonic() < deadline:
        dead += [orjson.loads(r.value or b"") for r in consumer.consume(100, 1.0)]
    consumer.close()
    assert {d["reason"] for d in dead} == set(bad)
    for d in dead:
        assert base64.b64decode(str(d["original_b64"])) == bad[str(d["reason"])]
        assert d["component"] == "archive" and d["source_topic"] == settings.topic_transactions


def test_kill_9_mid_run_then_restart_archives_every_event_exactly_once(
    settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={"archive_flush_rows": 400, "archive_flush_interval_s": 0.2, "consume_batch": 200}
    )
    events = stream(100, 250)  # 25,000 events over ~73 days
    customer_registry.register_ids(redis_client, sorted({e["customer_id"] for e in events}))
    _produce(settings, [encode(e) for e in events], [e["customer_id"].encode() for e in events])

    log = tmp_path / "archive.log"
    proc = start_component(settings, "archive", log_path=log)
    wait_until(lambda: _archived_rows(settings) >= 1200, 60, "the first flushes", interval=0.02)
    proc.kill()  # in the middle of the run: flushes are landing every few hundred rows
    proc.wait(10)
    at_kill = _archived_rows(settings)
    assert 0 < at_kill < len(events), at_kill

    proc = start_component(settings, "archive", log_path=log)
    try:
        wait_until(lambda: _archived_rows(settings) >= len(events), 90, "every event archived")
        time.sleep(1.0)  # nothing more may arrive: no duplicates after catching up
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0

    table = ArchiveStore(settings.data_dir / "archive").read()
    assert "Traceback" not in log.read_text()
    ids = table.column("txn_id").to_pylist()
    assert len(ids) == len(events)
    assert set(ids) == {e["txn_id"] for e in events}
    assert sum(read_counts(redis_client).values()) == 0  # nothing was mistaken for a duplicate

    path, rows = export_csv(settings)
    assert rows == len(events)
    lines = path.read_text().splitlines()
    assert len(lines) == len(events) + 1
    assert lines[0].startswith('"txn_id","customer_id","ts"')
