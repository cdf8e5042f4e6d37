"""What happened after an intervention: missed payments in the following 30 and 60 days, and cure rates.

When a message is sent, three checks are scheduled in event time:

    respond  INTERVENTION_RESPONSE_DAYS after the send: a case still waiting for an answer closes
             as no_response (which counts towards the contact policy's suppression)
    30, 60   the customer's missed payments (failed loan or card repayments) in the 30 / 60 days
             after the send, recorded on the case and counted by action, hardship type and channel

The engine reads missed payments from the transactions topic for customers being followed only.

    eq:outcomes:due            ZSET  "case_id|respond|30|60" by due event ms
    eq:outcomes:watch          ZSET  customer -> event ms until which their missed payments matter
    eq:missed:{customer}       ZSET  txn_id -> event ms of each missed payment while followed
    eq:outcomes:stats          HASH  "<days>|<action>|<hardship>|<channel>|followed|missed" -> count
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import redis

from equilibrate.schema import Txn

DUE_KEY = "eq:outcomes:due"
WATCH_KEY = "eq:outcomes:watch"
MISSED_PREFIX = "eq:missed:"
STATS_KEY = "eq:outcomes:stats"
DAY_MS = 86_400_000
WINDOWS = (30, 60)
#: A check waits this long past its due time so that late events (and a consumer behind the feature
#: engine's watermark) are in before it counts.
GRACE_MS = DAY_MS


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def schedule(pipe: redis.client.Pipeline, case_id: str, customer_id: str, sent_at: datetime, respond_days: int) -> None:
    """Inside the send's MULTI: the response deadline and the 30 / 60-day follow-ups."""
    sent = _ms(sent_at)
    due = {f"{case_id}|respond": sent + respond_days * DAY_MS}
    due |= {f"{case_id}|{days}": sent + days * DAY_MS for days in WINDOWS}
    pipe.zadd(DUE_KEY, due)
    pipe.zadd(WATCH_KEY, {customer_id: sent + max(WINDOWS) * DAY_MS}, gt=True)  # GT still adds new members


def followed(client: redis.Redis, customer_ids: Sequence[str]) -> list[bool]:
    if not customer_ids:
        return []
    scores = client.zmscore(WATCH_KEY, list(customer_ids))
    return [score is not None for score in scores]


def note_missed(client: redis.Redis, txns: Iterable[Txn]) -> list[Txn]:
    """Record the missed payments of followed customers (idempotent by txn id); returns them."""
    missed = [t for t in txns if t.is_payment_failed]
    kept = [t for t, watched in zip(missed, followed(client, [t.customer_id for t in missed]), strict=True) if watched]
    if kept:
        with client.pipeline(transaction=False) as pipe:
            for t in kept:
                pipe.zadd(MISSED_PREFIX + t.customer_id, {t.txn_id: _ms(t.ts)})
            pipe.execute()
    return kept


@dataclass(frozen=True, slots=True)
class Due:
    case_id: str
    kind: str  # respond, 30 or 60
    member: str


def due(client: redis.Redis, now_ms: int, limit: int = 500) -> list[Due]:
    raw = cast(list[bytes], client.zrangebyscore(DUE_KEY, "-inf", now_ms - GRACE_MS, start=0, num=limit))
    out = []
    for member in raw:
        text = member.decode()
        case_id, _, kind = text.partition("|")
        out.append(Due(case_id, kind, text))
    return out


def missed_between(client: redis.Redis, customer_id: str, start_ms: int, end_ms: int) -> int:
    """Missed payments in (start, end]."""
    return int(client.zcount(MISSED_PREFIX + customer_id, f"({start_ms}", end_ms))


def stats_field(days: int, case: Mapping[str, str], what: str) -> str:
    parts = (str(days), case.get("action", ""), case.get("hardship_type", ""), case.get("channel", ""), what)
    return "|".join(p.replace("|", "/") for p in parts)


def count_follow_up(pipe: redis.client.Pipeline, days: int, case: Mapping[str, str], missed: bool) -> None:
    pipe.hincrby(STATS_KEY, stats_field(days, case, "followed"), 1)
    if missed:
        pipe.hincrby(STATS_KEY, stats_field(days, case, "missed"), 1)


@dataclass(frozen=True, slots=True)
class CureRate:
    days: int
    action: str
    hardship_type: str
    channel: str
    followed: int
    missed: int

    @property
    def cure_rate(self) -> float:
        """Share of followed interventions with no missed payment in the window."""
        return 1.0 - self.missed / self.followed if self.followed else 0.0


def cure_rates(client: redis.Redis) -> list[CureRate]:
    """Every (window, action, hardship type, channel) group followed so far, largest first."""
    raw = cast(dict[bytes, bytes], client.hgetall(STATS_KEY))
    groups: dict[tuple[str, str, str, str], dict[str, int]] = {}
    for key, value in raw.items():
        days, action, hardship, channel, what = key.decode().split("|")
        groups.setdefault((days, action, hardship, channel), {})[what] = int(value)
    rates = [
        CureRate(int(days), action, hardship, channel, counts.get("followed", 0), counts.get("missed", 0))
        for (days, action, hardship, channel), counts in groups.items()
    ]
    return sorted(rates, key=lambda r: (r.days, -r.followed, r.action, r.hardship_type, r.channel))


def expire_watch(client: redis.Redis, now_ms: int) -> int:
    """Stop following customers whose last follow-up has passed (their missed-payment sets go too)."""
    done = cast(list[bytes], client.zrangebyscore(WATCH_KEY, "-inf", now_ms - 2 * GRACE_MS, start=0, num=1000))
    if done:
        with client.pipeline(transaction=True) as pipe:
            pipe.zrem(WATCH_KEY, *done)
            pipe.delete(*[MISSED_PREFIX + c.decode() for c in done])
            pipe.execute()
    return len(done)
