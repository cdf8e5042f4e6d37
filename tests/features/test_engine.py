"""The feature engine on the real broker and Redis: equal to a rebuild, even after kill -9."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import redis

from equilibrate.features import store
from equilibrate.features.compute import FEATURES
from equilibrate.features.rebuild import rebuild
from equilibrate.kafka.transport import make_producer
from equilibrate.schema import parse_transaction
from equilibrate.settings import Settings
from equilibrate.storage import customer_registry
from equilibrate.storage.archive_store import ArchiveStore, PendingRow
from tests.conftest import Services, make_settings
from tests.factories import encode, varied_stream
from tests.processes import start_component, wait_until

COMPARED = (*FEATURES, "last_txn_ts", "feature_version")


def _produce(settings: Settings, events: list[dict[str, Any]], extra: tuple[bytes, ...] = ()) -> None:
    producer = make_producer(settings)
    for e in events:
        producer.produce(settings.topic_transactions, encode(e), key=e["customer_id"].encode())
    for raw in extra:  # keyed like the events they imitate, as a producer retry would be
        producer.produce(settings.topic_transactions, raw, key=events[5]["customer_id"].encode())
    assert producer.flush(30) == 0


def _events_done(client: redis.Redis) -> int:
    return int(client.hget(store.STATS_KEY, "events") or 0)


def _profiles(client: redis.Redis, ids: list[str]) -> dict[str, dict[str, str]]:
    return {cid: {k: v for k, v in p.items() if k in COMPARED} for cid, p in store.read_profiles(client, ids).items()}


def _states(client: redis.Redis, ids: list[str]) -> list[bytes | None]:
    return store.load_states(client, ids)


def _assert_equal_to_rebuild(
    services: Services, tmp_path: Path, live: redis.Redis, events: list[dict[str, Any]], archive: ArchiveStore
) -> None:
    other = make_settings(services, tmp_path / "rebuild")
    client = redis.Redis.from_url(other.redis_url)
    client.flushdb()
    rebuild(client, archive, "unused", set_offsets=False)
    ids = sorted({e["customer_id"] for e in events})
    assert _states(client, ids) == _states(live, ids)
    stream_profiles, batch_profiles = _profiles(live, ids), _profiles(client, ids)
    for cid in ids:
        assert set(stream_profiles[cid]) == set(COMPARED), cid
        assert stream_profiles[cid] == batch_profiles[cid], cid
    client.close()


def _archive_of(tmp_path: Path, events: list[dict[str, Any]]) -> ArchiveStore:
    archive = ArchiveStore(tmp_path / "reference-archive")
    archive.recover()
    archive.commit([PendingRow(parse_transaction(encode(e)), 0, i) for i, e in enumerate(events)], {})
    return archive


@pytest.mark.parametrize("client_name", ["confluent", "kafka-python"])
def test_stream_profiles_equal_a_rebuild_from_the_archive(
    services: Services, settings: Settings, redis_client: redis.Redis, tmp_path: Path, client_name: str
) -> None:
    settings = settings.model_copy(
        update={"kafka_client": client_name, "features_batch": 700, "archive_flush_interval_s": 0.3}
    )
    events = varied_stream(25, 120, seed=3)
    customer_registry.register_ids(redis_client, sorted({e["customer_id"] for e in events}))
    garbage = (b"not json at all", encode({**events[5], "amount": -1, "txn_id": "neg"}), encode(events[5]))
    _produce(settings, events, garbage)

    log = tmp_path / "components.log"
    archive_proc = start_component(settings, "archive", log_path=log)
    features_proc = start_component(settings, "features", log_path=log)
    try:
        wait_until(
            lambda: (
                _events_done(redis_client) >= len(events)
                and ArchiveStore(settings.data_dir / "archive").load().rows >= len(events)
            ),
            120,
            "both components caught up",
        )
    finally:
        for proc in (archive_proc, features_proc):
            proc.send_signal(signal.SIGTERM)
        assert archive_proc.wait(30) == 0 and features_proc.wait(30) == 0
    assert "Traceback" not in log.read_text()
    assert _events_done(redis_client) == len(events)
    stats = redis_client.hgetall(store.STATS_KEY)
    assert int(stats[b"rejected"]) == len(garbage)
    assert int(stats[b"late_dropped"]) == 3  # the events far older than the 90-day window
    assert redis_client.scard(store.DIRTY_KEY) == 25
    assert store.watermark_ms(redis_client) is not None

    archive = ArchiveStore(settings.data_dir / "archive")
    assert archive.load().rows == len(events)
    _assert_equal_to_rebuild(services, tmp_path, redis_client, events, archive)


def test_kill_9_at_any_moment_then_restart_equals_a_clean_rebuild(
    services: Services, settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"features_batch": 300})
    events = varied_stream(60, 100, seed=11, late_fraction=0.02)
    customer_registry.register_ids(redis_client, sorted({e["customer_id"] for e in events}))
    _produce(settings, events)
    log = tmp_path / "features.log"
    proc = start_component(settings, "features", log_path=log)
    wait_until(lambda: _events_done(redis_client) >= len(events) // 4, 60, "a quarter processed", interval=0.02)
    proc.kill()
    proc.wait(10)
    at_kill = _events_done(redis_client)
    assert 0 < at_kill < len(events)

    proc = start_component(settings, "features", log_path=log)
    try:
        wait_until(lambda: _events_done(redis_client) >= len(events), 120, "all events processed")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert _events_done(redis_client) == len(events)  # nothing counted twice
    _assert_equal_to_rebuild(services, tmp_path, redis_client, events, _archive_of(tmp_path, events))


def test_two_engines_split_partitions_and_survive_losing_one(
    services: Services, settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"features_batch": 200})
    events = varied_stream(80, 60, seed=21, late_fraction=0.02)
    customer_registry.register_ids(redis_client, sorted({e["customer_id"] for e in events}))
    log = tmp_path / "features.log"
    first = start_component(settings, "features", log_path=log)
    second = start_component(settings, "features", log_path=log)
    _produce(settings, events)
    try:
        wait_until(lambda: _events_done(redis_client) >= len(events) // 5, 90, "both engines working", interval=0.02)
        second.kill()  # its partitions move to the first engine after the session timeout
        second.wait(10)
        wait_until(lambda: _events_done(redis_client) >= len(events), 120, "the survivor finished the work")
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
    assert _events_done(redis_client) == len(events)
    assert "Traceback" not in log.read_text()
    _assert_equal_to_rebuild(services, tmp_path, redis_client, events, _archive_of(tmp_path, events))
