"""API benchmark: GET /customers/{id} and POST /predict at 500 requests/s, and batches of 1,000.

    .venv/bin/python bench/bench_api.py [--customers 20000] [--days 60] [--rate 500] [--seconds 30]
                                        [--connections 64] [--scoring rules,model] [--sweep 50,100,200,300]
                                        [--workers 2] [--pin] [--api-pythonpath DIR] [--quick] [--out FILE]

Starts its own redis-server on a free port (the project's launch code; no broker: these endpoints
need none) and writes bench/results/api.json (`--quick`: 5,000 customers, 10 s, rules only, written
to the temp directory so a smoke run never replaces the recorded numbers). Goals (the API's issue):
p99 under 20 ms for `GET /customers/{id}` and `POST /predict` at 500 requests/s on this machine; a
batch of 1,000 under 200 ms. Exit code 1 when a goal is missed (not judged with `--quick`).

Set-up, with the pipeline's own code: `--customers` simulated customers are driven through `--days`
days and written to Redis as a rebuild leaves them (bench_risk.py's `prepare` and `load`), their
attributes registered (`customer_registry.register`, so a profile is complete), and the risk engine
re-scores everyone (`RiskEngine.rescore_all`; level changes go to a producer that drops them). With
`model` in `--scoring`, a model is trained as bench_model.py does (5,000 customers x 180 days into
an archive, `build_dataset`, `train_pipeline`) into a registry of its own, and the scoring
scenarios run a second time against an API that follows that registry; `rules` runs them with an
empty registry (the rules score, as a bank without a trained model has).

The API runs as `python -m equilibrate api --port <free>` (uvicorn; `--workers` processes, i.e.
API_WORKERS, default 2: one per core; the packages this venv has) in development mode (no key store)
with the rate limits raised out of the way, and a broker address where nothing listens (its /metrics
asks the broker for consumer lag). The load generator runs in this process: asyncio with
`--connections` keep-alive HTTP/1.1 connections and a minimal request writer / response reader
(cheaper per request than an HTTP library, so the client takes as little of the 2 cores as
possible). It is open loop: request i is due at start + i / rate and its latency runs from that due
time to the last byte of the response, so a request that waits for a free connection, or for a late
scheduler, counts its wait (no coordinated omission).

1. Load, per scenario: `--rate` requests/s for 5 s of warm-up and then `--seconds` measured: (a) GET
   /customers/{random id}, (b) POST /predict {"customer_id"}, (c) POST /predict {"features"} (every
   feature, values read from random customers' live profiles), and a baseline GET /health (no Redis,
   no handler work: the framework's own cost; not judged). Reported: achieved rate, p50/p90/p99/max
   over the requests due in the measured window (a request never answered counts as infinitely
   late), errors, the API's own time per request from its /metrics histogram (middleware to
   response, so without uvicorn's parsing; warm-up included), the CPU cores each process kept busy
   (API, this load generator, redis-server, the rest of the machine) and the CPU per request. Then
   the API's capacity for that request: 8 connections in closed loop for 5 s (each sends its next
   request when the last is answered). Then, for (a)-(c), `--sweep` lower offered rates (10 s after
   a 2 s warm-up each), to show the rate at which the p99 goal is met today.
2. Batches: POST /predict/batch with 1,000 items by customer_id, then with 1,000 feature payloads;
   2 warm-up calls and 20 timed, one at a time: p50/p99/max and the request size.
3. Breakdown, to find what dominates a slow request: the handlers' steps called directly in this
   process (Redis reads, assess(), request validation, dumping the response's JSON), the whole app
   in this process through httpx's ASGI transport (routing, middleware, dependencies, the
   threadpool, serialisation; no sockets, no uvicorn), with the trips
   through anyio's threadpool counted, and one request at a time over HTTP to the API process (adds
   uvicorn, h11 and the sockets, but no queueing). A few hundred calls each.

`--pin` runs the load with the API process on CPU 0 and this process on CPU 1 (redis-server free),
to see what sharing the cores with the client costs. `--api-pythonpath DIR` puts DIR first on the
API's PYTHONPATH (e.g. other versions of uvloop and httptools, which uvicorn uses when importable),
to measure what a dependency would change. The machine may be shared: the cores the rest of the
machine used while measuring, and the load average at the start and the end, are recorded; so are
the commit and any uncommitted change to the package (and a warning if it changed during the run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import orjson
import psutil
import redis
from bench_risk import SEED, START, load, prepare
from machine_info import cpu_cores, cpu_model

from equilibrate.features.compute import FEATURES
from equilibrate.ops.child import spawn, stop
from equilibrate.ops.net import free_port
from equilibrate.ops.stopping import StopFlag
from equilibrate.settings import Settings
from equilibrate.sources.customers import generate_customers
from equilibrate.storage import customer_registry
from equilibrate.storage.redis_server import start_redis

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "api.json"
PREFIX = "/api/v1"
TARGET_P99_MS = 20.0  # GET /customers/{id} and POST /predict, at TARGET_RATE
TARGET_RATE = 500
#: API processes (API_WORKERS): one per core of this 2-core machine.
API_WORKERS = 2
TARGET_BATCH_MS = 200.0  # one POST /predict/batch of BATCH items
BATCH = 1_000
BATCH_CALLS, BATCH_WARMUP = 20, 2
WARMUP_S = 5.0
TIMEOUT_S = 10.0  # a request unanswered this long is an error (its connection is reopened)
DRAIN_S = 15.0  # after the schedule ends, how long answers are awaited
SEQUENTIAL_CALLS = 300  # per kind, for the breakdown
CAPACITY_S, CAPACITY_CONNECTIONS = 5.0, 8  # the closed-loop throughput measurement
SWEEP_S, SWEEP_WARMUP_S = 10.0, 2.0  # each lower offered rate (--sweep)
MODEL_CUSTOMERS, MODEL_DAYS = 5_000, 180  # the model's training run, as bench_model.py
RATE_LIMIT = "100000"  # API_RATE_PER_IP / API_RATE_PER_KEY (the settings' maximum)
RATE_BURST = "1000000"


# -- set-up -------------------------------------------------------------------------------------
class _DroppingProducer:
    """The risk engine's producer for the set-up: level changes are not what this measures."""

    failed = 0

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        return None

    def poll(self, timeout: float = 0.0) -> None:
        return None

    def flush(self, timeout: float = 30.0) -> int:
        return 0

    def close(self) -> None:
        return None


def _settings(redis_port: int, root: Path, registry: Path) -> Settings:
    return Settings(
        _env_file=None,
        redis_url=f"redis://127.0.0.1:{redis_port}/1",
        data_dir=root / "data",
        model_registry_dir=registry,
        embedded_services="never",
    )


def _populate(settings: Settings, customers: int, days: int) -> dict[str, float]:
    """States, profiles and attributes of `customers` customers in Redis, and everyone scored."""
    from equilibrate.risk.engine import RiskEngine

    pop = prepare(customers, days)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        load_s = load(client, settings, pop)
        t0 = time.perf_counter()
        people = generate_customers(customers, seed=SEED)
        if [c.customer_id for c in people] != pop.sim.customer_ids:
            raise SystemExit("the registry's customers are not the simulated ones")
        customer_registry.register(client, (c.as_row() for c in people))
        register_s = time.perf_counter() - t0
    finally:
        client.close()
    engine = RiskEngine(settings, StopFlag(), producer=_DroppingProducer())
    try:
        t0 = time.perf_counter()
        scored = engine.rescore_all()
        rescore_s = time.perf_counter() - t0
    finally:
        engine.redis.close()
    if scored != customers:
        raise SystemExit(f"the risk engine scored {scored} of {customers} customers")
    print(
        f"set-up: {customers:,} customers x {days} days ({pop.events:,} events) simulated in {pop.seconds:.1f} s, "
        f"loaded in {load_s:.1f} s, attributes in {register_s:.1f} s, scored in {rescore_s:.1f} s",
        flush=True,
    )
    return {"events": pop.events, "simulate_s": round(pop.seconds, 1), "rescore_s": round(rescore_s, 1)}


def _train_model(root: Path, registry: Path, customers: int, days: int) -> dict[str, Any]:
    """A model in `registry` (made current), trained as bench_model.py does."""
    from equilibrate.model import runs
    from equilibrate.sources.direct_archive import simulate_into_archive

    t0 = time.perf_counter()
    settings = Settings(_env_file=None, data_dir=root / "model-data", model_registry_dir=registry)
    simulate_into_archive(settings.data_dir / "archive", customers, days, seed=SEED, start=START)
    runs.build_dataset(settings)
    run = runs.train_pipeline(settings)
    seconds = time.perf_counter() - t0
    print(f"model {run.version} trained on {customers:,} customers x {days} days in {seconds:.0f} s")
    return {"version": run.version, "customers": customers, "days": days, "seconds": round(seconds)}


@dataclass(frozen=True)
class Workload:
    ids: list[str]  # random customers, in the order requests use them
    features: list[dict[str, float]]  # random customers' live features, as a caller would send them


def _workload(settings: Settings, customers: int, count: int) -> Workload:
    rng = np.random.default_rng(SEED)
    all_ids = [c.customer_id for c in generate_customers(customers, seed=SEED)]
    ids = [all_ids[i] for i in rng.integers(0, customers, count).tolist()]
    client = redis.Redis.from_url(settings.redis_url)
    try:
        with client.pipeline(transaction=False) as pipe:
            for cid in ids[: min(count, 5_000)]:
                pipe.hmget(customer_registry.profile_key(cid), list(FEATURES))
            rows = pipe.execute()
    finally:
        client.close()
    features = [{f: float(v) if v else 0.0 for f, v in zip(FEATURES, row, strict=True)} for row in rows]
    return Workload(ids, features)


# -- the API process ------------------------------------------------------------------------------
def _api_env(settings: Settings, pythonpath: str | None, workers: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "REDIS_", "MODEL_", "RISK_"))}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH")) if p)
    env.update(
        {
            "REDIS_URL": settings.redis_url,
            "DATA_DIR": str(settings.data_dir),
            "MODEL_REGISTRY_DIR": str(settings.model_registry_dir),
            "EMBEDDED_SERVICES": "never",
            # /metrics asks the broker for consumer lag: a port where nothing listens (never the default 9092)
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "API_MODE": "development",
            "API_RATE_PER_IP": RATE_LIMIT,
            "API_RATE_PER_KEY": RATE_LIMIT,
            "API_RATE_BURST": RATE_BURST,
            "LOG_LEVEL": "WARNING",
            "API_WORKERS": str(workers),
        }
    )
    return env


@contextlib.contextmanager
def _api(
    settings: Settings, workdir: Path, *, pin: bool, pythonpath: str | None, workers: int
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    log_path = workdir / f"api-{port}.log"
    with log_path.open("wb") as log_file:
        proc = spawn(
            [sys.executable, "-m", "equilibrate", "api", "--port", str(port)],
            env=_api_env(settings, pythonpath, workers),
            stderr=log_file,
            stdout=log_file,
            cwd=str(workdir),
        )
    try:
        if pin:
            _pin(proc.pid, {0})
        deadline = time.monotonic() + 60
        while not asyncio.run(_healthy(port)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the API did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        if pin:
            _pin(proc.pid, {0})  # threads started since
        yield port, proc
        if proc.poll() is not None:
            raise SystemExit(f"the API exited ({proc.returncode}):\n{log_path.read_text(errors='replace')[-3000:]}")
    finally:
        stop(proc, 15)


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` and of its worker processes (and those they start later) on `cpus`."""
    for p in _family(pid):
        for tid in os.listdir(f"/proc/{p}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), cpus)


def _family(pid: int) -> list[int]:
    """`pid` and its descendants (the API's uvicorn workers when API_WORKERS > 1)."""
    try:
        return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return [pid]


async def _healthy(port: int) -> bool:
    try:
        conn = await Connection.open(port)
    except OSError:
        return False
    try:
        status, _ = await conn.call(_get("/health", port))
        return status == 200
    except (OSError, asyncio.IncompleteReadError, ValueError):
        return False
    finally:
        conn.close()


# -- a minimal HTTP/1.1 client ---------------------------------------------------------------------
def _get(path: str, port: int) -> bytes:
    return f"GET {PREFIX}{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


def _post(path: str, port: int, body: bytes) -> bytes:
    head = (
        f"POST {PREFIX}{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Connection:
    """One keep-alive connection: write a prepared request, read status and body (Content-Length)."""

    def __init__(self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.port, self.reader, self.writer = port, reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        return cls(port, reader, writer)

    async def call(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = -1
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length < 0:
            raise ValueError("response without Content-Length")
        return status, await self.reader.readexactly(length)

    async def reopen(self) -> None:
        self.close()
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)

    def close(self) -> None:
        self.writer.close()


def _percentiles(ms: Sequence[float]) -> dict[str, float | None]:
    """Nearest-rank percentiles (ms); a request never answered is infinitely late (reported as None)."""
    ranked = sorted(ms)

    def rank(q: float) -> float | None:
        if not ranked:
            return None
        value = ranked[max(0, math.ceil(q / 100 * len(ranked)) - 1)]
        return None if math.isinf(value) else round(value, 2)

    return {"p50_ms": rank(50), "p90_ms": rank(90), "p99_ms": rank(99), "max_ms": rank(100)}


# -- CPU ------------------------------------------------------------------------------------------
def _cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    snap = {"wall": time.perf_counter()}
    times = psutil.cpu_times()
    snap["machine"] = sum(times) - times.idle - getattr(times, "iowait", 0.0)
    for name, pid in pids.items():
        total = 0.0
        for p in _family(pid) if name == "api" else [pid]:
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(p).cpu_times()
                total += t.user + t.system
        snap[name] = total
    return snap


# -- the API's own timing (/metrics) ------------------------------------------------------------
_SERIES = re.compile(
    r'^equilibrate_api_request_seconds_(bucket|sum|count)\{method="([^"]*)",route="([^"]*)"(?:,le="([^"]*)")?\} (\S+)$'
)


def _server_histogram(port: int, method: str, route: re.Pattern[str]) -> dict[str, float]:
    """The API's cumulative latency histogram summed over the routes `route` matches:
    {le: count, ..., "sum": s, "count": n}."""

    async def scrape() -> bytes:
        conn = await Connection.open(port)
        try:
            return (await conn.call(_get("/metrics", port)))[1]
        finally:
            conn.close()

    out: dict[str, float] = defaultdict(float)
    for line in asyncio.run(scrape()).decode().splitlines():
        m = _SERIES.match(line)
        if m and m[2] == method and route.fullmatch(m[3]):
            out[m[4] if m[1] == "bucket" else m[1]] += float(m[5])
    return dict(out)


def _server_time(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Mean, share under the goal and a p99 bound of the API's own time, warm-up included."""
    count = after.get("count", 0.0) - before.get("count", 0.0)
    if count <= 0:
        return {"requests": 0}
    buckets = sorted(
        ((float(le), after[le] - before.get(le, 0.0)) for le in after if le not in ("sum", "count", "+Inf")),
        key=lambda b: b[0],
    )
    p99_le = next((le * 1000 for le, n in buckets if n >= 0.99 * count), None)
    under_goal = next((n for le, n in buckets if le * 1000 == TARGET_P99_MS), None)
    return {
        "requests": int(count),
        "mean_ms": round((after.get("sum", 0.0) - before.get("sum", 0.0)) / count * 1000, 2),
        "p99_at_most_ms": p99_le,  # the histogram's bucket bound (None: over the largest, 2.5 s)
        "share_under_goal": None if under_goal is None else round(under_goal / count, 4),
    }


# -- 1. open-loop load ----------------------------------------------------------------------------
@dataclass
class Scenario:
    name: str
    method: str
    route: re.Pattern[str]  # the API's /metrics labels of these requests
    requests: list[bytes]  # used in turn
    expect: bytes  # every good answer contains this
    judged: bool = True


async def _open_loop(
    port: int,
    scenario: Scenario,
    *,
    rate: float,
    seconds: float,
    connections: int,
    pids: dict[str, int],
    warmup: float = WARMUP_S,
) -> dict[str, Any]:
    total = int(rate * (warmup + seconds))
    first = int(rate * warmup)  # the first request due in the measured window
    done = [math.nan] * total
    failed: dict[int, str] = {}  # request -> what went wrong
    queue: asyncio.Queue[int] = asyncio.Queue()
    conns = [await Connection.open(port) for _ in range(connections)]
    requests = scenario.requests

    async def worker(conn: Connection) -> None:
        while (i := await queue.get()) >= 0:
            try:
                status, body = await asyncio.wait_for(conn.call(requests[i % len(requests)]), TIMEOUT_S)
                if status != 200:
                    failed[i] = f"HTTP {status}"
                elif scenario.expect not in body:
                    failed[i] = "unexpected body"
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
                failed[i] = type(exc).__name__
                await conn.reopen()
            done[i] = time.perf_counter()

    workers = [asyncio.create_task(worker(c)) for c in conns]
    start = time.perf_counter() + 0.05
    cpu0: dict[str, float] = {}
    for i in range(total):
        due = start + i / rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        if i == first:
            cpu0 = _cpu_snapshot(pids)
        queue.put_nowait(i)
    window_end = start + total / rate
    if (delay := window_end - time.perf_counter()) > 0:
        await asyncio.sleep(delay)
    cpu1 = _cpu_snapshot(pids)
    for _ in conns:
        queue.put_nowait(-1)
    _, pending = await asyncio.wait(workers, timeout=DRAIN_S + TIMEOUT_S)
    for task in pending:
        task.cancel()
    for conn in conns:
        conn.close()
    window_start = start + first / rate
    latencies = [(d - (start + i / rate)) * 1000 if not math.isnan(d) else math.inf for i, d in enumerate(done)]
    measured = latencies[first:]
    answered = [d for d in done[first:] if not math.isnan(d)]
    cpu = cpu_cores(cpu0, cpu1)
    per_request = {
        f"{name}_ms": round(cpu.get(name, 0.0) * seconds * 1000 / max(1, len(answered)), 2)
        for name in ("api", "load_generator")
    }
    errors = Counter(kind for i, kind in failed.items() if i >= first)
    errors.update({"never answered": sum(math.isinf(x) for x in measured)})
    return {
        "offered_per_s": rate,
        "achieved_per_s": round(len(answered) / (max(answered) - window_start), 1) if answered else 0.0,
        "requests": len(measured),
        **_percentiles(measured),
        "errors": sum(errors.values()),
        "error_kinds": {kind: n for kind, n in errors.items() if n},
        "cpu_cores": cpu,
        "cpu_per_request": per_request,  # CPU time per answered request (the window's)
    }


async def _capacity(
    port: int, scenario: Scenario, *, seconds: float, connections: int, pids: dict[str, int]
) -> dict[str, Any]:
    """Closed loop: `connections` clients each send their next request as soon as the last is answered,
    for `seconds` after a 1 s warm-up: the most this API process serves of this kind, and its CPU per request."""
    conns = [await Connection.open(port) for _ in range(connections)]
    requests = scenario.requests
    counter = [0]
    warm_end = time.perf_counter() + 1.0
    end = warm_end + seconds
    answered, failures = [0], [0]
    ms: list[float] = []

    async def client(conn: Connection) -> None:
        while (t0 := time.perf_counter()) < end:
            counter[0] += 1
            try:
                status, _ = await asyncio.wait_for(conn.call(requests[counter[0] % len(requests)]), TIMEOUT_S)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
                status = 0
                await conn.reopen()
            if t0 >= warm_end:
                answered[0] += 1
                failures[0] += status != 200
                ms.append((time.perf_counter() - t0) * 1000)

    tasks = [asyncio.create_task(client(c)) for c in conns]
    await asyncio.sleep(max(0.0, warm_end - time.perf_counter()))
    cpu0 = _cpu_snapshot(pids)
    await asyncio.sleep(max(0.0, end - time.perf_counter()))
    cpu1 = _cpu_snapshot(pids)
    await asyncio.wait(tasks, timeout=TIMEOUT_S)
    for conn in conns:
        conn.close()
    cpu = cpu_cores(cpu0, cpu1)
    rate = answered[0] / seconds
    return {
        "connections": connections,
        "answered_per_s": round(rate, 1),
        "errors": failures[0],
        **{k: v for k, v in _percentiles(ms).items() if k in ("p50_ms", "p99_ms")},
        "cpu_cores": cpu,
        "api_cpu_ms_per_request": round(cpu.get("api", 0.0) * 1000 / max(rate, 1e-9), 2),
    }


def _load_scenarios(port: int, work: Workload, scorings: str) -> list[Scenario]:
    get_customers = [_get(f"/customers/{cid}", port) for cid in work.ids]
    by_id = [_post("/predict", port, orjson.dumps({"customer_id": cid})) for cid in work.ids]
    by_features = [_post("/predict", port, orjson.dumps({"features": f})) for f in work.features]
    predict = re.compile(f"{PREFIX}/predict")
    out = []
    if scorings == "rules":
        out += [
            Scenario(
                "health_baseline", "GET", re.compile(f"{PREFIX}/health"), [_get("/health", port)], b"ok", judged=False
            ),
            Scenario("get_customer", "GET", re.compile(f"{PREFIX}/customers/[^/]+"), get_customers, b'"risk_level"'),
        ]
    out += [
        Scenario("predict_by_id", "POST", predict, by_id, b'"risk_level"'),
        Scenario("predict_features", "POST", predict, by_features, b'"risk_level"'),
    ]
    return out


# -- 2. batches ------------------------------------------------------------------------------------
async def _batches(port: int, work: Workload) -> dict[str, Any]:
    def items(n: int, by_id: bool) -> bytes:
        lo = n * BATCH
        if by_id:
            chosen: list[dict[str, Any]] = [{"customer_id": work.ids[(lo + k) % len(work.ids)]} for k in range(BATCH)]
        else:
            chosen = [{"features": work.features[(lo + k) % len(work.features)]} for k in range(BATCH)]
        return orjson.dumps({"items": chosen})

    out: dict[str, Any] = {}
    conn = await Connection.open(port)
    try:
        for name, by_id in (("batch_by_id", True), ("batch_features", False)):
            bodies = [items(n, by_id) for n in range(BATCH_WARMUP + BATCH_CALLS)]
            ms: list[float] = []
            errors: Counter[str] = Counter()
            for n, body in enumerate(bodies):
                t0 = time.perf_counter()
                status, answer = await conn.call(_post("/predict/batch", port, body))
                elapsed = (time.perf_counter() - t0) * 1000
                if status != 200:
                    errors[f"HTTP {status}: {answer[:200].decode(errors='replace')}"] += 1
                elif answer.count(b'"risk_level"') != BATCH:
                    errors["unexpected body"] += 1
                if n >= BATCH_WARMUP:
                    ms.append(elapsed)
            p = _percentiles(ms)
            out[name] = {
                "items": BATCH,
                "calls": len(ms),
                "request_bytes": round(sum(map(len, bodies)) / len(bodies)),
                "p50_ms": p["p50_ms"],
                "p99_ms": p["p99_ms"],
                "max_ms": p["max_ms"],
                "errors": sum(errors.values()),
                "error_kinds": dict(errors),
            }
    finally:
        conn.close()
    return out


# -- 3. breakdown ----------------------------------------------------------------------------------
def _timed(calls: int, fn: Callable[[int], object]) -> dict[str, float]:
    ms = []
    for n in range(calls):
        t0 = time.perf_counter()
        fn(n)
        ms.append((time.perf_counter() - t0) * 1000)
    ranked = sorted(ms)
    return {
        "mean_ms": round(sum(ms) / len(ms), 3),
        "p50_ms": round(ranked[len(ranked) // 2], 3),
        "p99_ms": round(ranked[max(0, math.ceil(0.99 * len(ranked)) - 1)], 3),
    }


async def _timed_async(calls: int, fn: Callable[[int], Awaitable[object]]) -> dict[str, float]:
    ms = []
    for n in range(calls):
        t0 = time.perf_counter()
        await fn(n)
        ms.append((time.perf_counter() - t0) * 1000)
    ranked = sorted(ms)
    return {
        "mean_ms": round(sum(ms) / len(ms), 3),
        "p50_ms": round(ranked[len(ranked) // 2], 3),
        "p99_ms": round(ranked[max(0, math.ceil(0.99 * len(ranked)) - 1)], 3),
    }


async def _in_process(settings: Settings, work: Workload, with_customers: bool) -> dict[str, Any]:
    """Handler steps called directly, then the whole app through the ASGI transport (no sockets)."""
    import anyio.to_thread
    import httpx

    from equilibrate.alert.cases import open_key
    from equilibrate.api import routes_customers, scoring
    from equilibrate.api.app import create_app
    from equilibrate.api.context import Services
    from equilibrate.api.schemas import BatchRequest, BatchResponse, PredictRequest
    from equilibrate.risk.assess import assess

    app = create_app(
        settings.model_copy(update={"api_rate_per_ip": float(RATE_LIMIT), "api_rate_burst": int(RATE_BURST)})
    )
    ids, feats = work.ids, work.features
    n_calls = SEQUENTIAL_CALLS
    steps: dict[str, dict[str, float]] = {}
    async with app.router.lifespan_context(app):
        svc: Services = app.state.services
        model = svc.models.current()

        def one_assess(n: int, row: dict[str, float]) -> object:
            columns = {f: np.array([row[f]], dtype=np.float64) for f in FEATURES}
            as_of = np.array([int(time.time() * 1000)], dtype=np.int64)
            return assess([ids[n]], columns, as_of, svc.rules, svc.policy, model=model)

        async def customer_reads(n: int) -> tuple[Any, Any]:
            async with svc.aredis.pipeline(transaction=False) as pipe:
                pipe.hgetall(customer_registry.profile_key(ids[n]))
                pipe.get(open_key(ids[n]))
                raw, case = await pipe.execute()
            return raw, case

        if with_customers:
            steps["customer.redis_reads"] = await _timed_async(n_calls, customer_reads)
            raw, case = await customer_reads(0)
            steps["customer.build_view"] = _timed(n_calls, lambda n: routes_customers.customer_view(ids[0], raw, case))
            view = routes_customers.customer_view(ids[0], raw, case)
            steps["customer.response_json"] = _timed(n_calls, lambda n: view.model_dump_json())
        steps["predict.redis_reads"] = await _timed_async(n_calls, lambda n: scoring.read_live(svc, [ids[n]]))
        steps["predict.assess_one"] = _timed(n_calls, lambda n: one_assess(n, feats[n % len(feats)]))
        req_id = [PredictRequest(customer_id=cid) for cid in ids[:n_calls]]
        req_f = [PredictRequest(features=f) for f in feats[:n_calls]]
        steps["predict.request_validate_features"] = _timed(
            n_calls, lambda n: PredictRequest.model_validate_json(orjson.dumps({"features": feats[n % len(feats)]}))
        )
        lives = [await scoring.read_live(svc, [ids[n]]) for n in range(n_calls)]
        no_ids = await scoring.read_live(svc, [])
        steps["predict.score_by_id"] = _timed(n_calls, lambda n: scoring.score(svc, [req_id[n]], lives[n]))
        steps["predict.score_features"] = _timed(n_calls, lambda n: scoring.score(svc, [req_f[n]], no_ids))
        pred = scoring.score(svc, [req_id[0]], lives[0])[0]
        steps["predict.response_json"] = _timed(n_calls, lambda n: pred.model_dump_json())
        big = [PredictRequest(customer_id=ids[k % len(ids)]) for k in range(BATCH)]
        big_f = [PredictRequest(features=feats[k % len(feats)]) for k in range(BATCH)]
        big_ids = [ids[k % len(ids)] for k in range(BATCH)]
        steps["batch.redis_reads_1000"] = await _timed_async(20, lambda n: scoring.read_live(svc, big_ids))
        live = await scoring.read_live(svc, big_ids)
        rows = scoring.live_matrix(big_ids, live.rows)
        cols = {f: rows[:, j] for j, f in enumerate(FEATURES)}
        as_of = np.full(len(rows), int(time.time() * 1000), dtype=np.int64)
        steps["batch.assess_1000"] = _timed(
            20, lambda n: assess(big_ids, cols, as_of, svc.rules, svc.policy, model=model)
        )
        steps["batch.score_1000_by_id"] = _timed(20, lambda n: scoring.score(svc, big, live))
        steps["batch.score_1000_features"] = _timed(20, lambda n: scoring.score(svc, big_f, no_ids))
        batch_body = orjson.dumps({"items": [{"features": f} for f in (feats * (BATCH // len(feats) + 1))[:BATCH]]})
        steps["batch.request_validate_features_1000"] = _timed(
            20, lambda n: BatchRequest.model_validate_json(batch_body)
        )
        answer = BatchResponse(predictions=scoring.score(svc, big, live), model_version=pred.model_version)
        steps["batch.response_json_1000"] = _timed(20, lambda n: answer.model_dump_json())

        # The whole app, no sockets; sync dependencies, handlers and response validation each take a
        # trip through anyio's threadpool, counted here.
        hops = [0]
        real_run_sync = anyio.to_thread.run_sync

        async def counted(*args: Any, **kwargs: Any) -> Any:
            hops[0] += 1
            return await real_run_sync(*args, **kwargs)

        kinds: list[tuple[str, Callable[[int], tuple[str, dict[str, Any] | None]]]] = [
            ("health", lambda n: (f"{PREFIX}/health", None)),
            ("predict_by_id", lambda n: (f"{PREFIX}/predict", {"customer_id": ids[n]})),
            ("predict_features", lambda n: (f"{PREFIX}/predict", {"features": feats[n % len(feats)]})),
        ]
        if with_customers:
            kinds.insert(1, ("get_customer", lambda n: (f"{PREFIX}/customers/{ids[n]}", None)))
        per_request: dict[str, float] = {}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            with mock.patch.object(anyio.to_thread, "run_sync", counted):
                for kind, request in kinds:

                    async def asgi(n: int, request: Callable[[int], tuple[str, Any]] = request) -> None:
                        path, body = request(n)
                        r = await (client.get(path) if body is None else client.post(path, json=body))
                        if r.status_code != 200:
                            raise SystemExit(f"in-process {path}: HTTP {r.status_code} {r.text[:300]}")

                    hops[0] = 0
                    steps[f"asgi.{kind}"] = await _timed_async(n_calls, asgi)
                    per_request[kind] = hops[0] / n_calls
        steps["asgi.threadpool_trips_per_request"] = per_request
    return steps


async def _sequential_http(port: int, scenarios: Sequence[Scenario]) -> dict[str, dict[str, float]]:
    """One request at a time over one keep-alive connection to the API process: no queueing."""
    out = {}
    conn = await Connection.open(port)
    try:
        for s in scenarios:

            async def call(n: int, s: Scenario = s) -> None:
                status, _ = await conn.call(s.requests[n % len(s.requests)])
                if status != 200:
                    raise SystemExit(f"{s.name}: HTTP {status}")

            for n in range(20):
                await call(n)
            out[f"http_sequential.{s.name}"] = await _timed_async(SEQUENTIAL_CALLS, call)
    finally:
        conn.close()
    return out


# -- main ------------------------------------------------------------------------------------------


def _source() -> dict[str, Any]:
    """The commit, the package's tree in it, and package files changed from it (others may edit the
    package while this runs: only a change to these, not to the README, makes the run suspect)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.rstrip("\n")  # not strip(): a porcelain line starts with a space

    paths = ("equilibrate", "pyproject.toml", "requirements.txt")
    dirty = git("status", "--porcelain", "--", *paths)
    return {
        "commit": git("rev-parse", "--short", "HEAD").strip(),
        "package": [git("rev-parse", "--short", f"HEAD:{p}").strip() for p in paths],
        "changed_files": [line[3:] for line in dirty.splitlines()],
    }


def _packages_in(directory: str | None) -> list[str]:
    if not directory:
        return []
    return sorted(f"{d.metadata['Name']} {d.version}" for d in importlib.metadata.distributions(path=[directory]))


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _run_scoring(
    scoring: str,
    settings: Settings,
    work: Workload,
    args: argparse.Namespace,
    *,
    workdir: Path,
    redis_pid: int,
) -> dict[str, Any]:
    print(f"[{scoring}] breakdown in this process ...", flush=True)
    breakdown: dict[str, Any] = asyncio.run(_in_process(settings, work, scoring == "rules"))
    scenarios: dict[str, Any] = {}
    sweep = [int(r) for r in args.sweep.split(",") if r.strip()]
    with _api(settings, workdir, pin=args.pin, pythonpath=args.api_pythonpath, workers=args.workers) as (port, proc):
        loads = _load_scenarios(port, work, scoring)
        breakdown.update(asyncio.run(_sequential_http(port, loads)))
        if args.pin:
            _pin(os.getpid(), {1})
        try:
            pids = {"api": proc.pid, "load_generator": os.getpid(), "redis": redis_pid}
            for s in loads:
                # the API's own histogram: with one worker only (several share theirs every 5 s)
                one = args.workers == 1
                before = _server_histogram(port, s.method, s.route) if one else None
                result = asyncio.run(
                    _open_loop(port, s, rate=args.rate, seconds=args.seconds, connections=args.connections, pids=pids)
                )
                if before is not None:
                    result["api_time"] = _server_time(before, _server_histogram(port, s.method, s.route))
                else:
                    result["api_time"] = {"mean_ms": None, "note": "not read with several workers"}
                _settle(proc.pid)
                result["capacity"] = asyncio.run(
                    _capacity(port, s, seconds=CAPACITY_S, connections=CAPACITY_CONNECTIONS, pids=pids)
                )
                result["judged"] = s.judged
                scenarios[s.name] = result
                print(f"[{scoring}] {s.name}: {_line(result)}", flush=True)
                if s.judged:
                    _settle(proc.pid)
                    result["lower_rates"] = [_sweep_point(port, s, rate, args.connections, pids) for rate in sweep]
                _settle(proc.pid)
        finally:
            if args.pin:
                _pin(os.getpid(), set(range(os.cpu_count() or 1)))
        batches = asyncio.run(_batches(port, work))
        for name, b in batches.items():
            print(f"[{scoring}] {name}: p50 {b['p50_ms']} ms, p99 {b['p99_ms']} ms, errors {b['errors']}", flush=True)
        scenarios.update(batches)
    return {"scenarios": scenarios, "breakdown": breakdown}


def _settle(pid: int, timeout: float = 60.0) -> None:
    """Wait until the API has worked off what an overload left queued (under 5% of a core for 0.5 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = _cpu_snapshot({"api": pid})
        time.sleep(0.5)
        if cpu_cores(before, _cpu_snapshot({"api": pid}))["api"] <= 0.05:
            break


def _sweep_point(port: int, s: Scenario, rate: int, connections: int, pids: dict[str, int]) -> dict[str, Any]:
    r = asyncio.run(
        _open_loop(port, s, rate=rate, seconds=SWEEP_S, connections=connections, pids=pids, warmup=SWEEP_WARMUP_S)
    )
    point = {k: r[k] for k in ("offered_per_s", "achieved_per_s", "p50_ms", "p99_ms", "max_ms", "errors")}
    point["api_cores"] = r["cpu_cores"].get("api")
    point["other_cores"] = r["cpu_cores"].get("other")
    print(f"    at {rate}/s: p50 {_ms(r['p50_ms'])}, p99 {_ms(r['p99_ms'])}, {r['errors']} errors", flush=True)
    return point


def _line(r: dict[str, Any]) -> str:
    cpu = r["cpu_cores"]
    return (
        f"{r['achieved_per_s']}/s (offered {r['offered_per_s']}), p50 {r['p50_ms']} p90 {r['p90_ms']} "
        f"p99 {r['p99_ms']} max {r['max_ms']} ms, {r['errors']} errors; API's own time mean "
        f"{r['api_time'].get('mean_ms')} ms; cores: API {cpu.get('api')}, client {cpu.get('load_generator')}, "
        f"redis {cpu.get('redis')}, other {cpu.get('other')}; API CPU {r['cpu_per_request']['api_ms']} ms/request; "
        f"closed-loop capacity {r['capacity']['answered_per_s']}/s"
    )


def _ms(value: float | None) -> str:
    return "never answered" if value is None else f"{value:,.1f} ms"


def _verdicts(result: dict[str, Any], rate: int, judge: bool) -> list[tuple[str, bool | None, str]]:
    """(what, passed or None when not judged, numbers) per goal."""
    out: list[tuple[str, bool | None, str]] = []
    for scoring, run in result["runs"].items():
        for name, r in run["scenarios"].items():
            if "offered_per_s" in r:
                p99 = r["p99_ms"]
                ok = p99 is not None and p99 < TARGET_P99_MS and r["errors"] == 0 and rate >= TARGET_RATE
                ok = ok and r["achieved_per_s"] >= 0.98 * rate
                numbers = (
                    f"{r['achieved_per_s']:>6}/s  p50 {_ms(r['p50_ms'])}  p90 {_ms(r['p90_ms'])}  p99 {_ms(p99)}  "
                    f"max {_ms(r['max_ms'])}  errors {r['errors']}"
                )
                goal = f"p99 < {TARGET_P99_MS:.0f} ms at {TARGET_RATE}/s"
            else:
                p99 = r["p99_ms"]
                ok = r["max_ms"] is not None and r["max_ms"] < TARGET_BATCH_MS and r["errors"] == 0
                numbers = (
                    f"{r['calls']} calls x {r['items']}  p50 {_ms(r['p50_ms'])}  p99 {_ms(p99)}  "
                    f"max {_ms(r['max_ms'])}  errors {r['errors']}  ({r['request_bytes']:,} B each)"
                )
                goal = f"every call < {TARGET_BATCH_MS:.0f} ms"
            judged = judge and r.get("judged", True)
            out.append((f"{scoring:<5} {name:<16}", ok if judged else None, f"{numbers}; goal {goal}"))
    return out


_TITLES = {
    "get_customer": "GET /customers/{id}",
    "predict_by_id": "POST /predict by id",
    "predict_features": "POST /predict, features",
    "batch_by_id": "POST /predict/batch, 1,000 ids",
    "batch_features": "POST /predict/batch, 1,000 payloads",
}


def _headline(result: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """The rows the README's table shows: every judged scenario, against its goal."""
    rows = []
    judge = not args.quick
    for scoring, run in result["runs"].items():
        for name, r in run["scenarios"].items():
            if name not in _TITLES:
                continue
            if "offered_per_s" in r:
                metric = f"API {_TITLES[name]} at {args.rate}/s, {scoring} ({args.workers} workers)"
                value = f"p99 {_ms(r['p99_ms'])}, p50 {_ms(r['p50_ms'])}, {r['errors']} errors"
                goal = f"p99 < {TARGET_P99_MS:.0f} ms at {TARGET_RATE}/s"
                met = r["p99_ms"] is not None and r["p99_ms"] < TARGET_P99_MS and r["errors"] == 0
                met = met and r["achieved_per_s"] >= 0.98 * TARGET_RATE and args.rate >= TARGET_RATE
            else:
                metric = f"API {_TITLES[name]}, {scoring}"
                value = f"max {_ms(r['max_ms'])}, p50 {_ms(r['p50_ms'])} ({r['calls']} calls)"
                goal = f"< {TARGET_BATCH_MS:.0f} ms"
                met = r["max_ms"] is not None and r["max_ms"] < TARGET_BATCH_MS and r["errors"] == 0
            rows.append({"metric": metric, "value": value, "goal": goal, "met": met if judge else None})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--rate", type=int, default=TARGET_RATE, help="requests offered per second")
    parser.add_argument("--seconds", type=int, default=30, help="measured, after a 5 s warm-up")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections of the load generator")
    parser.add_argument("--scoring", default=None, help="rules,model (default; --quick: rules)")
    parser.add_argument(
        "--sweep",
        default=None,
        help="lower offered rates, 10 s each, for the judged scenarios (default 50,100,200,300; --quick 100; '' none)",
    )
    parser.add_argument("--model-customers", type=int, default=MODEL_CUSTOMERS, help="the model's training run")
    parser.add_argument("--model-days", type=int, default=MODEL_DAYS)
    parser.add_argument("--workers", type=int, default=API_WORKERS, help="API processes (API_WORKERS)")
    parser.add_argument("--pin", action="store_true", help="API process on CPU 0, load generator on CPU 1")
    parser.add_argument(
        "--api-pythonpath",
        default=None,
        help="put this directory first on the API process's PYTHONPATH (e.g. one with uvloop and httptools, "
        "which uvicorn then uses)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 5,000 customers, 10 s, rules only")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.customers, args.seconds = 5_000, 10
    if args.sweep is None:
        args.sweep = "100" if args.quick else "50,100,200,300"
    scorings = (args.scoring or ("rules" if args.quick else "rules,model")).split(",")
    if not set(scorings) <= {"rules", "model"} or not scorings:
        parser.error("--scoring takes rules, model or rules,model")
    out = args.out or (Path(tempfile.gettempdir()) / "bench_api_quick.json" if args.quick else RESULTS)
    load_at_start = round(os.getloadavg()[0], 2)

    result: dict[str, Any] = {"benchmark": "api", "when": datetime.now(UTC).isoformat(timespec="seconds")}
    source = _source()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rport = free_port()
        redis_proc = start_redis("127.0.0.1", rport, root / "redis")
        try:
            settings = _settings(rport, root, root / "registry-empty")
            setup = _populate(settings, args.customers, args.days)
            work = _workload(settings, args.customers, int(args.rate * (WARMUP_S + args.seconds)))
            model = None
            if "model" in scorings:
                model = _train_model(root, root / "registry-model", args.model_customers, args.model_days)
            runs: dict[str, Any] = {}
            for scoring in scorings:
                registry = root / ("registry-model" if scoring == "model" else "registry-empty")
                scoring_settings = settings.model_copy(update={"model_registry_dir": registry})
                runs[scoring] = _run_scoring(
                    scoring, scoring_settings, work, args, workdir=root, redis_pid=redis_proc.pid
                )
                if redis_proc.poll() is not None:
                    raise SystemExit("redis-server exited during the benchmark")
            result["runs"] = runs
        finally:
            stop(redis_proc)
    result["setup"] = {
        "customers": args.customers,
        "days": args.days,
        **setup,
        "quick": args.quick,
        "rate_per_s": args.rate,
        "seconds": args.seconds,
        "warmup_s": WARMUP_S,
        "connections": args.connections,
        "lower_rates": args.sweep,
        "pin": args.pin,
        "api_pythonpath": args.api_pythonpath,
        "api_pythonpath_packages": _packages_in(args.api_pythonpath),
        "scorings": scorings,
        "model": model,
        "api": f"python -m equilibrate api (uvicorn), API_WORKERS={args.workers}, API_MODE=development, "
        "rate limits 100000/s",
        "workers": args.workers,
        "load_generator": "asyncio, keep-alive HTTP/1.1, open loop: latency from each request's due time",
    }
    after = _source()
    result["source"] = {**source, "commit_at_end": after["commit"]}
    if (after["package"], after["changed_files"]) != (source["package"], source["changed_files"]):
        result["source"]["package_changed_during_run"] = after
        print(f"WARNING: the package changed while measuring: {source} -> {after}")
    result["machine"] = {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **{name: _version(name) for name in ("fastapi", "starlette", "uvicorn", "pydantic", "redis", "hiredis")},
        "uvloop": _version("uvloop"),  # None: uvicorn runs the stdlib asyncio loop
        "httptools": _version("httptools"),  # None: uvicorn parses HTTP with h11 (pure Python)
        "loadavg_1m_at_start": load_at_start,
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
    }
    judge = not args.quick
    verdicts = _verdicts(result, args.rate, judge)
    result["goals"] = {
        "p99_ms": TARGET_P99_MS,
        "rate_per_s": TARGET_RATE,
        "batch_ms": TARGET_BATCH_MS,
        "batch_items": BATCH,
        "judged": judge,
        "results": {what.strip(): passed for what, passed, _ in verdicts},
    }
    result["headline"] = _headline(result, args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    ok = True
    for what, passed, numbers in verdicts:
        ok &= passed is not False
        print(f"{'INFO' if passed is None else 'PASS' if passed else 'FAIL'}  {what} {numbers}")
    print(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
