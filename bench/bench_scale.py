"""Scale and cost benchmark: 10k, 100k and 1M customers with 90 days of history in Redis.

    .venv/bin/python bench/bench_scale.py [--sizes 10000,100000,1000000] [--days 90] [--snapshots 4]
                                          [--cases 50] [--repeat 1] [--quick] [--out FILE]

Wall-time budget: the default (suite) run takes at most 6 minutes for all three sizes together on
the 2-core machine (`--quick`: 2,000 and 20,000 customers x 30 days in under a minute, written to
the temp directory so a smoke run never replaces the recorded numbers). Writes
bench/results/scale.json. Starts its own embedded broker and redis-server on free ports (the
project's launch code). Goals in the headline: every console page under 2 s (the console's issue),
profile and rolling state <= 2 KB a customer (the feature engine's), this budget. Exit code 1 when
one is missed at the suite sizes (the JSON is written first); `--quick` only reports.

What it measures, at each size in turn (the store grows 10k -> 100k -> 1M, never rebuilt):
load time; Redis used_memory, per customer and split by who wrote it (the registry: attributes,
`eq:customers` and the city / employment / name indices; the feature engine: profile fields and
the packed rolling state; the risk engine: score fields, explanations, the queue, levels and the
level / hardship indices); the risk engine's full sweep (`RiskEngine.rescore_all`) in a process of
its own, twice: "first" with the levels forgotten (`eq:risk:levels` deleted, so every score,
explanation and level change is written and published, as on a first-ever pass) and "unchanged"
(only `scored_at` moves): seconds, customers/s, the engine's CPU and peak RSS (VmHWM),
redis-server's CPU; every console page through Streamlit's AppTest as bench_dashboard.py times
them (hub, portfolio, risk queue, the queue filtered by level and searched by a name, customer
profile, intervention center, audit log, model): "cold" (st.cache_data cleared, filter results
dropped) and "warm" (the same session's rerun, `--repeat` times); and the data calls behind the
pages that can grow with the customers or the history, once each, so a slow page can be traced.

What is real and what is cloned (simulating 1M customers x 90 days of transactions is out of
reach on 2 cores in the budget):
- The first size (10k) is the real thing: simulated for `--days` and folded with the feature
  engine's own `apply_events` (bench_risk.py `prepare`), written with `store.write_rebuilt`,
  registered with `customer_registry.register`, archived as `equilibrate archive` stores it
  (`simulate_into_archive`), snapshotted by `Snapshotter` passes (bench_dashboard.py `_snapshots`).
- Bigger sizes add customers C0010001... Customer i is base customer i mod 10k under its own id,
  as bench_features.py's memory test repeats customers: its profile hash (the base's registry
  attributes and features) and packed state are COPYed inside Redis from a template db that the
  project's own `register` and `write_rebuilt` filled; its index entries are written in bulk, one
  MULTI/EXEC per 10,000. Each run first checks, on 500 clones, that this leaves exactly the keys
  and contents `register` and `write_rebuilt` leave for the same customers (those cost ~80 us of
  Python a customer: 80 s at 1M, more than the budget allows). The memory split of a clone's
  copied hash and state: the features' share is what `write_rebuilt` added per base customer
  (a clone is a byte copy), the rest is the registry's.
- The customer history CSV holds `--snapshots` passes at every size; above the first, each row is
  the base customer's real snapshot row under the clone's id (a clone scores exactly as its base),
  and the snapshotter's per-pass index (what the console reads) is rebuilt from it with
  `snapshot_index.build`.
- The Parquet archive stays at the base population (1M x 90 days would be ~1.5 billion rows):
  the customer page is timed on the highest-scored base customer, whose transactions are there.
- Cases (`--cases`) are proposed and the audit log written once, at the first size.
- Redis runs as `start_redis` starts it (AOF everysec), with automatic AOF rewrites off so that
  no fork copying gigabytes lands inside a timed phase, and maxmemory raised to 12 GB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import bench_dashboard
import redis
from bench_dashboard import (
    Bank,
    _git,
    _hardship_by_level,
    _propose,
    _settings,
    _snapshots,
    _timed,
    _version,
    apptest_pass,
    settings_env,
)
from bench_risk import SEED, START, Population, _stats, prepare
from machine_info import cpu_model, cpu_s

from equilibrate.alert import audit_queue
from equilibrate.alert.audit_log import AuditLog
from equilibrate.dashboard import files, queries
from equilibrate.features import store
from equilibrate.features.compute import compute, format_profiles
from equilibrate.features.state import pack
from equilibrate.kafka.broker import start_broker
from equilibrate.kafka.topics import ensure_topics, pipeline_topics
from equilibrate.ops.child import stop
from equilibrate.ops.net import free_port
from equilibrate.ops.stopping import StopFlag
from equilibrate.risk.engine import RiskEngine
from equilibrate.risk.keys import LEVELS_KEY, QUEUE_KEY
from equilibrate.settings import Settings
from equilibrate.sources.customers import Customer, customer_id, generate_customers
from equilibrate.sources.direct_archive import simulate_into_archive
from equilibrate.storage import customer_registry, history, resp, snapshot_index
from equilibrate.storage.customer_registry import (
    INDEXED,
    KNOWN_CUSTOMERS_KEY,
    NAMES_KEY,
    attribute_index,
    name_entry,
    values_key,
)
from equilibrate.storage.redis_server import start_redis

log = logging.getLogger(__name__)

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
GOAL_PAGE_S = 2.0  # the console's issue: every page under 2 s
GOAL_FEATURES_BYTES = 2048  # the feature engine's issue: profile + rolling state <= 2 KB a customer
BUDGET_S = 360.0  # the suite run, all sizes together
#: Raised memory limit, and no automatic AOF rewrite (a fork copying gigabytes) inside a timed phase.
REDIS_CONFIG = {"maxmemory": "12gb", "maxmemory-policy": "noeviction", "auto-aof-rewrite-percentage": "0"}
DB_LIVE = 1  # the pipeline's (Settings.redis_url of bench_dashboard's _settings)
DB_SCRATCH = (2, 3, 4)  # the base's templates, and two empty dbs for the clone check
CHECKED_CLONES = 500
CHUNK = 10_000  # customers per MULTI/EXEC when cloning
CENSUS = 2_000  # customer hashes whose encoding is looked at, drawn at random
#: Commands for one MULTI/EXEC (RESP, several may share one bytes object) and how many there are.
Batch = tuple[list[bytes], int]


# -- cloning ------------------------------------------------------------------------------------
class Clones:
    """Writes customer i (i >= base) as base customer (i mod base) under its own id, in bulk.

    Its profile hash (registry attributes and features, the base's) and packed state are COPYed
    inside Redis from the base's pristine template (another db, written by the project's own
    `register` and `write_rebuilt`); its index entries are written with exactly the keys and
    values `customer_registry.register` writes, a few large commands per 10,000 customers.
    """

    def __init__(self, template: redis.Redis, people: Sequence[Customer]) -> None:
        self.template = template
        self.rows = [c.as_row() for c in people]
        self.ids = [r["customer_id"] for r in self.rows]

    def base_of(self, index: int) -> int:
        return index % len(self.ids)

    def copy(self, indices: range, dest_db: int) -> Batch:
        """COPY each customer's base profile hash and packed state from the template db (sent there)."""
        one = f"*5\r\n$4\r\nCOPY\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nDB\r\n${len(str(dest_db))}\r\n{dest_db}\r\n"
        args: list[object] = []
        for i in indices:
            base, new = self.ids[self.base_of(i)], customer_id(i)
            for prefix in (store.PROFILE_PREFIX, store.STATE_PREFIX):
                args += (len(prefix + base), prefix + base, len(prefix + new), prefix + new)
        n = 2 * len(indices)
        return [((one * n) % tuple(args)).encode()], n

    def index(self, indices: range) -> Batch:
        """The index entries `customer_registry.register` writes for these customers."""
        ids = [customer_id(i) for i in indices]
        rows = [self.rows[self.base_of(i)] for i in indices]
        commands: list[bytes] = []
        for attr in INDEXED:
            groups: dict[str, list[str]] = defaultdict(list)
            for cid, r in zip(ids, rows, strict=True):
                if r[attr]:
                    groups[r[attr]].append(cid)
            for value, members in groups.items():
                commands.append(resp.command_of_strings("SADD", attribute_index(attr, value), args=members))
            if groups:
                commands.append(resp.command_of_strings("SADD", values_key(attr), args=list(groups)))
        names = [x for cid, r in zip(ids, rows, strict=True) if r["name"] for x in ("0", name_entry(r["name"], cid))]
        if names:
            commands.append(resp.command_of_strings("ZADD", NAMES_KEY, args=names))
        commands.append(resp.command_of_strings("SADD", KNOWN_CUSTOMERS_KEY, args=ids))
        return commands, len(commands)

    def copy_all(self, span: range, dest_db: int) -> None:
        replies = send(self.template, (self.copy(chunk, dest_db) for chunk in _chunks(span)))
        if sum(int(r) for r in replies if isinstance(r, int)) != 2 * len(span):
            raise RuntimeError("a COPY found its source missing or its target taken")

    def index_all(self, client: redis.Redis, span: range) -> None:
        send(client, (self.index(chunk) for chunk in _chunks(span)))

    def check(self, base: Base, clone_path: redis.Redis, project_path: redis.Redis, count: int) -> dict[str, Any]:
        """The first `count` clones written both ways into two empty dbs: by this class, and by the
        project's own code (`register` of the base's row under the new id, `write_rebuilt` of the
        base's state and profile). Raises unless both hold exactly the same keys and contents."""
        n = len(self.ids)
        indices = range(n, n + count)
        self.copy_all(indices, int(clone_path.connection_pool.connection_kwargs["db"]))
        self.index_all(clone_path, indices)
        ids = [customer_id(i) for i in indices]
        rows = [{**self.rows[self.base_of(i)], "customer_id": cid} for cid, i in zip(ids, indices, strict=True)]
        customer_registry.register(project_path, rows)
        picks = [self.base_of(i) for i in indices]
        store.write_rebuilt(project_path, ids, [base.blobs[b] for b in picks], [base.profiles[b] for b in picks])
        project_path.delete(store.DIRTY_KEY)
        keys = sorted(_text(k) for k in project_path.scan_iter(count=10_000))
        mine = sorted(_text(k) for k in clone_path.scan_iter(count=10_000))
        problems = [k for k in keys if _content(clone_path, k) != _content(project_path, k)]
        clone_path.flushdb()
        project_path.flushdb()
        if keys != mine or problems:
            raise RuntimeError(
                f"cloned customers differ from the project's own writes: {len(keys)} keys vs {len(mine)}, "
                f"{len(problems)} differ, e.g. {problems[:3]}"
            )
        return {"clones_compared": count, "keys_compared": len(keys)}


def send(client: redis.Redis, batches: Iterator[Batch]) -> list[object]:
    """Each batch as one MULTI/EXEC, sent from a second thread while the next one is encoded here
    (the socket wait releases the GIL): Redis and Python work at the same time. EXEC's replies."""
    replies: list[object] = []
    with ThreadPoolExecutor(max_workers=1) as sender:
        pending: Future[list[object]] | None = None
        for commands, count in batches:
            if pending is not None:
                replies += pending.result()
            pending = sender.submit(resp.fenced_transaction, client, [], _no_guard, commands, count)
        if pending is not None:
            replies += pending.result()
    return replies


def _chunks(span: range) -> Iterator[range]:
    for lo in range(span.start, span.stop, CHUNK):
        yield range(lo, min(span.stop, lo + CHUNK))


def _no_guard(_values: list[bytes | None]) -> str | None:
    return None


def _content(client: redis.Redis, key: str) -> object:
    kind = _text(client.type(key))
    if kind == "hash":
        return ("hash", client.hgetall(key))
    if kind == "set":
        return ("set", client.smembers(key))
    if kind == "zset":
        return ("zset", client.zrange(key, 0, -1, withscores=True))
    return (kind, client.dump(key))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


# -- history ------------------------------------------------------------------------------------
def base_history(data_dir: Path, base_ids: set[str]) -> dict[str, dict[str, str]]:
    """The real snapshot rows of the base customers: stamp -> id -> the row after the id."""
    passes: dict[str, dict[str, str]] = defaultdict(dict)
    with history.current_path(data_dir).open(encoding="utf-8") as fh:
        next(fh)  # header
        for line in fh:
            stamp_end = line.index('"', 1)
            id_start = stamp_end + 3
            id_end = line.index('"', id_start)
            cid = line[id_start:id_end]
            if cid in base_ids:
                passes[line[1:stamp_end]][cid] = line[id_end + 2 :]
    return passes


def write_history(data_dir: Path, passes: dict[str, dict[str, str]], base_ids: Sequence[str], size: int) -> int:
    """The same passes over `size` customers: customer i's row is base customer (i mod base)'s."""
    path = history.current_path(data_dir)
    tmp = path.with_name(path.name + ".tmp")
    rows, n = 0, len(base_ids)
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(history.header_line())
        for stamp, by_id in passes.items():
            rests = [by_id[cid] for cid in base_ids]
            for lo in range(0, size, n):
                hi = min(size, lo + n)
                fh.write("".join(f'"{stamp}","{customer_id(i)}",{rests[i % n]}' for i in range(lo, hi)))
                rows += hi - lo
    tmp.replace(path)
    return rows


# -- the risk engine's sweep, as its own process ------------------------------------------------
def sweep_child(redis_pid: int) -> int:
    """Run in a child process: two full passes, then one JSON line on stdout."""
    logging.basicConfig(level=logging.WARNING)
    settings = Settings(_env_file=None)  # from the environment the parent set
    engine = RiskEngine(settings, StopFlag())
    out: dict[str, Any] = {"rss_mb_at_start": _status_mb()}
    try:
        engine.redis.delete(LEVELS_KEY)  # forget every level: the first pass writes everything
        for label in ("first", "unchanged"):
            before = _stats(engine.redis)
            use0, redis0, t0 = resource.getrusage(resource.RUSAGE_SELF), cpu_s(redis_pid), time.perf_counter()
            scored = engine.rescore_all()
            seconds = time.perf_counter() - t0
            use1 = resource.getrusage(resource.RUSAGE_SELF)
            changes = _stats(engine.redis).get("level_changes", 0) - before.get("level_changes", 0)
            out[label] = {
                "customers": scored,
                "seconds": round(seconds, 2),
                "customers_per_s": round(scored / seconds),
                "level_changes_published": changes,
                "cpu_s_engine": round(use1.ru_utime + use1.ru_stime - use0.ru_utime - use0.ru_stime, 2),
                "cpu_s_redis": round(cpu_s(redis_pid) - redis0, 2),
                "rss_mb_after": _status_mb(),
            }
        engine.trend_point(force=True)  # the hub's trend, as the running engine leaves it
        out["peak_rss_mb"] = _status_mb("VmHWM")  # not ru_maxrss: Linux carries the parent's over fork + exec
    finally:
        engine.producer.flush(30.0)
        engine.producer.close()
        engine.redis.close()
    print(json.dumps(out), flush=True)
    return 0


def _status_mb(name: str = "VmRSS") -> float:
    """This process's resident memory (VmRSS) or its high-water mark (VmHWM), in MB (Linux /proc)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def sweep(settings: Settings, redis_pid: int) -> dict[str, Any]:
    env = {**os.environ, **settings_env(settings), "LOG_LEVEL": "WARNING"}
    argv = [sys.executable, str(Path(__file__).resolve()), "--sweep-child", "--redis-pid", str(redis_pid)]
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=1800)
    if done.returncode:
        raise RuntimeError(f"the sweep process failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(time.perf_counter() - t0, 2)  # imports and connections included
    return result


# -- one size -----------------------------------------------------------------------------------
@dataclass
class Base:
    """The real population every bigger size is cloned from."""

    pop: Population
    ids: list[str]
    blobs: list[bytes]
    profiles: list[list[object]]
    people: list[Customer]


def load(b: Bench, span: range) -> dict[str, Any]:
    """Add customers span.start..span.stop-1; returns the time and used_memory growth of each step."""
    live, base = b.live, b.base
    if span.start == 0:  # the base: the project's own code, in the pipeline's order
        m0, t0 = _used(live), time.perf_counter()
        customer_registry.register(live, (c.as_row() for c in base.people))
        m1, t1 = _used(live), time.perf_counter()
        store.write_rebuilt(live, base.ids, base.blobs, base.profiles)
        store.set_positions(live, {}, {(b.settings.topic_transactions, 0): base.pop.watermark_ms})
        live.delete(store.DIRTY_KEY)
        m2, t2 = _used(live), time.perf_counter()
        b.features_per_customer = (m2 - m1) / len(span)
        return {
            "method": "customer_registry.register, then store.write_rebuilt",
            "seconds": t2 - t0,
            "registry_s": t1 - t0,
            "features_s": t2 - t1,
            "registry_bytes": m1 - m0,
            "features_bytes": m2 - m1,
        }
    m0, t0 = _used(live), time.perf_counter()
    b.clones.copy_all(span, DB_LIVE)
    m1, t1 = _used(live), time.perf_counter()
    b.clones.index_all(live, span)
    m2, t2 = _used(live), time.perf_counter()
    copy_s, index_s, copy_b, index_b = t1 - t0, t2 - t1, m1 - m0, m2 - m1
    # A clone's hash and state are byte copies of its base's: the features' share of them is what
    # write_rebuilt added to the base's customers; the rest of the copy is the registry attributes.
    features_b = round(b.features_per_customer * len(span))
    return {
        "method": "clones: COPY of the base's profile hash (attributes and features) and state, index entries in bulk",
        "seconds": copy_s + index_s,
        "copy_s": copy_s,
        "index_s": index_s,
        "copy_bytes": copy_b,
        "index_bytes": index_b,
        "registry_bytes": copy_b - features_b + index_b,
        "features_bytes": features_b,
    }


def pick_bank(client: redis.Redis, base: Base, case: str) -> Bank:
    """The pages' targets: the highest-scored base customer (its transactions are archived)."""
    scores = client.zmscore(QUEUE_KEY, base.ids)
    best = max(range(len(base.ids)), key=lambda i: -1.0 if scores[i] is None else float(scores[i] or 0.0))
    customer = base.ids[best]
    name = _text(client.hget(customer_registry.profile_key(customer), "name") or "x")
    return Bank(customer, case, name.split(maxsplit=1)[0].lower(), 0)


class ResultKeys:
    """The filter results the console computes (`queries._filtered_key`, observed, never changed), so
    a cold run drops exactly those: bench_dashboard.py's `_drop_filter_results` SCANs the keyspace,
    which takes seconds at 3 million keys and would be paid before every page and data call."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self._original = queries._filtered_key

    def _record(self, client: redis.Redis, f: queries.QueueFilter) -> str:
        key = self._original(client, f)
        if key != QUEUE_KEY:
            self.keys |= {key, *(f"{key}:u{n}" for n in range(len(f.groups())))}
        return key

    def drop(self, client: redis.Redis) -> None:
        if self.keys:
            client.delete(*self.keys)
            self.keys.clear()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        with (
            mock.patch.object(queries, "_filtered_key", self._record),
            mock.patch.object(bench_dashboard, "_drop_filter_results", self.drop),
        ):
            yield


def pages(client: redis.Redis, bank: Bank, repeat: int) -> dict[str, dict[str, list[float]]]:
    runs: dict[str, dict[str, list[float]]] = {}
    for n in range(repeat):
        t0 = time.perf_counter()
        for label, times in apptest_pass(client, bank).items():
            for kind, seconds in times.items():
                runs.setdefault(label, {}).setdefault("warm" if kind == "rerun" else kind, []).append(seconds)
        latest = ", ".join(f"{k} {v['cold'][-1]:.2f}" for k, v in runs.items())
        print(f"  pages pass {n + 1}/{repeat} ({time.perf_counter() - t0:.1f} s), cold: {latest}", flush=True)
    return runs


def data_calls(client: redis.Redis, settings: Settings, bank: Bank, results: ResultKeys) -> dict[str, float]:
    """Seconds of each data call behind the pages whose cost can grow with the customers (or the
    history), called once directly, filter results dropped first (bench_dashboard.py's breakdown
    has every call, three times each)."""
    data, archive = settings.data_dir, settings.data_dir / "archive"
    calls: dict[str, Callable[[], object]] = {
        "home: queries.overview": lambda: queries.overview(client, int((time.time() - 1800) * 1000)),
        "home: queries.queue_page CRITICAL+HIGH top 10": lambda: queries.queue_page(
            client, queries.QueueFilter(levels=("CRITICAL", "HIGH")), 1, 10
        ),
        "portfolio: SINTERCARD hardship x level (20)": lambda: _hardship_by_level(client),
        "portfolio: files.levels_over_time": lambda: files.levels_over_time(data),
        "queue: queries.queue_page everyone p1": lambda: queries.queue_page(client, queries.QueueFilter(), 1, 50),
        "queue: queries.queue_page HIGH p1": lambda: queries.queue_page(
            client, queries.QueueFilter(levels=("HIGH",)), 1, 50
        ),
        "queue: queries.queue_page name search": lambda: queries.queue_page(
            client, queries.QueueFilter(search=bank.search), 1, 50
        ),
        "customer: queries.customer_detail": lambda: queries.customer_detail(client, bank.customer),
        "customer: files.score_history": lambda: files.score_history(data, bank.customer),
        "customer: files.customer_transactions": lambda: files.customer_transactions(archive, bank.customer),
    }
    out: dict[str, float] = {}
    for label, call in calls.items():
        results.drop(client)
        out[label] = round(_timed(call), 4)
    results.drop(client)
    return out


def redis_facts(client: redis.Redis, base: Base, size: int) -> dict[str, Any]:
    """Keys, memory and AOF figures, and what one customer's keys cost (a base customer and a clone)."""
    mem, pers, stats = client.info("memory"), client.info("persistence"), client.info("stats")
    samples = [base.ids[0]] + ([customer_id(size - 1)] if size > len(base.ids) else [])
    keys: dict[str, Any] = {}
    for cid in samples:
        for key in (f"customer:{cid}", f"cstate:{cid}", f"eq:risk:reasons:{cid}"):
            if client.exists(key):
                keys[key] = {
                    "bytes": client.memory_usage(key, samples=0),
                    "encoding": _text(client.object("encoding", key)),
                }
    with client.pipeline(transaction=False) as pipe:
        for i in random.Random(SEED).sample(range(size), min(size, CENSUS)):
            pipe.object("encoding", customer_registry.profile_key(customer_id(i)))
        encodings = [_text(e) for e in pipe.execute()]
    return {
        "keys": int(client.dbsize()),
        "customer_hash_encodings": {e: encodings.count(e) for e in sorted(set(encodings))},
        "used_memory_mb": round(int(mem["used_memory"]) / 2**20, 1),
        "used_memory_rss_mb": round(int(mem["used_memory_rss"]) / 2**20, 1),
        "used_memory_peak_mb": round(int(mem["used_memory_peak"]) / 2**20, 1),
        "fragmentation_ratio": mem.get("mem_fragmentation_ratio"),
        "aof_size_mb": round(int(pers.get("aof_current_size", 0)) / 2**20, 1),
        "forks_so_far": int(stats.get("total_forks", 0)),
        "sample_keys": keys,
    }


def _summary(times: list[float]) -> dict[str, Any]:
    return {
        "median_s": round(statistics.median(times), 3),
        "max_s": round(max(times), 3),
        "runs_s": [round(t, 3) for t in times],
    }


def _slowest(page_runs: dict[str, dict[str, list[float]]], kind: str) -> tuple[str, float]:
    label, times = max(((k, max(v[kind])) for k, v in page_runs.items()), key=lambda kv: kv[1])
    return label, round(times, 3)


# -- main ---------------------------------------------------------------------------------------
@dataclass
class Bench:
    """Everything the sizes share: the services, the clients, the base, the running totals."""

    args: argparse.Namespace
    settings: Settings
    redis_pid: int
    live: redis.Redis
    template: redis.Redis
    base: Base
    clones: Clones
    results: ResultKeys
    baseline: int  # used_memory before any customer: Redis itself and the templates
    features_per_customer: float = 0.0  # what write_rebuilt added per base customer
    split: dict[str, int] = field(default_factory=lambda: {"registry": 0, "features": 0, "risk": 0})
    load_total: float = 0.0
    passes: dict[str, dict[str, str]] = field(default_factory=dict)
    bank: Bank | None = None


def one_size(b: Bench, prev: int, size: int) -> dict[str, Any]:
    started = time.perf_counter()
    live, settings, base = b.live, b.settings, b.base
    print(f"== {size:,} customers", flush=True)
    loaded = load(b, range(prev, size))
    b.load_total += loaded["seconds"]
    b.split["registry"] += loaded["registry_bytes"]
    b.split["features"] += loaded["features_bytes"]
    print(f"  load {size - prev:,} customers: {loaded['seconds']:.1f} s ({loaded['method']})", flush=True)

    m0 = _used(live)
    swept = sweep(settings, b.redis_pid)
    b.split["risk"] += _used(live) - m0
    first, again = swept["first"], swept["unchanged"]
    print(
        f"  sweep: first {first['seconds']} s ({first['customers_per_s']:,}/s), unchanged {again['seconds']} s "
        f"({again['customers_per_s']:,}/s), engine peak RSS {swept['peak_rss_mb']} MB",
        flush=True,
    )
    facts = redis_facts(live, base, size)
    total_bytes = _used(live) - b.baseline

    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if prev == 0:  # the real history, cases and audit log of the base
        snap_s, history_rows = _snapshots(live, settings, b.args.snapshots)
        b.passes = base_history(settings.data_dir, set(base.ids))
        cases = _propose(live, settings, b.args.cases)
        audit_rows = len(audit_queue.flush(live, AuditLog(settings.data_dir)))
        if not cases:
            raise SystemExit("no case could be proposed: the interventions page would have nothing to show")
        b.bank = pick_bank(live, base, cases[0])
        extra |= {"snapshot_passes_s": round(snap_s, 1), "cases": len(cases), "audit_rows": audit_rows}
    else:
        history_rows = write_history(settings.data_dir, b.passes, base.ids, size)
        # the console reads history through the snapshotter's per-pass index: rebuild it for the
        # cloned passes as the snapshotter would have written it (`snapshot_index.build`)
        t_index = time.perf_counter()
        shutil.rmtree(settings.data_dir / snapshot_index.INDEX_DIR, ignore_errors=True)
        extra["history_index_passes"] = snapshot_index.build(settings.data_dir)
        extra["history_index_s"] = round(time.perf_counter() - t_index, 1)
    history_mb = history.current_path(settings.data_dir).stat().st_size / 2**20
    extra |= {
        "history_rows": history_rows,
        "history_mb": round(history_mb, 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    bank = b.bank
    assert bank is not None
    bank.high = int(live.scard("eq:idx:level:HIGH"))

    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    t0 = time.perf_counter()
    if prev == 0:
        apptest_pass(live, bank)  # warm-up: imports, first connections, Streamlit's own start-up
    t1 = time.perf_counter()
    page_runs = pages(live, bank, b.args.repeat)
    t2 = time.perf_counter()
    calls = data_calls(live, settings, bank, b.results)
    cold, warm = _slowest(page_runs, "cold"), _slowest(page_runs, "warm")
    entry: dict[str, Any] = {
        "customers": size,
        "added": size - prev,
        "load": {k: round(v, 2) if isinstance(v, float) else v for k, v in loaded.items()},
        "load_s_cumulative": round(b.load_total, 1),
        "redis": facts,
        "memory": {
            "total_mb": round(total_bytes / 2**20, 1),
            "bytes_per_customer": round(total_bytes / size),
            "split_bytes_per_customer": {k: round(v / size) for k, v in b.split.items()}
            | {"other": round((total_bytes - sum(b.split.values())) / size)},
        },
        "sweep": swept,
        "console_data": extra,
        "pages": {label: {k: _summary(v) for k, v in kinds.items()} for label, kinds in page_runs.items()},
        "slowest_page": {"cold": {"page": cold[0], "s": cold[1]}, "warm": {"page": warm[0], "s": warm[1]}},
        "pages_under_goal": max(cold[1], warm[1]) < GOAL_PAGE_S,
        "over_goal": over_goal(page_runs, calls),
        "data_calls_s": calls,
        "console_phases_s": {
            "warm_up_pass": round(t1 - t0, 1),
            "page_passes": round(t2 - t1, 1),
            "data_calls": round(time.perf_counter() - t2, 1),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(
        f"  memory {entry['memory']['bytes_per_customer']:,} B/customer {entry['memory']['split_bytes_per_customer']}"
        f"; slowest page cold {cold[0]} {cold[1]:.2f} s, warm {warm[0]} {warm[1]:.2f} s; slowest data call "
        f"{max(calls, key=lambda k: calls[k])} {max(calls.values()):.2f} s; {entry['seconds']} s for this size",
        flush=True,
    )
    return entry


def archive_base(root: Path, customers: int, days: int) -> int:
    """In a process of its own: the base's transactions archived as `equilibrate archive` stores them."""
    return simulate_into_archive(root, customers, days, seed=SEED, start=START).state.rows


def make_base(args: argparse.Namespace, template: redis.Redis) -> tuple[Base, dict[str, Any]]:
    """The first size's customers simulated and folded, registered and written into the template db."""
    t0 = time.perf_counter()
    size = args.sizes[0]
    pop = prepare(size, args.days)
    people = generate_customers(size, SEED)
    if [c.customer_id for c in people] != pop.sim.customer_ids:
        raise RuntimeError("the customer master and the simulated population disagree on ids")
    base = Base(
        pop,
        pop.sim.customer_ids,
        [pack(r) for r in pop.records],
        format_profiles(pop.records, compute(pop.records)),
        people,
    )
    customer_registry.register(template, (c.as_row() for c in people))
    store.write_rebuilt(template, base.ids, base.blobs, base.profiles)
    template.delete(store.DIRTY_KEY)
    print(
        f"base: {size:,} customers x {args.days} days ({pop.events:,} events) simulated and folded in "
        f"{pop.seconds:.1f} s",
        flush=True,
    )
    return base, {
        "simulate_fold_s": round(pop.seconds, 1),
        "events": pop.events,
        "base_s": round(time.perf_counter() - t0, 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes: list[int] = args.sizes
    started = time.perf_counter()
    load_at_start, git = round(os.getloadavg()[0], 2), _git()
    result: dict[str, Any] = {"benchmark": "scale", "when": datetime.now(UTC).isoformat(timespec="seconds")}
    sizes_out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        kport, rport = free_port(), free_port()
        broker = start_broker("127.0.0.1", kport, quiet=True)
        redis_proc = start_redis("127.0.0.1", rport, Path(tmp) / "redis")
        try:
            settings = _settings(f"127.0.0.1:{kport}", rport, Path(tmp) / "data")
            ensure_topics(settings, pipeline_topics(settings))
            live = redis.Redis.from_url(settings.redis_url)
            template, check_a, check_b = (redis.Redis(host="127.0.0.1", port=rport, db=db) for db in DB_SCRATCH)
            for name, value in REDIS_CONFIG.items():
                live.config_set(name, value)

            # The archive is written by a process of its own while this one simulates the same customers.
            with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
                t0 = time.perf_counter()
                archiving = pool.submit(archive_base, settings.data_dir / "archive", sizes[0], args.days)
                base, setup = make_base(args, template)
                clones = Clones(template, base.people)
                setup["clone_check"] = clones.check(base, check_a, check_b, CHECKED_CLONES)
                archived = archiving.result()
            setup |= {"base_and_archive_s": round(time.perf_counter() - t0, 1), "archived_transactions": archived}
            print(
                f"base: {archived:,} transactions archived; set-up done in {setup['base_and_archive_s']} s", flush=True
            )

            os.environ.update(settings_env(settings))  # the console reads its settings from the environment
            logging.disable(logging.WARNING)  # Streamlit warns on every run (no runtime)
            results = ResultKeys()
            bench = Bench(args, settings, redis_proc.pid, live, template, base, clones, results, _used(live))
            with results.installed():
                prev = 0
                for size in sizes:
                    sizes_out.append(one_size(bench, prev, size))
                    prev = size
            logging.disable(logging.NOTSET)
            redis_version = _text(live.info("server")["redis_version"])
            for c in (live, template, check_a, check_b):
                c.close()
        finally:
            stop(redis_proc)
            stop(broker)
    wall = time.perf_counter() - started
    if wall > BUDGET_S and not args.quick:
        log.warning(
            "%.0f s: over the %.0f s budget (the machine is shared: see loadavg in the results)", wall, BUDGET_S
        )
    bank = bench.bank
    result |= {
        "goal_page_s": GOAL_PAGE_S,
        "budget_s": BUDGET_S,
        "wall_s": round(wall, 1),
        "method": {
            "real": f"the first size ({sizes[0]:,}): simulated {args.days} days, folded, registered, archived, "
            "snapshotted with the pipeline's own code",
            "cloned": f"bigger sizes: customer i is base customer (i mod {sizes[0]:,}) under its own id: its "
            "profile hash (the base's attributes and features) and packed state COPYed in Redis from a template "
            "db filled by customer_registry.register and store.write_rebuilt, its index entries written in bulk; "
            "checked on every run to equal what register and write_rebuilt write for the same customers",
            "memory_split": "used_memory growth of each step; for clones, the features' share of the copied hash "
            "and state is what write_rebuilt added per base customer, the rest of the copy is the registry's",
            "history": f"{args.snapshots} snapshot passes at every size; above the first, each row is the base "
            "customer's real row under the clone's id (clones score exactly as their base)",
            "archive": f"the base population only ({sizes[0]:,} customers x {args.days} days); the customer page "
            "is timed on the highest-scored base customer",
            "first_pass": "eq:risk:levels deleted first: every score, explanation and level change written and "
            "published, as on a first-ever pass",
            "cases": "proposed and audited once, at the first size",
            "redis": "start_redis (AOF everysec, as deployed); automatic AOF rewrites off so no fork lands "
            "in a timed phase; maxmemory raised",
        },
        "setup": setup
        | {
            "sizes": sizes,
            "days": args.days,
            "snapshots": args.snapshots,
            "repeat": args.repeat,
            "cases": args.cases,
            "quick": args.quick,
            "redis_config": REDIS_CONFIG,
            "risk_sweep_batch": Settings(_env_file=None).risk_sweep_batch,
        },
        "sizes": sizes_out,
        "targets": None if bank is None else {"customer": bank.customer, "case": bank.case, "search": bank.search},
        "git": git,
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": cpu_model(),
            "python": sys.version.split()[0],
            "redis_server": redis_version,
            "streamlit": _version("streamlit"),
            "loadavg_1m_at_start": load_at_start,  # the machine is shared: anything else running shows here
            "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        },
    }
    result["headline"] = headline(result)
    return result


def over_goal(page_runs: dict[str, dict[str, list[float]]], calls: dict[str, float]) -> dict[str, Any]:
    """Each page with a render over the goal, and its data calls, slowest first."""
    out: dict[str, Any] = {}
    for label, kinds in page_runs.items():
        worst = max(t for times in kinds.values() for t in times)
        if worst >= GOAL_PAGE_S:
            page = label.split(":", 1)[0]
            mine = sorted(((k, v) for k, v in calls.items() if k.startswith(f"{page}:")), key=lambda kv: -kv[1])
            out[label] = {"worst_s": round(worst, 3), "data_calls_s": dict(mine)}
    return out


def _dominant(slow: dict[str, Any]) -> str:
    calls: dict[str, float] = slow["data_calls_s"]
    if not calls:
        return "no data call timed"
    label = next(iter(calls))
    return f"slowest data call {label.split(': ', 1)[-1]} {calls[label]:.2f} s"


def headline(result: dict[str, Any]) -> list[dict[str, Any]]:
    top = result["sizes"][-1]
    n = f"{top['customers']:,}"
    mem, sw = top["memory"], top["sweep"]
    cold, warm = top["slowest_page"]["cold"], top["slowest_page"]["warm"]
    feats = mem["split_bytes_per_customer"]["features"]
    return [
        {
            "metric": f"Redis memory per customer at {n} (everything: registry, features, risk)",
            "value": f"{mem['bytes_per_customer']:,} B ({mem['total_mb']:,.0f} MB in all)",
            "goal": None,
            "met": None,
        },
        {
            "metric": f"of which profile and rolling state at {n}",
            "value": f"{feats:,} B",
            "goal": f"<= {GOAL_FEATURES_BYTES:,} B",
            "met": feats <= GOAL_FEATURES_BYTES,
        },
        {
            "metric": f"risk full sweep at {n}: first pass / unchanged",
            "value": f"{sw['first']['seconds']} s / {sw['unchanged']['seconds']} s "
            f"({sw['unchanged']['customers_per_s']:,}/s unchanged)",
            "goal": None,
            "met": None,
        },
        {"metric": f"risk engine peak RSS at {n}", "value": f"{sw['peak_rss_mb']:,.0f} MB", "goal": None, "met": None},
        {
            "metric": f"slowest console page at {n}, cold / warm (AppTest)",
            "value": f"{cold['s']:.2f} s ({cold['page']}) / {warm['s']:.2f} s ({warm['page']})",
            "goal": f"< {GOAL_PAGE_S:g} s",
            "met": top["pages_under_goal"],
        },
        {
            "metric": f"console pages under {GOAL_PAGE_S:g} s at {n} (every render, cold and warm)",
            "value": f"{len(top['pages']) - len(top['over_goal'])} of {len(top['pages'])}"
            + "".join(f"; {page} {v['worst_s']:.2f} s ({_dominant(v)})" for page, v in top["over_goal"].items()),
            "goal": "all",
            "met": not top["over_goal"],
        },
        {
            "metric": "benchmark wall time, all sizes",
            "value": f"{result['wall_s']:.0f} s",
            "goal": f"<= {BUDGET_S:.0f} s",
            "met": result["wall_s"] <= BUDGET_S,
        },
    ]


COST_COLUMNS = (
    "customers", "load s (total)", "Redis MB", "B / customer", "registry / features / risk B",
    "sweep first / unchanged s", "risk engine RSS MB", "slowest page cold / warm",
)  # fmt: skip


def cost_rows(result: dict[str, Any]) -> list[list[str]]:
    """The cost table: one row per size (load time is the total to reach that size)."""
    rows = []
    for s in result["sizes"]:
        mem, sw, slow = s["memory"], s["sweep"], s["slowest_page"]
        split = mem["split_bytes_per_customer"]
        rows.append([
            f"{s['customers']:,}", f"{s['load_s_cumulative']:.1f}", f"{mem['total_mb']:,.0f}",
            f"{mem['bytes_per_customer']:,}", f"{split['registry']:,} / {split['features']:,} / {split['risk']:,}",
            f"{sw['first']['seconds']:.2f} / {sw['unchanged']['seconds']:.2f}", f"{sw['peak_rss_mb']:,.0f}",
            f"{slow['cold']['s']:.2f} s ({slow['cold']['page']}) / {slow['warm']['s']:.2f} s ({slow['warm']['page']})",
        ])  # fmt: skip
    return rows


def tables(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Tables for the suite's summary beside the headline rows (bench/run_all.py renders them)."""
    days = result["setup"]["days"]
    title = f"How cost grows with the number of customers ({days} days of history each; bench_scale.py)"
    return [{"title": title, "columns": list(COST_COLUMNS), "rows": cost_rows(result)}]


def table(result: dict[str, Any]) -> Iterator[str]:
    """The cost table as fixed-width text, for the terminal."""
    rows = [list(COST_COLUMNS), *cost_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COST_COLUMNS))]
    for row in rows:
        yield "  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--sizes", type=lambda s: sorted(int(x) for x in s.split(",")), default=[10_000, 100_000, 1_000_000]
    )
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--snapshots", type=int, default=4, help="history passes (SNAPSHOT_INTERVAL_S apart)")
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=1, help="timed visits of every page at each size")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2,000 and 20,000 customers x 30 days")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--sweep-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--redis-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sweep_child:
        return sweep_child(args.redis_pid)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.quick:
        args.sizes, args.days = [2_000, 20_000], 30
    out = args.out or (Path(tempfile.gettempdir()) / "bench_scale_quick.json" if args.quick else RESULTS)
    result = run(args)
    result["tables"] = tables(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for line in table(result):
        print(line)
    top = result["sizes"][-1]
    slowest = sorted(top["data_calls_s"].items(), key=lambda kv: -kv[1])[:5]
    print(f"slowest data calls at {top['customers']:,}: " + ", ".join(f"{k} {v:.2f} s" for k, v in slowest))
    for row in result["headline"]:
        verdict = "" if row["met"] is None else (" PASS" if row["met"] else " FAIL")
        print(f"{row['metric']}: {row['value']}" + (f" (goal {row['goal']}){verdict}" if row["goal"] else ""))
    print(f"wrote {out}")
    return 0 if args.quick or all(row["met"] is not False for row in result["headline"]) else 1


if __name__ == "__main__":
    sys.exit(main())
