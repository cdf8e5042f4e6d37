"""`equilibrate kafka-check`: produce and consume a few messages through the configured client.

The quickest proof that KAFKA_BOOTSTRAP_SERVERS, credentials and the chosen client work.
"""

from __future__ import annotations

import argparse
import logging
import time
import uuid

from equilibrate.errors import ServiceUnavailableError
from equilibrate.kafka.codec import decode, encode
from equilibrate.kafka.topics import ensure_topics
from equilibrate.kafka.transport import make_consumer, make_producer
from equilibrate.settings import Settings

log = logging.getLogger(__name__)


def roundtrip(settings: Settings, count: int = 10, timeout: float = 60.0) -> float:
    """Send `count` messages to a fresh topic, read them back in a fresh group; return seconds taken."""
    start = time.monotonic()
    run_id = uuid.uuid4().hex[:10]
    topic = f"eq-check-{run_id}"
    ensure_topics(settings, [topic])
    producer = make_producer(settings, client_id="kafka-check")
    for i in range(count):
        producer.produce(topic, encode({"schema_version": 1, "seq": i, "run": run_id}), key=str(i).encode())
    if producer.flush(30) or producer.failed:
        raise ServiceUnavailableError(f"{producer.failed} of {count} test messages were not delivered")
    consumer = make_consumer(settings, f"eq-check-{run_id}")
    consumer.subscribe([topic])
    seen: set[int] = set()
    try:
        while len(seen) < count:
            if time.monotonic() - start > timeout:
                raise ServiceUnavailableError(f"read back {len(seen)} of {count} messages within {timeout:.0f}s")
            for rec in consumer.consume(100, 1.0):
                body = decode(rec.value or b"{}")
                if body.get("run") == run_id:
                    seen.add(int(body["seq"]))
    finally:
        consumer.close()
    return time.monotonic() - start


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.client:
        settings = settings.model_copy(update={"kafka_client": args.client})
    took = roundtrip(settings, args.count)
    print(f"ok: {args.count} messages round-tripped via {settings.kafka_client} in {took:.1f}s")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("kafka-check", help="produce and consume test messages through the configured client")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--client", choices=["confluent", "kafka-python"], default=None)
    p.set_defaults(func=run)
