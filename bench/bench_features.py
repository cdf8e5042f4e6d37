"""Feature engine benchmark: throughput against the bare client, freshness, memory per customer.

    .venv/bin/python bench/bench_features.py [--customers 5000] [--days 90] [--memory-customers 100000]

Starts its own embedded broker and redis-server on free ports (the project's launch code) and
writes bench/results/features.json.

1. Throughput: 5,000 simulated customers x 90 days are produced to a 4-partition topic. The same
   client then consumes and parses (orjson) them bare, and the engine (in this process, one
   thread) consumes them in a fresh group; both rates and their ratio are reported.
2. Freshness: `equilibrate features` runs as its own process while events are offered at 5,000/s
   for 30 s; p50/p99 from produce (Kafka record time) to profile committed, as the engine measures.
3. Memory: profiles and states of `--memory-customers` customers with a full 90-day history are
   written to an empty Redis (10k simulated customers, repeated under distinct ids); used_memory
   growth per customer, with and without the customers' static attributes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis

from equilibrate.features import store
from equilibrate.features.compute import compute, format_profiles
from equilibrate.features.engine import FeatureEngine
from equilibrate.features.freshness import LATENCY_KEY
from equilibrate.features.state import apply_events, new_records, pack, to_arrays
from equilibrate.kafka.broker import start_broker
from equilibrate.kafka.topics import ensure_topics
from equilibrate.kafka.transport import make_consumer, make_producer
from equilibrate.ops.child import stop
from equilibrate.ops.net import free_port
from equilibrate.ops.stopping import StopFlag
from equilibrate.schema import parse_transaction
from equilibrate.settings import Settings
from equilibrate.sources.customers import generate_customers
from equilibrate.sources.simulator import Simulator
from equilibrate.storage import customer_registry
from equilibrate.storage.redis_server import start_redis

RESULTS = Path(__file__).resolve().parent / "results" / "features.json"
START = datetime(2026, 1, 1, tzinfo=UTC)


def _settings(bootstrap: str, redis_port: int, db: int, client: str = "confluent") -> Settings:
    suffix = uuid.uuid4().hex[:6]
    return Settings(
        _env_file=None,
        kafka_bootstrap_servers=bootstrap,
        redis_url=f"redis://127.0.0.1:{redis_port}/{db}",
        kafka_client=client,
        topic_transactions=f"bench-txn-{suffix}",
        topic_dlq=f"bench-dlq-{suffix}",
        kafka_partitions=4,
    )


def _simulator(customers: int) -> Simulator:
    return Simulator(generate_customers(customers, seed=7), seed=7, start=START)


def _produce_all(settings: Settings, sim: Simulator, days: int) -> int:
    """Produce `days` of history, encoding chunk by chunk (orjson buffers are large: never hold a day)."""
    producer = make_producer(settings, linger_ms=20)
    n = 0
    for batch in sim.days(days):
        for lo in range(0, len(batch), 5_000):
            for value, key in zip(sim.encode(batch, lo, lo + 5_000), sim.keys_of(batch, lo, lo + 5_000), strict=True):
                producer.produce(settings.topic_transactions, value, key=key)
                n += 1
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("events not delivered")
    return n


def bare_consume(settings: Settings, total: int) -> float:
    consumer = make_consumer(settings, f"bare-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([settings.topic_transactions])
    got, first = 0, None
    while got < total:
        records = consumer.consume(20_000, 1.0)
        if records and first is None:
            first = time.perf_counter()
        for rec in records:
            orjson.loads(rec.value or b"{}")
        got += len(records)
    rate = got / (time.perf_counter() - (first or time.perf_counter()))
    consumer.close()
    return rate


def engine_rate(settings: Settings, total: int) -> dict[str, float]:
    client = redis.Redis.from_url(settings.redis_url)
    flag = StopFlag()
    engine = FeatureEngine(settings, flag, group=f"bench-{uuid.uuid4().hex[:6]}")
    started: list[float] = []
    original = engine.process

    def timed(records: Any) -> Any:
        if not started:
            started.append(time.perf_counter())
        return original(records)

    engine.process = timed  # type: ignore[method-assign]

    def watch() -> None:
        while engine.processed < total:
            time.sleep(0.05)
        flag.set()

    threading.Thread(target=watch, daemon=True).start()
    engine.run()
    elapsed = time.perf_counter() - started[0]
    events = int(client.hget(store.STATS_KEY, "events") or 0)
    client.close()
    return {"events": events, "seconds": round(elapsed, 2), "events_per_s": round(events / elapsed)}


def freshness(settings: Settings, sim: Simulator, rate: int, seconds: int, env_dir: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "REDIS_URL": settings.redis_url,
        "TOPIC_TRANSACTIONS": settings.topic_transactions,
        "TOPIC_DLQ": settings.topic_dlq,
        "DATA_DIR": str(env_dir),
        "LOG_LEVEL": os.environ.get("BENCH_ENGINE_LOG", "WARNING"),
    }
    proc = subprocess.Popen([sys.executable, "-m", "equilibrate", "features"], env=env)
    producer = make_producer(settings)  # the default 5 ms linger, as every Equilibrate producer uses
    # warm-up: wait until the group has formed and the engine has applied a first event
    client = redis.Redis.from_url(settings.redis_url)
    warm = next(sim.days(1))
    for value, key in zip(sim.encode(warm, 0, 50), sim.keys_of(warm, 0, 50), strict=True):
        producer.produce(settings.topic_transactions, value, key=key)
    producer.flush(10)
    deadline = time.monotonic() + 60
    while int(client.hget(store.STATS_KEY, "events") or 0) < 50 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    client.delete(LATENCY_KEY)
    sent, start = 0, time.perf_counter()
    batches = sim.days(None)
    pending: list[tuple[bytes, bytes]] = []
    day = next(batches)
    cursor = len(day)
    while time.perf_counter() - start < seconds:
        if not pending:
            if cursor >= len(day):
                day, cursor = next(batches), 0
            pending = list(
                zip(sim.encode(day, cursor, cursor + 500), sim.keys_of(day, cursor, cursor + 500), strict=True)
            )[::-1]
            cursor += 500
        due = int((time.perf_counter() - start) * rate) - sent
        for _ in range(min(due, len(pending))):
            value, key = pending.pop()
            producer.produce(settings.topic_transactions, value, key=key)
            sent += 1
        producer.poll(0)
        time.sleep(0.002)
    producer.flush(30)
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    stats = {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in client.hgetall(LATENCY_KEY).items()}
    client.close()
    return {"offered_per_s": rate, "seconds": seconds, "sent": sent, **stats}


def memory(redis_port: int, db: int, customers: int, copies_of: int = 10_000) -> dict[str, Any]:
    people = generate_customers(copies_of, seed=11)
    sim = Simulator(people, seed=11, start=START)
    records = new_records(copies_of)
    for day in sim.days(90):
        txns = [parse_transaction(v) for v in sim.encode(day)]
        apply_events(records, to_arrays(txns, day.customer.tolist()))
    blobs = [pack(r) for r in records]
    profiles = format_profiles(records, compute(records))
    client = redis.Redis.from_url(f"redis://127.0.0.1:{redis_port}/{db}")
    client.flushdb()
    before = int(client.info("memory")["used_memory"])
    for copy in range(customers // copies_of):
        ids = [f"{c.customer_id}-{copy}" for c in people]
        store.write_rebuilt(client, ids, blobs, profiles)
    after_features = int(client.info("memory")["used_memory"])
    for copy in range(customers // copies_of):
        customer_registry.register(client, ({**c.as_row(), "customer_id": f"{c.customer_id}-{copy}"} for c in people))
    after_all = int(client.info("memory")["used_memory"])
    n = (customers // copies_of) * copies_of
    client.close()
    return {
        "customers": n,
        "bytes_per_customer_features": round((after_features - before) / n),
        "bytes_per_customer_with_attributes": round((after_all - before) / n),
        "packed_state_bytes_mean": round(float(np.mean([len(b) for b in blobs]))),
        "note": f"{copies_of} simulated customers x 90 days, repeated under distinct ids",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--memory-customers", type=int, default=100_000)
    parser.add_argument("--freshness-seconds", type=int, default=30)
    parser.add_argument("--phases", default="throughput,freshness,memory")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        kport, rport = free_port(), free_port()
        broker = start_broker("127.0.0.1", kport, quiet=True)
        redis_proc = start_redis("127.0.0.1", rport, Path(tmp) / "redis")
        try:
            result: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
            result.update(benchmark="features", when=datetime.now(UTC).isoformat(timespec="seconds"))
            phases = set(args.phases.split(","))
            if "throughput" in phases:
                runs = {}
                for db, client in ((1, "confluent"), (2, "kafka-python")):
                    s = _settings(f"127.0.0.1:{kport}", rport, db, client)
                    ensure_topics(s)
                    sim = _simulator(args.customers)
                    customer_registry.register_ids(redis.Redis.from_url(s.redis_url), sim.customer_ids)
                    total = _produce_all(s, sim, args.days)
                    bare = bare_consume(s, total)
                    eng = engine_rate(s, total)
                    runs[client] = {
                        "events": total,
                        "bare_consume_parse_per_s": round(bare),
                        "engine": eng,
                        "engine_to_bare_ratio": round(eng["events_per_s"] / bare, 2),
                    }
                    print(client, runs[client], flush=True)
                result["throughput"] = runs
            if "freshness" in phases:
                s = _settings(f"127.0.0.1:{kport}", rport, 3)
                ensure_topics(s)
                sim = _simulator(args.customers)
                customer_registry.register_ids(redis.Redis.from_url(s.redis_url), sim.customer_ids)
                result["freshness"] = freshness(s, sim, 5000, args.freshness_seconds, Path(tmp) / "fresh")
                print("freshness", result["freshness"], flush=True)
            if "memory" in phases:
                result["memory"] = memory(rport, 4, args.memory_customers)
                print("memory", result["memory"], flush=True)
            result["setup"] = {
                "customers": args.customers,
                "days": args.days,
                "partitions": 4,
                "broker": "Tansu (embedded)",
                "features_batch": Settings(_env_file=None).features_batch,
            }
            result["machine"] = {
                "nproc": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            }
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(result, indent=2) + "\n")
            print(f"wrote {RESULTS}")
        finally:
            stop(redis_proc)
            stop(broker)


if __name__ == "__main__":
    main()
