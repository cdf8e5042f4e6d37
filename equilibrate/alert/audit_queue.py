"""Audit rows queued in Redis with the step they record, then moved into the CSV log.

A case step (proposed, approved, sent, ...) and its audit row are written in one MULTI: the row
goes onto `eq:audit:queue` (a stream) beside the case change, so a crash can never leave a step
without its row. Any process (the engine, the console, the API) then moves queued rows into
`data/intervention_log.csv` with `flush`, under the log's lock: rows already written by a writer
that died before removing them from the queue are recognised by their event id and not written
twice. Rows reach the CSV in the order their steps committed.

    eq:audit:queue      STREAM  record = the AuditRecord as JSON (event_id assigned when queued)
    eq:audit:rejected   STREAM  a queued entry that is not a record (kept with the reason; never dropped)
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import asdict, fields, replace
from typing import cast

import orjson
import redis

from equilibrate.alert.audit import AuditError, AuditRecord, AuditRow
from equilibrate.alert.audit_log import AuditLog

log = logging.getLogger(__name__)

QUEUE_KEY = "eq:audit:queue"
REJECTED_KEY = "eq:audit:rejected"
FLUSH_BATCH = 1_000
_FIELDS = frozenset(f.name for f in fields(AuditRecord))


def queue(pipe: redis.client.Pipeline, record: AuditRecord) -> str:
    """Add the row to the queue inside the caller's MULTI; returns its event id."""
    event_id = record.event_id or uuid.uuid4().hex
    pipe.xadd(QUEUE_KEY, {"record": orjson.dumps(asdict(replace(record, event_id=event_id)))})
    return event_id


def pending(client: redis.Redis) -> int:
    return int(client.xlen(QUEUE_KEY))


def read_record(raw: bytes) -> AuditRecord:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise AuditError(f"not JSON ({exc})") from None
    if not isinstance(data, dict) or not set(data) <= _FIELDS:
        raise AuditError("not an audit record")
    return AuditRecord(**data)


class _Batch:
    """One batch taken from the queue under the log's lock, and removed from it once written."""

    def __init__(self, client: redis.Redis, size: int) -> None:
        self.client = client
        self.size = size
        self.ids: list[bytes] = []

    def take(self) -> Sequence[AuditRecord]:
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], self.client.xrange(QUEUE_KEY, count=self.size))
        self.ids = [entry_id for entry_id, _ in entries]
        records = []
        for entry_id, body in entries:
            try:
                records.append(read_record(body.get(b"record", b"")))
            except (AuditError, TypeError) as exc:
                # Never silently dropped: set aside with the reason, for a person to look at.
                log.error("audit queue entry %s is not a record (%s); moved to %s", entry_id, exc, REJECTED_KEY)
                self.client.xadd(REJECTED_KEY, {b"record": body.get(b"record", b""), b"reason": str(exc).encode()})
        return records

    def done(self) -> None:
        if self.ids:
            self.client.xdel(QUEUE_KEY, *self.ids)


def flush(client: redis.Redis, audit_log: AuditLog, *, batch: int = FLUSH_BATCH) -> list[AuditRow]:
    """Move queued rows into the log (as many batches as there are); returns the rows written."""
    written: list[AuditRow] = []
    while True:
        taken = _Batch(client, batch)
        written.extend(audit_log.append_queued(taken.take, taken.done))
        if len(taken.ids) < batch:
            return written
