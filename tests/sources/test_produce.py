"""`equilibrate produce`: the real CLI against the session's broker and Redis, plus pure pacing tests."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import redis

from equilibrate.kafka.transport import make_consumer
from equilibrate.ops.heartbeat import read_heartbeats
from equilibrate.settings import Settings
from equilibrate.sources.customers import generate_customers
from equilibrate.sources.produce import Streamer, prepare_population, register_population
from equilibrate.sources.simulator import DAY_MS, Simulator
from equilibrate.storage import customer_registry
from tests.conftest import run_cli, settings_env

SUMMARY = re.compile(
    r"produce: (?P<sent>\d+) events sent, (?P<failed>\d+) failed deliveries, "
    r"simulated time reached (?P<reached>\S+), (?P<rate>\d+) events/s"
)


def _read_back(settings: Settings, expected: int, timeout: float = 60) -> list[tuple[bytes, dict[str, object]]]:
    consumer = make_consumer(settings, f"produce-test-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([settings.topic_transactions])
    out: list[tuple[bytes, dict[str, object]]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            out += [(r.key or b"", orjson.loads(r.value or b"{}")) for r in consumer.consume(5_000, 1.0)]
        # Anything beyond what was expected would show up within a moment.
        out += [(r.key or b"", orjson.loads(r.value or b"{}")) for r in consumer.consume(5_000, 1.0)]
    finally:
        consumer.close()
    return out


def _summary(stdout: str) -> re.Match[str]:
    match = SUMMARY.search(stdout)
    assert match, stdout
    return match


@pytest.mark.integration
def test_backfill_through_the_cli(settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> None:
    result = run_cli(
        "produce", "--customers", "300", "--backfill-days", "30", "--days", "0", "--start", "2026-03-01",
        env=settings_env(settings), cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = _summary(result.stdout)
    assert summary["failed"] == "0"
    assert summary["reached"] == "2026-03-31T00:00:00.000Z"

    # The same seed in-process gives exactly the events that went over the wire.
    customers = generate_customers(300, 42)
    sim = Simulator(customers, 42, datetime(2026, 3, 1, tzinfo=UTC))
    expected: dict[str, bytes] = {}
    for batch in sim.days(30):
        for key, raw in zip(sim.keys_of(batch), sim.encode(batch), strict=True):
            expected[orjson.loads(raw)["txn_id"]] = key
    assert int(summary["sent"]) == len(expected) > 5_000

    got = _read_back(settings, len(expected))
    assert len(got) == len(expected)
    assert {str(v["txn_id"]): k for k, v in got} == expected
    assert all(k == str(v["customer_id"]).encode() for k, v in got)  # keyed by customer id

    assert customer_registry.count(redis_client) == 300
    raw_profile: dict[bytes, bytes] = redis_client.hgetall("customer:C0000007")  # type: ignore[assignment]
    profile = {k.decode(): v.decode() for k, v in raw_profile.items()}
    assert profile["name"] == customers[6].name and profile["employment"] == customers[6].employment
    assert "persona" not in profile and not any("distress" in k for k in profile)

    data = settings.data_dir
    with (data / "customers.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 300 and "persona" not in rows[0]
    with (data / "ground_truth.csv").open(newline="") as fh:
        truth = list(csv.DictReader(fh))
    assert [r["customer_id"] for r in truth] == [r["customer_id"] for r in rows]
    assert {r["persona"] for r in truth} == {"stable", "overspender", "income_shock", "silent_drain"}


@pytest.mark.integration
def test_live_run_paces_by_the_simulated_clock_and_stops_cleanly_on_sigterm(
    settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    env = {**os.environ, **settings_env(settings), "HEARTBEAT_INTERVAL_S": "0.5"}
    argv = [sys.executable, "-m", "equilibrate", "produce", "--customers", "200", "--start", "2026-01-01"]
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        beats: list[dict[str, object]] = []
        while time.monotonic() < deadline and not beats:
            beats = [b for b in read_heartbeats(redis_client) if b["name"] == "produce" and b.get("events_sent")]
            time.sleep(0.2)
        assert beats, "no heartbeat with events from produce"
        live_since = time.monotonic()
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
        live_for = time.monotonic() - live_since
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    summary = _summary(stdout)
    assert summary["failed"] == "0"
    # Default speed: a simulated day in 10 s. A few seconds of wall time reach a few tenths of a day,
    # never the days an unpaced run would have produced.
    reached = datetime.fromisoformat(summary["reached"].replace("Z", "+00:00"))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert start + timedelta(hours=5) < reached < start + timedelta(hours=2.4 * (live_for + 10))
    sent = int(summary["sent"])
    got = _read_back(settings, sent)
    assert len(got) == sent > 0  # flushed before exiting: nothing lost
    assert max(str(v["ts"]) for _, v in got) <= summary["reached"]
    beat = next(b for b in read_heartbeats(redis_client) if b["name"] == "produce")
    assert beat["events_sent"] == sent and beat["phase"] == "stopped"


def test_bad_options_get_one_clear_line(tmp_path: Path) -> None:
    result = run_cli("produce", "--customers", "1000001", cwd=tmp_path)
    assert result.returncode == 2
    assert "between 1 and 1,000,000" in result.stderr.strip().splitlines()[-1]
    result = run_cli("produce", "--start", "01/02/2026", cwd=tmp_path)
    assert result.returncode == 2 and "YYYY-MM-DD" in result.stderr


def test_population_files_are_regenerated_only_when_size_or_seed_change(tmp_path: Path) -> None:
    assert prepare_population(tmp_path, 100, 42).written
    assert not prepare_population(tmp_path, 100, 42).written
    stamp = (tmp_path / "customers.csv").stat().st_mtime_ns
    assert prepare_population(tmp_path, 150, 42).written
    with (tmp_path / "customers.csv").open() as fh:
        assert sum(1 for _ in fh) == 151
    assert (tmp_path / "customers.csv").stat().st_mtime_ns != stamp
    assert prepare_population(tmp_path, 150, 7).written
    (tmp_path / "ground_truth.csv").unlink()
    assert prepare_population(tmp_path, 150, 7).written


@pytest.mark.integration
def test_registration_is_skipped_only_when_redis_already_holds_this_population(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    population = prepare_population(tmp_path, 120, 42)
    assert register_population(redis_client, population, 42)
    assert customer_registry.count(redis_client) == 120
    assert not register_population(redis_client, population, 42)
    assert register_population(redis_client, population, 43)  # another seed: other attributes
    redis_client.srem(customer_registry.KNOWN_CUSTOMERS_KEY, "C0000120")
    assert register_population(redis_client, population, 43)  # the registry lost some: register again
    assert customer_registry.count(redis_client) == 120


class _Recorder:
    """A producer that keeps what it is given (pure unit tests of pacing only)."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, bytes, bytes]] = []

    @property
    def failed(self) -> int:
        return 0

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sent.append((time.monotonic(), key or b"", value))

    def poll(self, timeout: float = 0.0) -> None:
        del timeout

    def flush(self, timeout: float = 30.0) -> int:
        del timeout
        return 0

    def close(self) -> None:
        """Nothing to release."""


def test_live_mode_releases_events_as_the_simulated_clock_passes_them() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    recorder = _Recorder()
    streamer = Streamer(Simulator(generate_customers(200, 1), 1, start), recorder, "t", stop=threading.Event())
    speed = 86_400 / 1.5  # one simulated day in 1.5 s
    began = time.monotonic()
    streamer.live(1, speed)
    took = time.monotonic() - began
    assert 1.4 < took < 5
    assert streamer.reached_ms == int(start.timestamp() * 1000) + DAY_MS
    assert len(recorder.sent) == streamer.sent > 200
    # Each event left no earlier than its simulated time, and not long after it.
    start_ms = start.timestamp() * 1000
    for wall, _key, value in recorder.sent:
        ts = datetime.fromisoformat(orjson.loads(value)["ts"].replace("Z", "+00:00")).timestamp() * 1000
        due = began + (ts - start_ms) / 1000 / speed
        assert due - 0.05 <= wall <= due + 0.5


def test_rate_cap_and_stop_flag() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    recorder = _Recorder()
    sim = Simulator(generate_customers(300, 1), 1, start)
    streamer = Streamer(sim, recorder, "t", stop=threading.Event(), rate=1_000)
    began = time.monotonic()
    streamer.backfill(1)
    assert streamer.sent == len(recorder.sent) > 400
    assert time.monotonic() - began > (streamer.sent - 50) / 1_000 - 0.05

    stop = threading.Event()
    stop.set()
    stopped = Streamer(Simulator(generate_customers(300, 1), 1, start), _Recorder(), "t", stop=stop)
    stopped.backfill(5)
    assert stopped.sent == 0
