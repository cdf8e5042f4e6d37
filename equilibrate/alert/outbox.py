"""The outbox: approved messages waiting to be sent, in Redis, so none is lost or sent twice.

    eq:outbox            STREAM  case_id, message_id: one entry per send to make
                                 (consumer group `senders`: an entry stays pending until acknowledged)
    eq:outbox:deferred   ZSET    "case_id|message_id" by event-time ms: quiet hours, sent when they end
    eq:outbox:retry      ZSET    "case_id|message_id" by wall-clock ms: a failed send's next try

Approving a case adds its outbox entry in the same MULTI as the approval. The sender reads an entry,
checks the contact policy again, hands the message to its channel, and records the result on the
case, the contact mirror, the audit queue and the entry's acknowledgement in one MULTI. So:

- killed after the approval and before the send: the entry is still there (new, or pending for this
  consumer name, which a restarted engine reads first; another engine takes it over after
  OUTBOX_CLAIM_IDLE_S): it is sent once;
- killed after the result was recorded and before anything else: the case already holds the
  message id as sent, so the entry is acknowledged without a second send;
- killed while the gateway had the message: the send is repeated with the same message id
  (Message-ID / Idempotency-Key), which the gateway can de-duplicate, and the audit row says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import redis

OUTBOX_KEY = "eq:outbox"
GROUP = "senders"
DEFERRED_KEY = "eq:outbox:deferred"
RETRY_KEY = "eq:outbox:retry"


@dataclass(frozen=True, slots=True)
class Entry:
    entry_id: str  # the stream entry id: what is acknowledged
    case_id: str
    message_id: str

    @property
    def member(self) -> str:
        return f"{self.case_id}|{self.message_id}"


def ensure_group(client: redis.Redis) -> None:
    try:
        client.xgroup_create(OUTBOX_KEY, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def enqueue(pipe: redis.client.Pipeline, case_id: str, message_id: str) -> None:
    pipe.xadd(OUTBOX_KEY, {"case_id": case_id, "message_id": message_id})


def ack(pipe: redis.client.Pipeline, entry: Entry) -> None:
    pipe.xack(OUTBOX_KEY, GROUP, entry.entry_id)


def defer(pipe: redis.client.Pipeline, entry: Entry, until_ms: int) -> None:
    """Hold the send until event time `until_ms` (and acknowledge the entry: the ZSET holds it now)."""
    pipe.zadd(DEFERRED_KEY, {entry.member: until_ms})
    ack(pipe, entry)


def retry_later(pipe: redis.client.Pipeline, entry: Entry, at_ms: int) -> None:
    pipe.zadd(RETRY_KEY, {entry.member: at_ms})
    ack(pipe, entry)


def release_due(client: redis.Redis, key: str, now_ms: int, limit: int = 500) -> int:
    """Move the sends due by `now_ms` from a waiting ZSET back into the outbox; returns how many.

    Each move is one MULTI (remove + add). Two engines releasing at once can both add an entry: the
    sender's check of the case's message id makes the second one a no-op.
    """
    due = cast(list[bytes], client.zrangebyscore(key, "-inf", now_ms, start=0, num=limit))
    with client.pipeline(transaction=True) as pipe:
        for raw in due:
            case_id, _, message_id = raw.decode().partition("|")
            pipe.zrem(key, raw)
            enqueue(pipe, case_id, message_id)
        if due:
            pipe.execute()
    return len(due)


def _entries(raw: object) -> Iterator[Entry]:
    for entry_id, body in cast(list[tuple[bytes, dict[bytes, bytes] | None]], raw):
        if body is None:  # deleted from the stream while pending
            yield Entry(entry_id.decode(), "", "")
            continue
        yield Entry(entry_id.decode(), body.get(b"case_id", b"").decode(), body.get(b"message_id", b"").decode())


def take(client: redis.Redis, consumer: str, count: int, claim_idle_ms: int) -> list[Entry]:
    """Up to `count` sends: this consumer's own unfinished ones first (a restart), then ones another
    engine left idle for `claim_idle_ms`, then new ones. Never blocks."""
    own = client.xreadgroup(GROUP, consumer, {OUTBOX_KEY: "0"}, count=count)
    entries = [e for _, batch in cast(list[tuple[bytes, object]], own) for e in _entries(batch)]
    if len(entries) < count:
        claimed = client.xautoclaim(OUTBOX_KEY, GROUP, consumer, claim_idle_ms, count=count - len(entries))
        entries.extend(_entries(cast(list[object], claimed)[1]))
    if len(entries) < count:
        fresh = client.xreadgroup(GROUP, consumer, {OUTBOX_KEY: ">"}, count=count - len(entries))
        entries.extend(e for _, batch in cast(list[tuple[bytes, object]], fresh) for e in _entries(batch))
    seen: set[str] = set()
    return [e for e in entries if not (e.entry_id in seen or seen.add(e.entry_id))]  # type: ignore[func-returns-value]


def waiting(client: redis.Redis) -> dict[str, int]:
    """Counts for `status` and the console: sends not yet made, deferred, awaiting a retry."""
    unsent = 0
    try:
        for group in client.xinfo_groups(OUTBOX_KEY):
            if group.get("name") in (GROUP, GROUP.encode()):
                unsent = int(group.get("pending") or 0) + int(group.get("lag") or 0)
    except redis.ResponseError:  # no stream yet: nothing was ever approved
        pass
    return {"unsent": unsent, "deferred": int(client.zcard(DEFERRED_KEY)), "retrying": int(client.zcard(RETRY_KEY))}
