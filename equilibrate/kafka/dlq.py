"""The dead-letter topic: bad input goes here with its reason and original bytes, and is counted.

Counts live in Redis (`eq:dlq:counts`, field `component:reason`) so `status` and the console show
them whichever process rejected the event.
"""

from __future__ import annotations

import logging
from collections import Counter

import redis

from equilibrate.kafka.codec import dlq_envelope
from equilibrate.kafka.transport import Producer, Record

log = logging.getLogger(__name__)

DLQ_COUNTS_KEY = "eq:dlq:counts"


class DeadLetters:
    """Publishes rejected records for one component; counts are flushed with the batch."""

    def __init__(self, producer: Producer, topic: str, component: str) -> None:
        self.producer = producer
        self.topic = topic
        self.component = component
        self.pending: Counter[str] = Counter()
        self.total: Counter[str] = Counter()

    def reject(self, record: Record, reason: str, detail: str = "", event_time: str | None = None) -> None:
        self.producer.produce(
            self.topic,
            dlq_envelope(
                reason=reason,
                detail=detail,
                original=record.value,
                source_topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                component=self.component,
                event_time=event_time,
            ),
            key=record.key,
        )
        self.pending[reason] += 1
        self.total[reason] += 1
        if self.total[reason] == 1:
            log.warning(
                "first %s event sent to %s (%s[%d]@%d): %s",
                reason,
                self.topic,
                record.topic,
                record.partition,
                record.offset,
                detail[:200],
            )

    def add_counts_to(self, pipe: redis.client.Pipeline) -> None:
        """Queue the pending counts on a Redis pipeline, so they land with the batch's other writes."""
        for reason, n in self.pending.items():
            pipe.hincrby(DLQ_COUNTS_KEY, f"{self.component}:{reason}", n)
        self.pending.clear()


def read_counts(client: redis.Redis) -> dict[str, int]:
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in client.hgetall(DLQ_COUNTS_KEY).items()}
