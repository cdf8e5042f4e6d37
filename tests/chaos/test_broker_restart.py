"""Chaos: the Kafka broker killed with SIGKILL mid-stream and started again on the same port and storage.

The embedded Tansu keeps its log in an S3-compatible store (moto in server mode, installed by
`scripts/setup.sh dev` into `.venv/s3-server`), so, like a real Kafka broker, a restart keeps its
topics, records and consumer-group commits. The simulator produces at a capped rate while the
archive and the feature engine consume; the broker is killed -9 in the middle and started again
a few seconds later. Afterwards:

- the producer buffered through the outage: it reports every event sent and 0 failed deliveries
  (a delivery it gave up on would be counted in that line and in its exit code);
- the consumers noticed, reconnected by themselves (the same processes, never restarted) and caught up;
- the archive holds every produced transaction exactly once (rows = events sent = distinct
  txn_ids), the feature engine counted the same number, and every customer's rolling state and
  profile equal a clean rebuild from the archive. (The producer is not idempotent, as Tansu has no
  idempotent producers: a batch the broker stored but never acknowledged is sent again, and both
  consumers drop the repeat by txn_id into the dead-letter topic.)

Run: `.venv/bin/pytest -q tests/chaos/test_broker_restart.py` (about 20 s).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import pytest
import redis

from equilibrate.features import store as feature_store
from equilibrate.features.compute import FEATURES
from equilibrate.features.rebuild import rebuild
from equilibrate.kafka.broker import start_broker
from equilibrate.kafka.topics import ensure_topics
from equilibrate.ops.child import spawn, stop
from equilibrate.ops.net import free_port, wait_for_port
from equilibrate.settings import Settings
from equilibrate.storage.archive_store import ArchiveStore
from equilibrate.storage.customer_registry import KNOWN_CUSTOMERS_KEY
from tests.conftest import Services, make_settings
from tests.processes import start_component, wait_until

COMPARED = (*FEATURES, "last_txn_ts", "feature_version")
BUCKET = "tansu"
#: 200 customers x 45 days is ~16,000 events: ~5 s at 3,000 events/s, so the kill lands mid-stream. Each
#: produce request becomes an S3 object and every fetch lists a partition's objects (slow in moto), so
#: the test keeps the objects few: one partition, batches of a 50 ms chunk (150 events) each.
STREAM = ("--customers", "200", "--backfill-days", "45", "--days", "0", "--rate", "3000", "--seed", "11")
PRODUCED = re.compile(r"produce: (\d+) events sent, (\d+) failed deliveries")


def moto_server() -> Path:
    """The S3 server's entry point in its own virtualenv (botocore and the project disagree on dateutil)."""
    path = Path(sys.prefix) / "s3-server" / "bin" / "moto_server"
    if not path.exists():
        pytest.fail(f"no S3 test server at {path}: run `make setup-dev` (scripts/setup.sh dev installs it)")
    return path


@contextmanager
def s3_store(log_path: Path) -> Iterator[dict[str, str]]:
    """An S3-compatible server on a free port with one bucket; yields the environment Tansu reads."""
    port = free_port()
    with log_path.open("ab") as out:
        server = spawn([str(moto_server()), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        assert wait_for_port("127.0.0.1", port, timeout=30), "the S3 server did not start"
        endpoint = f"http://127.0.0.1:{port}"
        create_bucket = urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT")  # noqa: S310  # our server
        urllib.request.urlopen(create_bucket, timeout=10).close()  # noqa: S310
        yield {
            "AWS_ENDPOINT": endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",  # the throwaway server accepts any keys
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }
    finally:
        stop(server)


def _events(client: redis.Redis) -> int:
    return int(client.hget(feature_store.STATS_KEY, "events") or 0)


def test_a_killed_broker_restarted_on_its_storage_loses_and_repeats_nothing(
    services: Services, settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    log = tmp_path / "pipeline.log"
    broker_log = tmp_path / "broker.log"
    storage = f"s3://{BUCKET}/"
    kport = free_port()
    with s3_store(tmp_path / "s3.log") as s3_env:
        broker = start_broker("127.0.0.1", kport, storage=storage, env=s3_env, log_path=broker_log)
        s = settings.model_copy(update={
            "kafka_bootstrap_servers": f"127.0.0.1:{kport}", "kafka_partitions": 1,
            "features_batch": 1_000, "archive_flush_interval_s": 0.5,
        })  # fmt: skip
        procs: list[subprocess.Popen[bytes]] = []
        try:
            ensure_topics(s)
            procs = [start_component(s, name, log_path=log) for name in ("archive", "features")]
            wait_until(lambda: log.read_text().count("assigned") >= 2, 60, "both consumers joined their groups")
            produce = start_component(s, "produce", *STREAM, log_path=log)
            procs.append(produce)
            wait_until(lambda: _events(redis_client) > 500, 60, "the feature engine consuming the stream")

            broker.send_signal(signal.SIGKILL)
            broker.wait(10)
            at_kill = _events(redis_client)
            time.sleep(3)  # producer buffers, consumers find the broker gone
            assert produce.poll() is None, "the stream ended before the broker came back: slow it down"
            broker = start_broker("127.0.0.1", kport, storage=storage, env=s3_env, log_path=broker_log)

            assert produce.wait(120) == 0, log.read_text()[-3000:]
            archive = ArchiveStore(s.data_dir / "archive")

            def settled() -> bool:
                events = _events(redis_client)
                return events > at_kill and archive.load().rows == events and procs_alive()

            def procs_alive() -> bool:
                assert all(p.poll() is None for p in procs[:2]), log.read_text()[-3000:]
                return True

            sent, failed = (int(x) for x in PRODUCED.findall(log.read_text())[-1])
            wait_until(lambda: settled() and _events(redis_client) >= sent - failed, 90,
                       "archive and feature engine caught up after the restart")  # fmt: skip
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(30)
            stop(broker)

    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    # The outage was seen and survived: the clients logged the broker's absence, then carried on.
    assert re.search(r"(producer produce|consumer \S+): kafka ", text), text[-3000:]
    # The producer buffered: everything it sent was delivered, nothing given up.
    assert failed == 0 and sent > at_kill

    # Exactly once: the archive holds each produced transaction once, and the feature engine counted as many.
    archive = ArchiveStore(s.data_dir / "archive")
    txn_ids = archive.read(columns=["txn_id"]).column("txn_id").to_pylist()
    assert len(txn_ids) == len(set(txn_ids)) == sent == archive.load().rows == _events(redis_client)

    # Consistent state: every customer's rolling state and profile equal a clean rebuild from the archive.
    ids = sorted(x.decode() for x in cast(set[bytes], redis_client.smembers(KNOWN_CUSTOMERS_KEY)))
    other = make_settings(services, tmp_path / "rebuild")
    clean = redis.Redis.from_url(other.redis_url)
    clean.flushdb()
    rebuild(clean, archive, "unused", set_offsets=False)
    assert feature_store.load_states(clean, ids) == feature_store.load_states(redis_client, ids)
    live, rebuilt = feature_store.read_profiles(redis_client, ids), feature_store.read_profiles(clean, ids)
    for cid in ids:
        assert {k: live[cid].get(k) for k in COMPARED} == {k: rebuilt[cid].get(k) for k in COMPARED}, cid
    clean.close()
