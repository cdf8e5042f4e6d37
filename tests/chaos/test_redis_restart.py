"""Chaos: Redis killed (SIGKILL, AOF everysec) in the middle of a run and started again from its files.

The archive, the feature engine and the risk engine wait for it and carry on. Whatever Redis lost in
its last second (states, offsets and counters are written together) is read again from Kafka, so the
result is the same as if nothing had happened: the archive equals the feature engine's count, and
every rolling state and profile equals a clean rebuild from the archive.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import cast

import redis

from equilibrate.features import store as feature_store
from equilibrate.features.compute import FEATURES
from equilibrate.features.rebuild import rebuild
from equilibrate.ops.net import free_port
from equilibrate.settings import Settings
from equilibrate.storage.archive_store import ArchiveStore
from equilibrate.storage.customer_registry import KNOWN_CUSTOMERS_KEY
from equilibrate.storage.redis_server import start_redis
from tests.conftest import Services, make_settings
from tests.processes import start_component, wait_until

COMPARED = (*FEATURES, "last_txn_ts", "feature_version")


def test_components_wait_for_a_restarted_redis_and_lose_nothing(
    services: Services, settings: Settings, tmp_path: Path
) -> None:
    port, redis_dir = free_port(), tmp_path / "redis"
    server = start_redis("127.0.0.1", port, redis_dir)
    s = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0", "features_batch": 1_000,
                                    "archive_flush_interval_s": 0.5})  # fmt: skip
    client = redis.Redis.from_url(s.redis_url)
    log = tmp_path / "pipeline.log"
    procs: list[subprocess.Popen[bytes]] = [
        start_component(s, name, log_path=log) for name in ("archive", "features", "risk")
    ]
    stream = ("--customers", "200", "--backfill-days", "45", "--days", "0", "--rate", "1500", "--seed", "9")
    produce = start_component(s, "produce", *stream, log_path=log)
    try:
        wait_until(lambda: int(client.hget(feature_store.STATS_KEY, "events") or 0) > 2_000, 90, "the stream under way")
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        time.sleep(3)  # components find Redis gone, and wait
        server = start_redis("127.0.0.1", port, redis_dir)
        assert produce.wait(180) == 0, log.read_text()[-3000:]
        archive = ArchiveStore(s.data_dir / "archive")

        def settled() -> bool:
            events = int(client.hget(feature_store.STATS_KEY, "events") or 0)
            return events > 0 and archive.load().rows == events and client.scard(feature_store.DIRTY_KEY) == 0

        wait_until(settled, 120, "archive and feature engine caught up after the restart")
    finally:
        for proc in (*procs, produce):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (*procs, produce):
            proc.wait(30)
    text = log.read_text()
    assert "Redis unavailable" in text and "Redis is back" in text  # they noticed, waited, and carried on
    assert "Traceback" not in text, text[-3000:]

    ids = sorted(x.decode() for x in cast(set[bytes], client.smembers(KNOWN_CUSTOMERS_KEY)))
    other = make_settings(services, tmp_path / "rebuild")
    clean = redis.Redis.from_url(other.redis_url)
    clean.flushdb()
    rebuild(clean, ArchiveStore(s.data_dir / "archive"), "unused", set_offsets=False)
    assert feature_store.load_states(clean, ids) == feature_store.load_states(client, ids)
    live, rebuilt = feature_store.read_profiles(client, ids), feature_store.read_profiles(clean, ids)
    for cid in ids:
        assert {k: live[cid].get(k) for k in COMPARED} == {k: rebuilt[cid].get(k) for k in COMPARED}, cid
    assert client.zcard("eq:risk:queue") == len(ids)
    clean.close()
    client.close()
    server.terminate()
    server.wait(10)
