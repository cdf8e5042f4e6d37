"""`equilibrate features`: every transaction updates its customer's rolling profile in Redis.

Per batch: gate (bad input to the DLQ), load the batch's customer states in one MGET, fold all
events in with numpy, compute the profiles, then one fenced MULTI/EXEC writes states, profiles,
dirty marks, watermarks and the consumed offsets together. On start and on every rebalance the
consumer seeks to the offsets kept in Redis, so a kill -9 at any moment neither loses nor
double-counts a transaction. Several processes in one group split the partitions; all state is in
Redis, so nothing depends on which process owned a customer before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import redis

from equilibrate.features import store
from equilibrate.features.compute import compute, format_profiles
from equilibrate.features.freshness import Freshness
from equilibrate.features.state import apply_events, pack, to_arrays, unpack_many
from equilibrate.kafka.dlq import DeadLetters
from equilibrate.kafka.transport import Consumer, Producer, Record, TopicPartition, make_consumer, make_producer
from equilibrate.ops.heartbeat import Heartbeat
from equilibrate.ops.stopping import StopFlag
from equilibrate.settings import Settings
from equilibrate.sources.gate import Accepted, IngestGate, RecentIds
from equilibrate.storage import customer_registry
from equilibrate.storage.redis_client import connect, wait_for_redis

log = logging.getLogger(__name__)

GROUP = "equilibrate-features"
T = TypeVar("T")


@dataclass
class BatchResult:
    events: int = 0
    rejected: int = 0
    late: int = 0
    customers: int = 0
    offsets: dict[TopicPartition, int] = field(default_factory=dict)


class FeatureEngine:
    def __init__(self, settings: Settings, stop: StopFlag, *, group: str = GROUP) -> None:
        self.settings = settings
        self.stop = stop
        self.redis: redis.Redis = connect(settings)
        self.producer: Producer = make_producer(settings, client_id="features-dlq")
        self.group = group
        self.consumer: Consumer = make_consumer(settings, group, client_id="features")
        self.dead = DeadLetters(self.producer, settings.topic_dlq, "features")
        self.gate = self._new_gate()
        self.heartbeat = Heartbeat(self.redis, "features", settings.heartbeat_interval_s)
        self.positions: dict[TopicPartition, int | None] = {}
        self.processed = 0
        self.freshness = Freshness()

    def _new_gate(self) -> IngestGate:
        return IngestGate(self._known if self.settings.validate_customers else None, RecentIds())

    def _known(self, ids: Sequence[str]) -> list[bool]:
        return self._with_redis(lambda: customer_registry.known(self.redis, ids))

    def _with_redis(self, call: Callable[[], T]) -> T:
        while True:
            try:
                return call()
            except (redis.ConnectionError, redis.TimeoutError):
                wait_for_redis(self.redis)

    # -- partition ownership -------------------------------------------------------------------
    def _on_assign(self, parts: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        offsets = self._with_redis(lambda: store.read_offsets(self.redis, parts))
        self.positions.update(offsets)
        log.info(
            "assigned %d partition(s); resuming at %s", len(parts), {f"{t}[{p}]": o for (t, p), o in offsets.items()}
        )
        return offsets

    def _on_revoke(self, parts: list[TopicPartition]) -> None:
        for tp in parts:
            self.positions.pop(tp, None)

    # -- the batch -----------------------------------------------------------------------------
    def process(self, records: Sequence[Record]) -> BatchResult:
        """Apply one consumed batch; raises store.FencedError if another process owns a partition."""
        result = BatchResult()
        accepted, rejected = self.gate.check(records)
        for rej in rejected:
            self.dead.reject(rej.record, rej.reason, rej.detail)
        result.rejected = len(rejected)
        for rec in records:
            result.offsets[(rec.topic, rec.partition)] = rec.offset + 1
        batch = store.BatchWrite(offsets=result.offsets, expected={tp: self.positions.get(tp) for tp in result.offsets})
        self._fold(accepted, result, batch)
        if rejected and self.producer.flush(30):
            log.error("dead-letter records not delivered before commit")
        batch.stats = {"events": result.events, "late_dropped": result.late, "rejected": result.rejected}
        self._with_redis(lambda: self._commit(batch))
        self.positions.update(result.offsets)
        self.freshness.record([r.timestamp_ms for r in records])
        return result

    def _fold(self, accepted: Sequence[Accepted], result: BatchResult, batch: store.BatchWrite) -> None:
        if not accepted:
            return
        index: dict[str, int] = {}
        cust = [index.setdefault(a.txn.customer_id, len(index)) for a in accepted]
        ids = list(index)
        states = unpack_many(self._with_redis(lambda: store.load_states(self.redis, ids)))
        events = to_arrays([a.txn for a in accepted], cust)
        result.late = apply_events(states, events)
        result.events, result.customers = len(accepted), len(ids)
        for a, ms in zip(accepted, events.ms.tolist(), strict=True):
            tp = (a.record.topic, a.record.partition)
            if ms > batch.watermarks.get(tp, -1):
                batch.watermarks[tp] = ms
        batch.customer_ids = ids
        batch.blobs = [pack(r) for r in states]
        batch.profiles = format_profiles(states, compute(states))

    def _commit(self, batch: store.BatchWrite) -> None:
        store.commit_batch(self.redis, batch)
        pipe = self.redis.pipeline(transaction=False)
        self.dead.add_counts_to(pipe)
        pipe.execute()

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        self.consumer.subscribe([self.settings.topic_transactions], self._on_assign, self._on_revoke)
        last_log, since_log = time.monotonic(), 0
        try:
            while not self.stop:
                records = self.consumer.consume(self.settings.features_batch, self.settings.features_poll_s)
                if records:
                    received = time.time()
                    try:
                        result = self.process(records)
                    except store.FencedError as exc:
                        log.warning("batch dropped, partition owned elsewhere (%s); rejoining the group", exc)
                        self._rejoin()
                        continue
                    if log.isEnabledFor(logging.DEBUG):
                        oldest = min(r.timestamp_ms for r in records) / 1000
                        log.debug(
                            "batch %d: oldest waited %.0f ms before consume, processed in %.0f ms",
                            len(records),
                            (received - oldest) * 1000,
                            (time.time() - received) * 1000,
                        )
                    self.processed += result.events
                    since_log += result.events
                    self._commit_group(result.offsets)
                now = time.monotonic()
                if now - last_log >= 10 and since_log:
                    fresh = self._with_redis(lambda: self.freshness.publish(self.redis))
                    log.info(
                        "%d events in %.0fs (%.0f/s), %d total; freshness p50 %s ms, p99 %s ms",
                        since_log,
                        now - last_log,
                        since_log / (now - last_log),
                        self.processed,
                        fresh.get("p50_ms"),
                        fresh.get("p99_ms"),
                    )
                    last_log, since_log = now, 0
                self.heartbeat.beat(processed=self.processed)
        finally:
            self._with_redis(lambda: self.freshness.publish(self.redis))
            self.consumer.close()
            self.producer.close()
            self.heartbeat.clear()

    def _commit_group(self, offsets: dict[TopicPartition, int]) -> None:
        """Group offsets are for lag display only: Redis holds the truth."""
        try:
            self.consumer.commit(offsets, wait=False)
        except Exception as exc:
            log.debug("group offset commit skipped: %s", exc)

    def _rejoin(self) -> None:
        self.consumer.close()
        self.positions.clear()
        self.gate = self._new_gate()  # the dropped batch's ids must not count as seen
        self.consumer = make_consumer(self.settings, self.group, client_id="features")
        self.consumer.subscribe([self.settings.topic_transactions], self._on_assign, self._on_revoke)
