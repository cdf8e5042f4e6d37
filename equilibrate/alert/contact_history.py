"""Each customer's contact history mirrored in Redis, in the form the contact policy reads.

    eq:contacts:{customer}       ZSET   "<channel>:<ms>" scored by send time (ms): the caps' window
    eq:contacts:unanswered:{customer} HASH count, last_ms: consecutive interventions without a response

One read rebuilds `ContactHistory` for a decision; sends older than the policy's window are trimmed
on every write, so the mirror stays small. The audit log remains the record; this is its index.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import redis

from equilibrate.alert.contact_policy import ContactHistory, Sent

SENT_PREFIX = "eq:contacts:"
UNANSWERED_PREFIX = "eq:contacts:unanswered:"


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def load(client: redis.Redis, customer_id: str, now: datetime, window: timedelta) -> ContactHistory:
    since = _ms(now - window)
    with client.pipeline(transaction=False) as pipe:
        pipe.zrangebyscore(SENT_PREFIX + customer_id, since, "+inf")
        pipe.hgetall(UNANSWERED_PREFIX + customer_id)
        members, counters = pipe.execute()
    sent = []
    for member in cast(list[bytes], members):
        channel, _, ms = member.decode().rpartition(":")
        sent.append(Sent(_at(int(ms)), channel))
    raw = {k.decode(): v.decode() for k, v in cast(dict[bytes, bytes], counters).items()}
    count = int(raw.get("count", 0))
    last = _at(int(raw["last_ms"])) if count and raw.get("last_ms") else None
    return ContactHistory(tuple(sent), count if last is not None else 0, last)


def add_sent(pipe: redis.client.Pipeline, customer_id: str, channel: str, at: datetime, keep: timedelta) -> None:
    """Record a send inside the caller's MULTI (the sender's result step)."""
    key = SENT_PREFIX + customer_id
    ms = _ms(at)
    pipe.zadd(key, {f"{channel}:{ms}": ms})
    pipe.zremrangebyscore(key, "-inf", _ms(at - keep) - 1)


def record_sent(client: redis.Redis, customer_id: str, channel: str, at: datetime, keep: timedelta) -> None:
    with client.pipeline(transaction=True) as pipe:
        add_sent(pipe, customer_id, channel, at, keep)
        pipe.execute()


def record_outcome(client: redis.Redis, customer_id: str, responded: bool, sent_at: datetime) -> None:
    """An intervention sent at `sent_at` was answered (resets the count) or not (adds one)."""
    key = UNANSWERED_PREFIX + customer_id
    if responded:
        client.delete(key)
        return
    with client.pipeline(transaction=True) as pipe:
        pipe.hincrby(key, "count", 1)
        pipe.hget(key, "last_ms")
        _count, last = pipe.execute()
    newest = max(int(last), _ms(sent_at)) if last else _ms(sent_at)
    client.hset(key, "last_ms", newest)
