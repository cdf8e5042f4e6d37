"""`equilibrate archive`: every valid transaction, exactly once, into Parquet by event date.

Order of a flush (a crash at any point is recoverable because of it):
1. write the part files and the manifest (the manifest's rename is the commit point),
2. flush the dead-letter producer and the DLQ counts,
3. commit the consumer group's offsets (for lag reporting; the manifest is the source of truth).
On start and on every rebalance the consumer seeks to the manifest's offsets.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.csv as pacsv
import redis

from equilibrate.kafka.dlq import DeadLetters
from equilibrate.kafka.topics import ensure_topics
from equilibrate.kafka.transport import Consumer, Producer, TopicPartition, make_consumer, make_producer
from equilibrate.ops.heartbeat import Heartbeat
from equilibrate.ops.stopping import StopFlag
from equilibrate.settings import Settings
from equilibrate.sources.gate import IngestGate, RecentIds
from equilibrate.storage import customer_registry
from equilibrate.storage.archive_store import ArchiveStore, PendingRow
from equilibrate.storage.redis_client import connect, wait_for_redis

log = logging.getLogger(__name__)

GROUP = "equilibrate-archive"
DEDUP_WINDOW = 2_000_000


def archive_root(settings: Settings) -> Path:
    return settings.data_dir / "archive"


class Archiver:
    """The archive component: consume, gate, buffer, commit durably, repeat."""

    def __init__(self, settings: Settings, stop: StopFlag, *, group: str = GROUP) -> None:
        self.settings = settings
        self.stop = stop
        self.store = ArchiveStore(archive_root(settings))
        self.redis: redis.Redis = connect(settings)
        self.producer: Producer = make_producer(settings, client_id="archive-dlq")
        self.consumer: Consumer = make_consumer(settings, group, client_id="archive")
        self.dead = DeadLetters(self.producer, settings.topic_dlq, "archive")
        self.gate = IngestGate(self._known if settings.validate_customers else None, RecentIds(DEDUP_WINDOW))
        self.heartbeat = Heartbeat(self.redis, "archive", settings.heartbeat_interval_s)
        self.pending: list[PendingRow] = []
        self.pending_offsets: dict[str, int] = {}
        self.first_pending_at: float | None = None
        self.archived = 0

    def _known(self, ids: Sequence[str]) -> list[bool]:
        while True:
            try:
                return customer_registry.known(self.redis, ids)
            except (redis.ConnectionError, redis.TimeoutError):
                wait_for_redis(self.redis)

    def _on_assign(self, parts: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        starts = {tp: self.store.state.next_offset(*tp) for tp in parts}
        log.info("assigned %s; resuming at %s", parts, starts)
        return starts

    def _on_revoke(self, parts: list[TopicPartition]) -> None:
        self.flush()

    def run(self) -> None:
        state = self.store.recover()
        self.gate.recent.extend(self.store.recent_txn_ids(DEDUP_WINDOW))
        log.info("archive at %s: %d rows committed (flush %d)", self.store.root, state.rows, state.seq)
        self.consumer.subscribe([self.settings.topic_transactions], self._on_assign, self._on_revoke)
        try:
            while not self.stop:
                records = self.consumer.consume(self.settings.consume_batch, 0.5)
                if records:
                    accepted, rejected = self.gate.check(records)
                    for rej in rejected:
                        self.dead.reject(rej.record, rej.reason, rej.detail)
                    self.pending += [PendingRow(a.txn, a.record.partition, a.record.offset) for a in accepted]
                    for rec in records:
                        self.pending_offsets[f"{rec.topic}:{rec.partition}"] = rec.offset + 1
                    if self.first_pending_at is None:
                        self.first_pending_at = time.monotonic()
                if self._due():
                    self.flush()
                self.heartbeat.beat(archived=self.archived, flush=self.store.state.seq)
        finally:
            self.flush()
            self.consumer.close()
            self.producer.close()
            self.heartbeat.clear()

    def _due(self) -> bool:
        if self.first_pending_at is None:
            return False
        return (
            len(self.pending) >= self.settings.archive_flush_rows
            or time.monotonic() - self.first_pending_at >= self.settings.archive_flush_interval_s
        )

    def flush(self) -> None:
        if not self.pending_offsets:
            return
        self.store.commit(self.pending, self.pending_offsets)
        self.archived += len(self.pending)
        undelivered = self.producer.flush(30)
        if undelivered:
            log.error("%d dead-letter record(s) not yet delivered", undelivered)
        pipe = self.redis.pipeline(transaction=False)
        self.dead.add_counts_to(pipe)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("DLQ counts not recorded this flush: %s", exc)
        commits: dict[TopicPartition, int] = {}
        for key, off in self.pending_offsets.items():
            topic, _, part = key.rpartition(":")
            commits[(topic, int(part))] = off
        try:
            self.consumer.commit(commits, wait=False)
        except Exception as exc:  # the manifest already holds the truth; lag display only
            log.debug("group offset commit skipped: %s", exc)
        log.debug("flush %d: %d rows", self.store.state.seq, len(self.pending))
        self.pending = []
        self.pending_offsets = {}
        self.first_pending_at = None


def export_csv(settings: Settings, out: Path | None = None) -> tuple[Path, int]:
    """Write the whole archive as one CSV ordered by event time (for spreadsheet users)."""
    store = ArchiveStore(archive_root(settings))
    store.load()
    table = store.read()
    table = table.take(pc.sort_indices(table, sort_keys=[("ts", "ascending"), ("txn_id", "ascending")]))
    target = out or settings.data_dir / "transactions_raw.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(table, target)
    return target, table.num_rows


def run(args: argparse.Namespace, settings: Settings) -> int:
    if getattr(args, "archive_command", None) == "export":
        if not args.csv:
            print("nothing to do: pass --csv")
            return 2
        path, rows = export_csv(settings, args.out)
        print(f"wrote {rows} transactions to {path}")
        return 0
    ensure_topics(settings)
    Archiver(settings, StopFlag().install()).run()
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("archive", help="archive every transaction exactly once to Parquet (data/archive)")
    p.set_defaults(func=run)
    inner = p.add_subparsers(dest="archive_command", metavar="[export]")
    e = inner.add_parser("export", help="write the archive as CSV (data/transactions_raw.csv)")
    e.add_argument("--csv", action="store_true", help="write CSV")
    e.add_argument("--out", type=Path, default=None, help="target file (default data/transactions_raw.csv)")
    e.set_defaults(func=run)
