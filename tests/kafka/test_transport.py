"""Round trips through the real broker with both supported clients."""

from __future__ import annotations

import time
import uuid

from equilibrate.kafka.codec import decode, encode
from equilibrate.kafka.roundtrip import roundtrip
from equilibrate.kafka.topics import ensure_topics
from equilibrate.kafka.transport import TopicPartition, make_admin, make_consumer, make_producer
from equilibrate.settings import Settings


def test_roundtrip(both_clients: Settings) -> None:
    took = roundtrip(both_clients, count=25, timeout=60)
    assert took < 60


def test_keyed_events_keep_per_key_order_and_group_offsets_report_lag(both_clients: Settings) -> None:
    s = both_clients
    topic = s.topic_transactions
    producer = make_producer(s)
    for i in range(200):
        producer.produce(
            topic, encode({"schema_version": 1, "customer": f"C{i % 10}", "seq": i}), key=f"C{i % 10}".encode()
        )
    assert producer.flush(30) == 0
    assert producer.failed == 0

    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = make_consumer(s, group)
    consumer.subscribe([topic])
    seen: dict[str, list[int]] = {}
    partitions_of: dict[str, set[int]] = {}
    last: dict[TopicPartition, int] = {}
    deadline = time.monotonic() + 60
    while sum(map(len, seen.values())) < 200 and time.monotonic() < deadline:
        for rec in consumer.consume(500, 1.0):
            body = decode(rec.value or b"")
            seen.setdefault(body["customer"], []).append(body["seq"])
            partitions_of.setdefault(body["customer"], set()).add(rec.partition)
            assert rec.key == body["customer"].encode()
            last[(rec.topic, rec.partition)] = rec.offset
    assert sum(map(len, seen.values())) == 200
    for customer, seqs in seen.items():
        assert seqs == sorted(seqs), customer
        assert len(partitions_of[customer]) == 1  # keyed by customer: one partition each
    consumer.commit({tp: off + 1 for tp, off in last.items()})
    consumer.close()

    admin = make_admin(s)
    lags = [p for p in admin.consumer_lag([group]) if p.topic == topic]
    admin.close()
    assert {p.partition for p in lags} == {p for (_t, p) in last}
    assert sum(p.committed or 0 for p in lags) == 200
    assert all(p.lag == 0 for p in lags)


def test_on_assign_starts_partitions_where_the_state_store_says(both_clients: Settings) -> None:
    s = both_clients
    topic = f"assign-{uuid.uuid4().hex[:8]}"
    ensure_topics(s, [topic])
    producer = make_producer(s)
    for i in range(50):
        producer.produce(topic, encode({"schema_version": 1, "seq": i}), key=b"same-key")
    assert producer.flush(30) == 0

    consumer = make_consumer(s, f"g-{uuid.uuid4().hex[:8]}")
    assigned: list[TopicPartition] = []

    def on_assign(parts: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        assigned.extend(parts)
        return {tp: 40 for tp in parts}  # as if offsets 0..39 were already applied

    consumer.subscribe([topic], on_assign=on_assign)
    got: list[int] = []
    deadline = time.monotonic() + 60
    while len(got) < 10 and time.monotonic() < deadline:
        got += [decode(r.value or b"")["seq"] for r in consumer.consume(100, 1.0)]
    consumer.close()
    assert assigned
    assert got == list(range(40, 50))
