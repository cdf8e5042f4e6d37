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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import redis

from equilibrate.features import store
from equilibrate.features.columnar import ColumnarBatch, ColumnarGate
from equilibrate.features.compute import compute, format_profiles
from equilibrate.features.freshness import Freshness
from equilibrate.features.state import apply_events, pack, unpack_many
from equilibrate.kafka.dlq import DLQ_COUNTS_KEY, DeadLetters
from equilibrate.kafka.transport import Consumer, Producer, Record, TopicPartition, make_consumer, make_producer
from equilibrate.ops.heartbeat import Heartbeat
from equilibrate.ops.stopping import StopFlag
from equilibrate.settings import Settings
from equilibrate.sources.gate import RecentIds
from equilibrate.storage import customer_registry
from equilibrate.storage.redis_client import connect, with_redis

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
    produced_ms: list[int] = field(default_factory=list)
    seq: int = 0
    committed_at: float = 0.0  # wall clock when Redis confirmed the batch (for freshness)


@dataclass
class _InFlight:
    """The one batch whose Redis transaction is running on the writer thread."""

    future: Future[None]
    result: BatchResult


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
        # Commits run on one writer thread so the next batch's CPU work overlaps this batch's Redis
        # round trip (Redis applies it on the other core). At most one is in flight; states it is
        # still writing are read from `_pending`, never from Redis.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="features-writer")
        self._inflight: _InFlight | None = None
        self._pending: dict[str, tuple[int, bytes]] = {}
        self._seq = 0

    def _new_gate(self) -> ColumnarGate:
        return ColumnarGate(self._known if self.settings.validate_customers else None, RecentIds())

    def _known(self, ids: Sequence[str]) -> list[bool]:
        return self._with_redis(lambda: customer_registry.known(self.redis, ids))

    def _with_redis(self, call: Callable[[], T]) -> T:
        return with_redis(self.redis, call)

    # -- partition ownership -------------------------------------------------------------------
    def _on_assign(self, parts: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        self._drain_quietly()  # offsets read below must include the commit in flight
        offsets = self._with_redis(lambda: store.read_offsets(self.redis, parts))
        self.positions.update(offsets)
        log.info(
            "assigned %d partition(s); resuming at %s", len(parts), {f"{t}[{p}]": o for (t, p), o in offsets.items()}
        )
        return offsets

    def _on_revoke(self, parts: list[TopicPartition]) -> None:
        self._drain_quietly()
        for tp in parts:
            self.positions.pop(tp, None)

    # -- the batch -----------------------------------------------------------------------------
    def process(self, records: Sequence[Record]) -> BatchResult | None:
        """Fold one batch and hand its commit to the writer.

        Returns the batch whose commit completed meanwhile (None if there was none). Raises
        store.FencedError when that commit was refused: another process owns a partition, and this
        batch, built on top of it, is discarded too.
        """
        self._seq += 1
        result = BatchResult(seq=self._seq)
        gated = self.gate.check(records)
        for rej in gated.rejected:
            self.dead.reject(rej.record, rej.reason, rej.detail)
        result.rejected = len(gated.rejected)
        result.offsets = gated.offsets  # next offset per partition, from every record
        result.produced_ms = [r.timestamp_ms for r in records]
        batch = store.BatchWrite(offsets=result.offsets, expected={tp: self.positions.get(tp) for tp in result.offsets})
        self._fold(gated, result, batch)
        if gated.rejected and self.producer.flush(30):
            log.error("dead-letter records not delivered before commit")
        batch.stats = {"events": result.events, "late_dropped": result.late, "rejected": result.rejected}
        dlq_counts = dict(self.dead.pending)
        self.dead.pending.clear()
        finished = self._drain()
        self.positions.update(result.offsets)  # the next batch expects what this one will write
        for cid, blob in zip(batch.customer_ids, batch.blobs, strict=True):
            self._pending[cid] = (result.seq, blob)
        prepared = store.prepare_commit(batch)  # encode here: the writer thread only does the I/O
        future = self._writer.submit(self._with_redis, lambda: self._commit(prepared, dlq_counts, result))
        self._inflight = _InFlight(future, result)
        return finished

    def _drain(self) -> BatchResult | None:
        """Wait for the commit in flight; forget its pending states once Redis has them."""
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return None
        try:
            inflight.future.result()
        except store.FencedError:
            self._pending.clear()
            raise
        done = inflight.result
        for cid in [c for c, (seq, _) in self._pending.items() if seq == done.seq]:
            del self._pending[cid]
        self.freshness.record(done.produced_ms, done.committed_at)
        self.processed += done.events
        return done

    def _drain_quietly(self) -> None:
        try:
            self._drain()
        except store.FencedError as exc:
            log.warning("a batch was refused during a rebalance (%s); its events will be read again", exc)

    def _fold(self, gated: ColumnarBatch, result: BatchResult, batch: store.BatchWrite) -> None:
        if not len(gated.events):
            return
        ids = gated.customer_ids  # first appearance order; gated.events.cust indexes it
        states = unpack_many(self._load_states(ids))
        result.late = apply_events(states, gated.events)
        result.events, result.customers = len(gated.events), len(ids)
        batch.watermarks = gated.watermarks  # newest accepted event ms per partition
        batch.customer_ids = ids
        batch.blobs = [pack(r) for r in states]
        batch.profiles = format_profiles(states, compute(states))

    def _load_states(self, ids: list[str]) -> list[bytes | None]:
        pending = self._pending
        missing = [cid for cid in ids if cid not in pending]
        loaded = dict(zip(missing, self._with_redis(lambda: store.load_states(self.redis, missing)), strict=True))
        return [pending[cid][1] if cid in pending else loaded[cid] for cid in ids]

    def _commit(self, prepared: store.PreparedCommit, dlq_counts: dict[str, int], result: BatchResult) -> None:
        store.send_commit(self.redis, prepared)
        result.committed_at = time.time()
        if dlq_counts:
            pipe = self.redis.pipeline(transaction=False)
            for reason, n in dlq_counts.items():
                pipe.hincrby(DLQ_COUNTS_KEY, f"{self.dead.component}:{reason}", n)
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
                    if result is not None:
                        since_log += result.events
                        self._commit_group(result.offsets)
                elif self._inflight is not None and self._inflight.future.done():
                    try:
                        done = self._drain()
                    except store.FencedError as exc:
                        log.warning("batch dropped, partition owned elsewhere (%s); rejoining the group", exc)
                        self._rejoin()
                        continue
                    if done is not None:
                        since_log += done.events
                        self._commit_group(done.offsets)
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
            self._drain_quietly()
            self._writer.shutdown(wait=True)
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
        self._inflight = None
        self._pending.clear()
        self.consumer.close()
        self.positions.clear()
        self.gate = self._new_gate()  # the dropped batch's ids must not count as seen
        self.consumer = make_consumer(self.settings, self.group, client_id="features")
        self.consumer.subscribe([self.settings.topic_transactions], self._on_assign, self._on_revoke)
