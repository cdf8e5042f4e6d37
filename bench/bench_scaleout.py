"""Feature engine scale-out: 1, 2 and 4 `equilibrate features` processes on one 4-partition topic,
and partitions moving in the middle of a run, which must leave every customer equal to a rebuild.

    .venv/bin/python bench/bench_scaleout.py [--customers 4000] [--days 60] [--counts 1,2,4]
                                             [--rebalance join,term|none] [--rebalance-stream-s 24]
                                             [--quick] [--out PATH]

Wall-time budget: 3 minutes at the default (suite) sizes on this 2-core machine (about 2 min 20 s
measured: every run waits 6-12 s for the broker to form its group). `--quick` (1,000 customers x
30 days) writes to the temp directory, so a smoke run never replaces the recorded numbers. Exit
code 1 when a check fails (a mismatch, a count off, a process that did not exit cleanly).

Set-up: `--customers` simulated customers x `--days` days (the simulator, seed 7) are encoded
once, as the wire carries them; the same events, parsed, go to a Parquet archive, and
`equilibrate.features.rebuild.rebuild` folds that archive into a Redis database of its own: the
reference every run is compared with. One redis-server (the project's launch code) serves all.

Runs: each run has a broker of its own (embedded Tansu, memory storage, free port) whose
4-partition topic is loaded with every event (keyed by customer, confluent client) before N real
`python -m equilibrate features` processes start together (one consumer group, the confluent
client, the default batch) on an empty Redis database, so they read the topic from the start.
Why a broker per run: on Tansu 0.6 a group's join does not complete when fewer members come back
than the group had before (seen with 2 -> 1, 3 -> 1, 4 -> 1 and 4 -> 2: no assignment within
60-150 s, though the group shows EMPTY; 1 -> 1, 2 -> 2, 1 -> 2 and 2 -> 4 work), so runs sharing
a broker would depend on their order.
The bench polls Redis every 50 ms and tails each process's log:
- join_s: first process started -> first partitions assigned (the "assigned" log line). Tansu
  completes a group's first join only after max.poll.interval.ms (10 s): waiting, not work.
- processing_s: partitions assigned -> every event counted (`eq:features:stats`); events_per_s
  (the total) = events / processing_s. It includes the first fetch and fold (first_commit_s -
  join_s); events_per_s_after_first_commit leaves them out.
- per process: its own count from its heartbeat (`eq:components`, a beat every 0.1 s carries the
  events it has committed) over its own active time (its partitions assigned -> the beat that
  showed its final count, to ~0.1 s). Which partitions it owned, and from which offset, is read
  from its log ("assigned ... resuming at"): `ownership`.
- CPU: each process's user+system seconds (/proc) over processing_s, as cores kept busy, with the
  broker, redis-server, this bench and `other` (the rest of the machine: other people's work on a
  shared machine shows there). `machine.nproc` is the core count: with 2 cores, 4 processes (plus
  Redis and the broker) cannot be faster than 2, and the numbers say so rather than hide it.
Every run ends with the same check: events counted and the sum of the partitions' offsets kept in
Redis both equal the events produced (no loss, no double count), and every customer's packed
state and profile (the features, last_txn_ts, feature_version) equal the rebuild's.

Rebalance: 2 processes; 30% of the events are on the topic when they start, the rest is streamed
over `--rebalance-stream-s` seconds from the moment they hold the partitions. Once 20% are
counted a third process starts (`join`); once it has committed a batch, one of the first two gets
SIGTERM (`term`). Each rebalance takes ~8-10 s on Tansu, so the stream is long enough for both
to happen while events are in flight. When all is drained, the same check; `partitions_moved`
lists the partitions whose events were processed by more than one process.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import logging
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import redis
from machine_info import busy_s, cpu_model

from equilibrate.features import store
from equilibrate.features.compute import FEATURES
from equilibrate.features.rebuild import rebuild
from equilibrate.kafka.broker import start_broker, tansu_binary
from equilibrate.kafka.topics import ensure_topics
from equilibrate.kafka.transport import make_producer
from equilibrate.ops.child import spawn, stop
from equilibrate.ops.heartbeat import COMPONENTS_KEY
from equilibrate.ops.net import free_port
from equilibrate.schema import parse_transaction
from equilibrate.settings import Settings
from equilibrate.sources.customers import generate_customers
from equilibrate.sources.simulator import Simulator
from equilibrate.storage import customer_registry
from equilibrate.storage.archive_store import ArchiveStore, PendingRow
from equilibrate.storage.redis_server import start_redis

log = logging.getLogger(__name__)

RESULTS = Path(__file__).resolve().parent / "results" / "scaleout.json"
START = datetime(2026, 1, 1, tzinfo=UTC)
SEED = 7
PARTITIONS = 4
POLL_S = 0.05
HEARTBEAT_S = 0.1
REFERENCE_DB = 15
PRELOAD = 0.3  # rebalance run: share of the events on the topic before the processes start
JOIN_AT = 0.2  # rebalance run: the third process starts once this share is counted
COMPARED = (*FEATURES, "last_txn_ts", "feature_version")
_ASSIGNED = re.compile(r"assigned (\d+) partition\(s\); resuming at \{(.*)\}")
_RESUME = re.compile(r"\[(\d+)\]': (\d+|None)")


def _settings(bootstrap: str, redis_port: int, db: int) -> Settings:
    suffix = uuid.uuid4().hex[:6]
    return Settings(
        _env_file=None,
        kafka_bootstrap_servers=bootstrap,
        redis_url=_url(redis_port, db),
        kafka_client="confluent",
        topic_transactions=f"bench-scale-txn-{suffix}",
        topic_dlq=f"bench-scale-dlq-{suffix}",
        kafka_partitions=PARTITIONS,
    )


def _url(redis_port: int, db: int) -> str:
    return f"redis://127.0.0.1:{redis_port}/{db}"


@contextlib.contextmanager
def fresh_broker(redis_port: int, db: int) -> Iterator[tuple[Settings, subprocess.Popen[bytes]]]:
    """A broker of its own for one run, with the run's topics (see the module docstring: groups)."""
    port = free_port()
    broker = start_broker("127.0.0.1", port, quiet=True)
    try:
        settings = _settings(f"127.0.0.1:{port}", redis_port, db)
        ensure_topics(settings, [settings.topic_transactions, settings.topic_dlq])
        yield settings, broker
    finally:
        stop(broker)


# -- set-up -------------------------------------------------------------------------------------
@dataclass
class Population:
    ids: list[str]
    events: int
    generate_s: float
    archive: ArchiveStore
    records: list[tuple[bytes, bytes]]  # (key, value) as produced: the rebalance run streams them again


def generate(customers: int, days: int, archive_root: Path) -> Population:
    """Every simulated day's events as the wire carries them; the same events, parsed, archived for the rebuild."""
    started = time.perf_counter()
    sim = Simulator(generate_customers(customers, seed=SEED), seed=SEED, start=START)
    archive = ArchiveStore(archive_root)
    archive.recover()
    records: list[tuple[bytes, bytes]] = []
    for batch in sim.days(days):
        rows: list[PendingRow] = []
        for lo in range(0, len(batch), 5_000):
            values = sim.encode(batch, lo, lo + 5_000)
            for value, key in zip(values, sim.keys_of(batch, lo, lo + 5_000), strict=True):
                rows.append(PendingRow(parse_transaction(value), 0, len(records)))
                records.append((key, value))
        archive.commit(rows, {})
    return Population(list(sim.customer_ids), len(records), time.perf_counter() - started, archive, records)


def load_topic(settings: Settings, records: list[tuple[bytes, bytes]]) -> float:
    """Produce every event to the run's topic (keyed by customer); seconds taken."""
    started = time.perf_counter()
    producer = make_producer(settings, linger_ms=20)
    topic = settings.topic_transactions
    for i, (key, value) in enumerate(records):
        producer.produce(topic, value, key=key)
        if i % 5_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("events not delivered")
    producer.close()
    return time.perf_counter() - started


class Feed:
    """The rebalance run's topic: a share preloaded, the rest produced at a paced rate by the poll loop."""

    def __init__(self, settings: Settings, records: list[tuple[bytes, bytes]], rate: int) -> None:
        self.settings, self.records, self.rate = settings, records, rate
        self.producer = make_producer(settings)  # the default 5 ms linger, as every Equilibrate producer uses
        self.sent = self.preloaded = 0
        self.started: float | None = None
        self.finished: float | None = None

    def send(self, count: int) -> None:
        topic = self.settings.topic_transactions
        for key, value in self.records[self.sent : self.sent + count]:
            self.producer.produce(topic, value, key=key)
        self.sent = min(len(self.records), self.sent + count)
        self.producer.poll(0)

    def tick(self) -> None:
        """Send what is due since the stream started (at most one second's worth at a time)."""
        if self.started is None or self.sent >= len(self.records):
            return
        due = int((time.perf_counter() - self.started) * self.rate) - (self.sent - self.preloaded)
        self.send(min(max(due, 0), self.rate))
        if self.sent >= len(self.records):
            if self.producer.flush(30):
                raise RuntimeError("live events not delivered")
            self.finished = time.perf_counter()

    def preload(self, count: int) -> None:
        self.send(count)
        if self.producer.flush(60):
            raise RuntimeError("events not delivered")
        self.preloaded = self.sent

    def close(self) -> None:
        self.producer.flush(30)
        self.producer.close()


def prepare_db(settings: Settings, ids: list[str]) -> None:
    """The run's database, empty but for the customer registry."""
    client = redis.Redis.from_url(settings.redis_url)
    client.flushdb()
    customer_registry.register_ids(client, ids)
    client.close()


# -- one run ------------------------------------------------------------------------------------
def _cpu_s(pid: int) -> float | None:
    """CPU seconds a process has used (user + system; Linux /proc); None once it has gone."""
    with contextlib.suppress(OSError):
        after_comm = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in after_comm[11:13]) / os.sysconf("SC_CLK_TCK")
    return None


@dataclass
class Assignment:
    at: float  # bench clock of the poll before the one that read the line (it was written after that)
    partitions: dict[int, int | None]  # partition -> offset it resumed at


@dataclass
class Member:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    spawned: float
    beats: list[tuple[float, int]] = field(default_factory=list)  # (bench clock, events it has committed)
    assignments: list[Assignment] = field(default_factory=list)
    last_cpu: float = 0.0
    terminated_at: float | None = None
    exit_code: int | None = None
    _log_pos: int = 0
    _partial: bytes = b""

    @property
    def events(self) -> int:
        return self.beats[-1][1] if self.beats else 0

    @property
    def first_assigned(self) -> float | None:
        return next((a.at for a in self.assignments if a.partitions), None)

    def final_beat(self) -> float | None:
        """Bench clock of the first beat that showed the process's final count."""
        return next((t for t, n in self.beats if n == self.events), None) if self.events else None

    def tail(self, now: float) -> None:
        with self.log_path.open("rb") as fh:
            fh.seek(self._log_pos)
            chunk = fh.read()
        self._log_pos += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            m = _ASSIGNED.search(line.decode(errors="replace"))
            if m:
                parts = {int(p): (None if o == "None" else int(o)) for p, o in _RESUME.findall(m.group(2))}
                self.assignments.append(Assignment(now, parts))


class Run:
    """N feature engine processes on one Redis database; the bench's poll loop and its records."""

    def __init__(self, settings: Settings, total: int, workdir: Path, services: dict[str, int]) -> None:
        self.settings, self.total, self.workdir = settings, total, workdir
        self.db = int(settings.redis_url.rsplit("/", 1)[1])
        self.client = redis.Redis.from_url(settings.redis_url)
        self.services = services
        self.members: list[Member] = []
        self.by_pid: dict[int, Member] = {}
        self.started = time.perf_counter()
        self.events = 0
        self.last_poll = (self.started, self.snapshot())
        self.assigned: float | None = None  # the group formed: the first partitions handed out
        self.first_commit: float | None = None
        self.events_at_first_commit = 0
        self.drained: float | None = None
        self.snap: dict[str, dict[str, float]] = {}
        self.feed: Feed | None = None
        self.timeline: list[dict[str, Any]] = []

    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
            "KAFKA_CLIENT": "confluent",
            "REDIS_URL": s.redis_url,
            "TOPIC_TRANSACTIONS": s.topic_transactions,
            "TOPIC_DLQ": s.topic_dlq,
            "KAFKA_PARTITIONS": str(PARTITIONS),
            "DATA_DIR": str(self.workdir / "data"),
            "LOG_LEVEL": "INFO",
            "HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S),
        }

    def add(self) -> Member:
        name = "abcdefghij"[len(self.members)]
        path = self.workdir / f"features-{name}.log"
        with path.open("wb") as log_file:
            proc = spawn([sys.executable, "-m", "equilibrate", "features"], env=self.env(), stderr=log_file)
        member = Member(name, proc, path, time.perf_counter())
        self.members.append(member)
        self.by_pid[proc.pid] = member
        self.note(f"started {name}")
        return member

    def note(self, what: str, at: float | None = None) -> None:
        t = (time.perf_counter() if at is None else at) - self.started
        self.timeline.append({"t_s": round(t, 2), "events": self.events, "what": what})
        log.info("db %d: %s at %.2f s (%d events counted)", self.db, what, t, self.events)

    def terminate(self, member: Member) -> None:
        member.proc.terminate()
        member.terminated_at = time.perf_counter()
        self.note(f"SIGTERM {member.name}")

    def snapshot(self) -> dict[str, float]:
        out = {"wall": time.perf_counter(), "machine": busy_s()}
        for name, pid in self.services.items():
            out[name] = _cpu_s(pid) or 0.0
        out["bench"] = time.process_time()
        for m in self.members:
            cpu = _cpu_s(m.proc.pid)
            if cpu is not None:
                m.last_cpu = cpu
            out[f"features-{m.name}"] = m.last_cpu
        return out

    def poll(self) -> None:
        if self.feed is not None:
            self.feed.tick()
        now = time.perf_counter()
        wall_to_bench = time.time() - now
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(store.STATS_KEY, "events")
        pipe.hgetall(COMPONENTS_KEY)
        events_raw, beats = pipe.execute()
        snap = self.snapshot()
        self.events = int(events_raw or 0)
        for raw in beats.values():
            beat = orjson.loads(raw)
            member = self.by_pid.get(int(beat["pid"]))
            if member is not None and beat.get("processed") is not None:
                entry = (float(beat["beat"]) - wall_to_bench, int(beat["processed"]))
                if not member.beats or member.beats[-1] != entry:
                    member.beats.append(entry)
        previous, previous_snap = self.last_poll
        for m in self.members:
            m.tail(previous)  # a line read now was written after the previous poll read the log
            if m.exit_code is None and m.proc.poll() is not None:
                m.exit_code = m.proc.returncode
                if m.terminated_at is None:
                    raise SystemExit(f"features process {m.name} exited ({m.exit_code}): see {m.log_path}")
        if self.assigned is None and any(m.first_assigned is not None for m in self.members):
            self.assigned = previous
            self.snap["start"] = previous_snap
            self.note("group formed: partitions assigned", previous)
        if self.events and self.first_commit is None:
            self.first_commit, self.events_at_first_commit = now, self.events
            self.note("first batch committed")
        if self.drained is None and self.events >= self.total:
            self.drained = now
            self.snap["end"] = snap
            self.note("every event counted")
        self.last_poll = (now, snap)

    def wait(self, condition: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                tails = "".join(
                    f"\n--- {m.name} (pid {m.proc.pid}) ---\n"
                    + "\n".join(m.log_path.read_text(errors="replace").splitlines()[-8:])
                    for m in self.members
                )
                raise SystemExit(f"timed out waiting for {what} (db {self.db}, {self.events:,} events counted){tails}")
            time.sleep(POLL_S)
            self.poll()

    def finish(self) -> None:
        """After the drain: the final beat of each live process, then SIGTERM; exit codes."""
        live = [m for m in self.members if m.terminated_at is None]
        self.wait(lambda: sum(m.events for m in live) + self._gone_events() >= self.total, 10, "final heartbeats")
        for m in live:
            m.proc.terminate()  # once: a second SIGTERM during interpreter shutdown would kill it
        for m in self.members:
            m.exit_code = _wait_exit(m.proc, 30)
            m.tail(time.perf_counter())
        self.client.close()

    def _gone_events(self) -> int:
        """Events of processes already stopped, from the partitions they owned (their final beat is gone)."""
        owned = self.ownership()
        return sum(owned["events_by_member"].get(m.name, 0) for m in self.members if m.terminated_at is not None)

    # -- results ---------------------------------------------------------------------------------
    def ownership(self) -> dict[str, Any]:
        """Segments of each partition: who owned it from which offset to which (the next owner's
        start, or the final offset in Redis); ordered by offset, then by when the log line was read."""
        final = store.read_offsets(self.client, [(self.settings.topic_transactions, p) for p in range(PARTITIONS)])
        segments: dict[int, list[tuple[int, float, str]]] = defaultdict(list)
        for m in self.members:
            for a in m.assignments:
                for p, off in a.partitions.items():
                    segments[p].append((off or 0, a.at, m.name))
        by_member: dict[str, int] = defaultdict(int)
        table: dict[str, list[dict[str, Any]]] = {}
        for p in range(PARTITIONS):
            rows = sorted(segments[p])
            out = []
            for i, (start, at, name) in enumerate(rows):
                end = rows[i + 1][0] if i + 1 < len(rows) else int(final[(self.settings.topic_transactions, p)] or 0)
                by_member[name] += end - start
                out.append({"member": name, "from": start, "to": end, "t_s": round(at - self.started, 2)})
            table[str(p)] = out
        return {"partitions": table, "events_by_member": dict(by_member)}

    def summary(self) -> dict[str, Any]:
        if self.assigned is None or self.first_commit is None or self.drained is None:
            raise SystemExit(f"db {self.db}: the run did not drain")
        processing = self.drained - self.assigned
        start, end = self.snap["start"], self.snap["end"]
        cores = {k: round((end[k] - start.get(k, 0.0)) / processing, 2) for k in end if k not in ("wall", "machine")}
        busy = (end["machine"] - start["machine"]) / processing
        cores["other"] = round(busy - sum(cores.values()), 2)
        owned = self.ownership()
        per = []
        for m in self.members:
            cpu = end[f"features-{m.name}"] - start.get(f"features-{m.name}", 0.0)  # a late joiner: from its start
            events = m.events if m.terminated_at is None else owned["events_by_member"].get(m.name, 0)
            began, ended = m.first_assigned, (m.final_beat() if m.terminated_at is None else m.terminated_at)
            active = ended - began if began is not None and ended is not None and ended > began else None
            per.append({
                "name": m.name,
                "pid": m.proc.pid,
                "events": events,
                "events_per_s": round(events / active) if active and events else None,
                "active_s": round(active, 2) if active else None,
                "assigned_at_s": round(began - self.started, 2) if began is not None else None,
                "share": round(events / self.total, 3),
                "partitions": sorted({p for a in m.assignments for p, _ in a.partitions.items()}),
                "assignments": len(m.assignments),
                "cpu_s": round(cpu, 2),
                "cpu_cores": round(cpu / processing, 2),
                "us_cpu_per_event": round(cpu / events * 1e6, 1) if events else None,
                "exit_code": m.exit_code,
                "events_from_offsets": owned["events_by_member"].get(m.name, 0),
            })  # fmt: skip
        return {
            "processes": len(self.members),
            "events": self.total,
            "join_s": round(self.assigned - self.started, 2),
            "first_commit_s": round(self.first_commit - self.started, 2),
            # from the first commit on: the first fetch and fold (first_commit_s - join_s) left out
            "events_per_s_after_first_commit": round(
                (self.total - self.events_at_first_commit) / (self.drained - self.first_commit)
            )
            if self.drained > self.first_commit
            else None,
            "processing_s": round(processing, 2),
            "drain_s": round(self.drained - self.started, 2),
            "events_per_s": round(self.total / processing),
            "per_process": per,
            "cpu_cores": cores,  # over processing_s; "other": the rest of the machine
            "timeline": self.timeline,
            "ownership": owned["partitions"],
        }


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait for a process already sent SIGTERM; SIGKILL it after `timeout`."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- checks -------------------------------------------------------------------------------------
def compare(live: redis.Redis, reference: redis.Redis, ids: list[str], topic: str, produced: int) -> dict[str, Any]:
    """Every customer's packed state and profile against the rebuild; counts against what was produced."""
    state_mismatch: list[str] = []
    profile_mismatch: list[str] = []
    for lo in range(0, len(ids), 2_000):
        chunk = ids[lo : lo + 2_000]
        ours, theirs = store.load_states(live, chunk), store.load_states(reference, chunk)
        state_mismatch += [c for c, a, b in zip(chunk, ours, theirs, strict=True) if a != b]
        p_ours, p_theirs = store.read_profiles(live, chunk), store.read_profiles(reference, chunk)
        for cid in chunk:
            a = {k: v for k, v in p_ours[cid].items() if k in COMPARED}
            b = {k: v for k, v in p_theirs[cid].items() if k in COMPARED}
            if a != b or set(a) != set(COMPARED):
                profile_mismatch.append(cid)
    stats = {_text(k): int(v) for k, v in live.hgetall(store.STATS_KEY).items()}
    offsets = store.read_offsets(live, [(topic, p) for p in range(PARTITIONS)])
    mismatched = sorted(set(state_mismatch) | set(profile_mismatch))
    offsets_sum = sum(v or 0 for v in offsets.values())
    return {
        "customers": len(ids),
        "customers_with_state": sum(s is not None for s in store.load_states(live, ids)),
        "mismatches": len(mismatched),
        "state_mismatches": len(state_mismatch),
        "profile_mismatches": len(profile_mismatch),
        "first_mismatched": mismatched[:5],
        "produced": produced,
        "events_counted": stats.get("events", 0),
        "offsets_sum": offsets_sum,
        "rejected": stats.get("rejected", 0),
        "late_dropped": stats.get("late_dropped", 0),
        "ok": not mismatched and stats.get("events", 0) == produced == offsets_sum,
    }


# -- the runs -----------------------------------------------------------------------------------
def scale_run(pop: Population, count: int, *, redis_port: int, db: int, workdir: Path) -> dict[str, Any]:
    """`count` processes on a fresh broker whose topic holds every event; drained, then checked."""
    workdir.mkdir(parents=True)
    with fresh_broker(redis_port, db) as (settings, broker):
        load_s = load_topic(settings, pop.records)
        prepare_db(settings, pop.ids)
        run = Run(settings, pop.events, workdir, {"broker": broker.pid, "redis": _redis_pid(redis_port)})
        try:
            for _ in range(count):
                run.add()
            run.wait(lambda: run.drained is not None, 120 + pop.events / 5_000, "the drain")
            run.finish()
        finally:
            for m in run.members:
                stop(m.proc, 30)
    result = _checked(run, pop, redis_port)
    result["topic_load_s"] = round(load_s, 1)
    return result


def rebalance_run(
    pop: Population, plan: list[str], *, stream_s: float, redis_port: int, db: int, workdir: Path
) -> dict[str, Any]:
    """2 processes on a live stream; a third joins, then one of the first two gets SIGTERM."""
    workdir.mkdir(parents=True)
    with fresh_broker(redis_port, db) as (settings, broker):
        prepare_db(settings, pop.ids)
        preload = int(pop.events * PRELOAD)
        rate = max(1, round((pop.events - preload) / stream_s))
        feed = Feed(settings, pop.records, rate)
        feed.preload(preload)
        run = Run(settings, pop.events, workdir, {"broker": broker.pid, "redis": _redis_pid(redis_port)})
        _rebalance(run, feed, pop, plan)
    return _moved(_checked(run, pop, redis_port), plan, rate, preload)


def _rebalance(run: Run, feed: Feed, pop: Population, plan: list[str]) -> None:
    """2 processes; the stream starts when they hold the partitions; a third joins; one of the first goes."""
    try:
        first, _second = run.add(), run.add()
        run.wait(lambda: run.assigned is not None, 120, "the group")
        feed.started = run.assigned
        run.feed = feed
        run.note(f"live stream started at {feed.rate:,} events/s after {feed.preloaded:,} preloaded")
        if "join" in plan:
            run.wait(lambda: run.events >= pop.events * JOIN_AT, 120, "the events before the join")
            third = run.add()
            run.wait(lambda: third.events > 0 or run.drained is not None, 120, "the third process's first batch")
            if run.drained is None:
                run.note(f"{third.name} committed its first batch")
        if "term" in plan and run.drained is None:
            run.terminate(first)
        run.wait(lambda: run.drained is not None, 120 + pop.events / 5_000, "the drain")
        if feed.finished is not None:
            run.note("live stream finished", feed.finished)
        run.finish()
    finally:
        feed.close()
        for m in run.members:
            stop(m.proc, 30)


def _moved(result: dict[str, Any], plan: list[str], rate: int, preloaded: int) -> dict[str, Any]:
    """Which partitions' events were processed by more than one process, and how the run went."""
    owned = result["ownership"]
    movers = [
        p for p, segs in owned.items() if len({s["member"] for s in segs if s["to"] > s["from"]}) > 1
    ]  # partitions whose events were processed by more than one process
    result["plan"] = plan
    result["live_rate_per_s"] = rate
    result["preloaded"] = preloaded
    result["partitions_moved"] = movers
    result["note"] = (
        f"2 processes; {PRELOAD:.0%} of the events preloaded, the rest streamed at {rate:,}/s from the moment the "
        f"group formed; a third process started once {JOIN_AT:.0%} were counted, and one of the first two got "
        "SIGTERM once the third had committed a batch"
    )
    return result


def _redis_pid(port: int) -> int:
    client = redis.Redis.from_url(_url(port, 0))
    pid = int(client.info("server")["process_id"])
    client.close()
    return pid


def _checked(run: Run, pop: Population, redis_port: int) -> dict[str, Any]:
    result = run.summary()
    live = redis.Redis.from_url(run.settings.redis_url)
    reference = redis.Redis.from_url(_url(redis_port, REFERENCE_DB))
    result["check"] = compare(live, reference, pop.ids, run.settings.topic_transactions, pop.events)
    live.close()
    reference.close()
    tracebacks = [m.name for m in run.members if "Traceback" in m.log_path.read_text(errors="replace")]
    result["tracebacks_in_logs"] = tracebacks
    result["check"]["ok"] = result["check"]["ok"] and not tracebacks and all(m.exit_code == 0 for m in run.members)
    return result


# -- report -------------------------------------------------------------------------------------


def _rates(run: dict[str, Any]) -> str:
    per = [p["events_per_s"] for p in run["per_process"]]
    shown = ", ".join("?" if r is None else f"{r:,}" for r in per)
    return f"{run['events_per_s']:,} events/s total; per process {shown}"


def headline(result: dict[str, Any]) -> list[dict[str, Any]]:
    cores = result["machine"]["nproc"]
    rows: list[dict[str, Any]] = []
    one = result["runs"].get("1")
    for key, run in result["runs"].items():
        n = int(key)
        per = " / ".join("?" if p["events_per_s"] is None else f"{p['events_per_s']:,}" for p in run["per_process"])
        engines = sum(p["cpu_cores"] for p in run["per_process"])
        text = f"{run['events_per_s']:,} events/s total"
        if one and n > 1:
            text += f" ({run['events_per_s'] / one['events_per_s']:.2f}x one process)"
        text += (
            f"; per process {per} events/s; the engines kept {engines:.2f} of {cores} cores busy "
            f"(other work on the machine {run['cpu_cores'].get('other', 0):.2f})"
        )
        if not run["check"]["ok"]:
            text += "; CHECK FAILED (see check)"
        rows.append({
            "metric": f"feature engine, {n} process{'es' if n > 1 else ''} on {cores} cores ({PARTITIONS} partitions)",
            "value": text,
            "goal": None,
            "met": None,
        })  # fmt: skip
    reb = result.get("rebalance")
    if reb:
        c = reb["check"]
        rows.append({
            "metric": "feature engine, partitions moved mid-stream (2 processes, a third joins, one gets SIGTERM): "
            "state vs a rebuild",
            "value": f"{c['customers']:,} customers compared, {c['mismatches']} mismatches; "
            f"{c['events_counted']:,} events counted of {c['produced']:,} produced; "
            f"{len(reb['partitions_moved'])} of {PARTITIONS} partitions moved",
            "goal": "0 mismatches, counted = produced",
            "met": bool(c["ok"]) and bool(reb["partitions_moved"]),
        })  # fmt: skip
    return rows


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{'run':<12} {'join s':>7} {'proc s':>7} {'events/s':>9}  per process (events/s, events, cpu cores)"
        f"  {'broker':>6} {'redis':>6} {'other':>6}  check",
    ]
    runs = [(f"{k} proc", v) for k, v in result["runs"].items()]
    if result.get("rebalance"):
        runs.append(("rebalance", result["rebalance"]))
    for label, run in runs:
        per = "; ".join(
            f"{p['name']}: {'?' if p['events_per_s'] is None else format(p['events_per_s'], ',')}/s "
            f"{p['events']:,} {p['cpu_cores']}"
            for p in run["per_process"]
        )
        c, cpu = run["check"], run["cpu_cores"]
        ok = "OK" if c["ok"] else "FAIL"
        lines.append(
            f"{label:<12} {run['join_s']:>7} {run['processing_s']:>7} {run['events_per_s']:>9,}  {per}"
            f"  {cpu.get('broker', 0):>6} {cpu.get('redis', 0):>6} {cpu.get('other', 0):>6}"
            f"  {ok}: {c['customers']:,} customers, {c['mismatches']} mismatches, "
            f"{c['events_counted']:,}/{c['produced']:,} counted"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=4_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--counts", default="1,2,4", help="process counts, comma separated")
    parser.add_argument("--rebalance", default="join,term", help="join, term, both, or 'none' to skip the run")
    parser.add_argument(
        "--rebalance-stream-s",
        type=float,
        default=24.0,
        help="the rebalance run streams what is not preloaded over this many seconds (each rebalance takes ~8 s)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,000 customers x 30 days")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.quick:
        args.customers, args.days = 1_000, 30
    out = args.out or (Path(tempfile.gettempdir()) / "bench_scaleout_quick.json" if args.quick else RESULTS)
    counts = [int(c) for c in args.counts.split(",") if c]
    plan = [p for p in args.rebalance.split(",") if p in ("join", "term")]
    wall0 = time.perf_counter()
    load_at_start = round(os.getloadavg()[0], 2)

    with tempfile.TemporaryDirectory() as tmp:
        rport = free_port()
        redis_proc = start_redis("127.0.0.1", rport, Path(tmp) / "redis")
        try:
            pop = generate(args.customers, args.days, Path(tmp) / "archive")
            log.info("generated and archived %d events (%d customers x %d days) in %.1f s", pop.events,
                     args.customers, args.days, pop.generate_s)  # fmt: skip
            t0 = time.perf_counter()
            reference = redis.Redis.from_url(_url(rport, REFERENCE_DB))
            reference.flushdb()
            built = rebuild(reference, pop.archive, "unused", set_offsets=False)
            reference.close()
            rebuild_s = time.perf_counter() - t0
            log.info("reference rebuilt: %d customers in %.1f s", len(built.ids), rebuild_s)
            runs: dict[str, Any] = {}
            result: dict[str, Any] = {"benchmark": "scaleout", "when": datetime.now(UTC).isoformat(timespec="seconds")}
            for i, count in enumerate(counts):
                runs[str(count)] = scale_run(pop, count, redis_port=rport, db=i + 1, workdir=Path(tmp) / f"run{i}")
                log.info("%d process(es): %s", count, _rates(runs[str(count)]))
            result["runs"] = runs
            if plan:
                result["rebalance"] = rebalance_run(
                    pop,
                    plan,
                    stream_s=args.rebalance_stream_s,
                    redis_port=rport,
                    db=10,
                    workdir=Path(tmp) / "rebalance",
                )
        finally:
            stop(redis_proc)
    result["setup"] = {
        "customers": args.customers,
        "days": args.days,
        "events": pop.events,
        "partitions": PARTITIONS,
        "client": "confluent",
        "broker": f"{Path(tansu_binary()).name} (embedded, memory storage, one per run, same machine)",
        "confluent_kafka": importlib.metadata.version("confluent-kafka"),
        "features_batch": Settings(_env_file=None).features_batch,
        "max_poll_interval_ms": Settings(_env_file=None).kafka_max_poll_interval_ms,
        "generate_and_archive_s": round(pop.generate_s, 1),
        "reference_rebuild_s": round(rebuild_s, 1),
        "reference_customers": len(built.ids),
        "reference_late_dropped": built.late,
        "quick": args.quick,
    }
    result["machine"] = {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1m_at_start": load_at_start,  # the machine is shared: anything else running shows here
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
    }
    result["wall_s"] = round(time.perf_counter() - wall0, 1)
    result["headline"] = headline(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    for row in result["headline"]:
        print(f"{row['metric']}: {row['value']}")
    print(f"wall time {result['wall_s']} s; wrote {out}")
    ok = all(r["check"]["ok"] for r in runs.values()) and all(row["met"] is not False for row in result["headline"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
