"""Chaos: 10% garbage at full rate, out-of-order and very late events, then a burst of 10x: the archive and
the feature engine never stop, every bad event is in the DLQ under its reason (counted as injected), the
good ones are all counted once, and the lag drains."""

from __future__ import annotations

import random
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import redis

from equilibrate.features import store as feature_store
from equilibrate.kafka.dlq import read_counts
from equilibrate.kafka.transport import make_admin, make_producer
from equilibrate.settings import Settings
from equilibrate.storage import customer_registry
from equilibrate.storage.archive_store import ArchiveStore
from tests.factories import encode, varied_stream
from tests.processes import start_component, wait_until

GARBAGE_KINDS: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "not_json": lambda e: b"\x00\xffnot json",
    "not_an_object": lambda e: b"[1, 2, 3]",
    "bad_amount": lambda e: encode({**e, "amount": "lots"}),
    "unknown_customer": lambda e: encode({**e, "customer_id": "NOBODY"}),
    "missing_customer_id": lambda e: orjson.dumps({k: v for k, v in e.items() if k != "customer_id"}),
}


def test_garbage_bursts_and_disorder_are_absorbed(
    settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    s = settings.model_copy(update={"features_batch": 2_000, "archive_flush_interval_s": 0.5})
    events = varied_stream(120, 100, seed=21, late_fraction=0.08)
    customer_registry.register_ids(redis_client, sorted({e["customer_id"] for e in events}))
    rng = random.Random(4)
    garbage: list[tuple[str, bytes]] = []
    for n, event in enumerate(events[: len(events) // 10]):
        reason = list(GARBAGE_KINDS)[n % len(GARBAGE_KINDS)]
        garbage.append((reason, GARBAGE_KINDS[reason]({**event, "txn_id": f"G{n}"})))
    stream: list[tuple[bytes, bytes]] = [(e["customer_id"].encode(), encode(e)) for e in events]
    stream += [(b"junk", raw) for _, raw in garbage]
    rng.shuffle(stream)  # garbage everywhere, and order mixed up further
    half = len(stream) // 10

    log = tmp_path / "pipeline.log"
    procs = [start_component(s, name, log_path=log) for name in ("archive", "features")]
    producer = make_producer(s)
    try:
        for key, raw in stream[:half]:  # the normal rate first...
            producer.produce(s.topic_transactions, raw, key=key)
        assert producer.flush(30) == 0
        wait_until(lambda: int(redis_client.hget(feature_store.STATS_KEY, "events") or 0) > 0, 60, "consuming")
        for key, raw in stream[half:]:  # ...then everything else at once: 9x what was sent so far
            producer.produce(s.topic_transactions, raw, key=key)
        assert producer.flush(60) == 0

        archive = ArchiveStore(s.data_dir / "archive")

        def absorbed() -> bool:
            stats = redis_client.hgetall(feature_store.STATS_KEY)
            counted = int(stats.get(b"events", 0))
            rejected = sum(read_counts(redis_client).values())
            return counted >= len(events) and archive.load().rows >= len(events) and rejected >= 2 * len(garbage)

        wait_until(absorbed, 120, "every event archived or rejected by both components")
        admin = make_admin(s)
        lag = admin.consumer_lag(["equilibrate-features", "equilibrate-archive"])
        admin.close()
        assert lag and all(p.lag == 0 for p in lag), lag
        assert all(p.poll() is None for p in procs), "a component stopped"
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(30) == 0
    assert "Traceback" not in log.read_text()

    counts = read_counts(redis_client)
    injected = {reason: sum(1 for r, _ in garbage if r == reason) for reason in GARBAGE_KINDS}
    for component in ("features", "archive"):
        seen = {reason: counts.get(f"{component}:{reason}", 0) for reason in GARBAGE_KINDS}
        assert seen == injected, (component, seen, injected)
    stats = redis_client.hgetall(feature_store.STATS_KEY)
    assert int(stats[b"events"]) == len(events)  # each good event counted once
    assert int(stats.get(b"late_dropped", 0)) > 0  # the shuffle sent some far out of order: too old for the windows
    assert ArchiveStore(s.data_dir / "archive").load().rows == len(events)  # the archive keeps even the late ones
