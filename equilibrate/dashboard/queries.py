"""What the console (and the API) read from Redis: counts, the filtered risk queue, one customer.

Everything comes from indices the pipeline keeps (the score queue, per-level / per-hardship /
per-city / per-employment sets, the name index): a filter is an intersection computed by Redis
into a short-lived key, a page is one ZREVRANGEBYSCORE and one pipelined HMGET. Nothing here scans
the keyspace or reads every customer, so a page costs the same at 5,000 customers as at 1,000,000.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import redis

from equilibrate.features.store import WATERMARK_KEY
from equilibrate.kafka.dlq import DLQ_COUNTS_KEY
from equilibrate.risk.keys import (
    CHANGES_KEY,
    HARDSHIP_TYPES,
    LEVELS,
    QUEUE_KEY,
    TREND_KEY,
    hardship_index,
    level_index,
    reasons_key,
)
from equilibrate.storage.customer_registry import (
    KNOWN_CUSTOMERS_KEY,
    NAMES_KEY,
    attribute_index,
    profile_key,
    values_key,
)

#: Filtered queues are computed into keys that live this long (paging through one reuses it).
RESULT_TTL_S = 15
RESULT_PREFIX = "eq:tmp:queue:"
#: The columns of a queue row, read with one HMGET per customer.
QUEUE_FIELDS: tuple[str, ...] = (
    "name",
    "risk_level",
    "risk_score",
    "hardship_type",
    "city",
    "employment",
    "recommended_action",
    "reasons",
    "scored_at",
)
#: A name search looks at no more than this many matches.
SEARCH_LIMIT = 500


def _text(value: object) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class QueueFilter:
    levels: tuple[str, ...] = ()
    hardships: tuple[str, ...] = ()
    cities: tuple[str, ...] = ()
    employments: tuple[str, ...] = ()
    min_score: float = 0.0
    max_score: float = 100.0
    search: str = ""  # a customer id, or the start of a name

    def groups(self) -> list[list[str]]:
        """The index sets to intersect: one group per filter, any of its values."""
        wanted = (
            [level_index(v) for v in self.levels],
            [hardship_index(v) for v in self.hardships],
            [attribute_index("city", v) for v in self.cities],
            [attribute_index("employment", v) for v in self.employments],
        )
        return [list(group) for group in wanted if group]

    def digest(self) -> str:
        return hashlib.sha1(repr(self).encode(), usedforsecurity=False).hexdigest()[:16]


@dataclass(frozen=True)
class QueuePage:
    rows: list[dict[str, Any]]
    total: int  # rows matching the filter (every page)
    page: int
    size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))


def _filtered_key(client: redis.Redis, f: QueueFilter) -> str:
    groups = f.groups()
    if not groups:
        return QUEUE_KEY
    key = RESULT_PREFIX + f.digest()
    if client.exists(key):
        return key
    with client.pipeline(transaction=False) as pipe:
        sources: list[str] = [QUEUE_KEY]
        for n, group in enumerate(groups):
            if len(group) == 1:
                sources.append(group[0])
            else:
                union = f"{key}:u{n}"
                pipe.sunionstore(union, group)
                pipe.expire(union, RESULT_TTL_S)
                sources.append(union)
        weights = [1] + [0] * (len(sources) - 1)  # the score is the queue's; sets only filter
        pipe.zinterstore(key, dict(zip(sources, weights, strict=True)), aggregate="SUM")
        pipe.expire(key, RESULT_TTL_S)
        pipe.execute()
    return key


def _rows(client: redis.Redis, ids: Sequence[str], scores: Sequence[float]) -> list[dict[str, Any]]:
    with client.pipeline(transaction=False) as pipe:
        for cid in ids:
            pipe.hmget(profile_key(cid), list(QUEUE_FIELDS))
        found = pipe.execute()
    rows = []
    for cid, score, values in zip(ids, scores, found, strict=True):
        row: dict[str, Any] = {"customer_id": cid} | dict(zip(QUEUE_FIELDS, map(_text, values), strict=True))
        row["risk_score"] = float(score)
        rows.append(row)
    return rows


def queue_page(client: redis.Redis, f: QueueFilter, page: int = 1, size: int = 50) -> QueuePage:
    """One page of the risk queue, highest score first, filtered by `f`."""
    page, size = max(1, page), max(1, min(size, 1000))
    if f.search.strip():
        return _search(client, f, page, size)
    key = _filtered_key(client, f)
    low, high = f.min_score, f.max_score
    with client.pipeline(transaction=False) as pipe:
        pipe.zcount(key, low, high)
        pipe.zrevrangebyscore(key, high, low, start=(page - 1) * size, num=size, withscores=True)
        total, members = pipe.execute()
    pairs = cast(list[tuple[bytes, float]], members)
    rows = _rows(client, [_text(m) for m, _ in pairs], [s for _, s in pairs])
    return QueuePage(rows, int(total), page, size)


def _search(client: redis.Redis, f: QueueFilter, page: int, size: int) -> QueuePage:
    """A customer id exactly, or names starting with the text; then the other filters on those few."""
    text = f.search.strip()
    ids: list[str] = []
    if client.exists(profile_key(text)):
        ids.append(text)
    prefix = text.lower()
    entries = client.zrangebylex(NAMES_KEY, f"[{prefix}", f"[{prefix}\xff", start=0, num=SEARCH_LIMIT)
    ids += [_text(e).rpartition("\x00")[2] for e in cast(list[bytes], entries)]
    ids = list(dict.fromkeys(ids))
    if not ids:
        return QueuePage([], 0, page, size)
    scores = client.zmscore(QUEUE_KEY, ids)
    scored = [(cid, float(s)) for cid, s in zip(ids, scores, strict=True) if s is not None]
    rows = _rows(client, [c for c, _ in scored], [s for _, s in scored])
    keep = [r for r in rows if _matches(r, f)]
    keep.sort(key=lambda r: -float(r["risk_score"]))
    start = (page - 1) * size
    return QueuePage(keep[start : start + size], len(keep), page, size)


def _matches(row: Mapping[str, Any], f: QueueFilter) -> bool:
    checks = (
        (f.levels, "risk_level"),
        (f.hardships, "hardship_type"),
        (f.cities, "city"),
        (f.employments, "employment"),
    )
    if any(values and row.get(name) not in values for values, name in checks):
        return False
    return f.min_score <= float(row["risk_score"]) <= f.max_score


def filter_choices(client: redis.Redis) -> dict[str, list[str]]:
    """The values each filter can take: levels and hardship types, and the cities and employments seen."""
    with client.pipeline(transaction=False) as pipe:
        pipe.smembers(values_key("city"))
        pipe.smembers(values_key("employment"))
        cities, employments = pipe.execute()
    return {
        "levels": list(LEVELS),
        "hardships": list(HARDSHIP_TYPES),
        "cities": sorted(_text(v) for v in cities),
        "employments": sorted(_text(v) for v in employments),
    }


@dataclass
class Overview:
    customers: int
    scored: int
    levels: dict[str, int]
    hardships: dict[str, int]
    watermark_ms: int | None
    last_change: dict[str, Any] | None  # the newest level change (its scored_at is event time)
    dead_letters: int
    trend: list[dict[str, int]] = field(default_factory=list)

    @property
    def high_risk_rate(self) -> float:
        """Share of scored customers at HIGH or CRITICAL."""
        high = self.levels.get("HIGH", 0) + self.levels.get("CRITICAL", 0)
        return high / self.scored if self.scored else 0.0


def overview(client: redis.Redis, trend_since_ms: int | None = None) -> Overview:
    with client.pipeline(transaction=False) as pipe:
        pipe.scard(KNOWN_CUSTOMERS_KEY)
        pipe.zcard(QUEUE_KEY)
        for level in LEVELS:
            pipe.scard(level_index(level))
        for hardship in HARDSHIP_TYPES:
            pipe.scard(hardship_index(hardship))
        pipe.hvals(WATERMARK_KEY)
        pipe.xrevrange(CHANGES_KEY, count=1)
        pipe.hvals(DLQ_COUNTS_KEY)
        pipe.xrange(TREND_KEY, min=str(trend_since_ms) if trend_since_ms else "-")
        out = pipe.execute()
    customers, scored = int(out[0]), int(out[1])
    n = len(LEVELS)
    levels = dict(zip(LEVELS, map(int, out[2 : 2 + n]), strict=True))
    hardships = dict(zip(HARDSHIP_TYPES, map(int, out[2 + n : 2 + n + len(HARDSHIP_TYPES)]), strict=True))
    marks, last, dlq, trend = out[2 + n + len(HARDSHIP_TYPES) :]
    last_change = orjson.loads(last[0][1][b"event"]) if last else None
    points = [
        {_text(k): int(v) for k, v in body.items()} for _, body in cast(list[tuple[bytes, dict[bytes, bytes]]], trend)
    ]
    return Overview(
        customers=customers,
        scored=scored,
        levels=levels,
        hardships=hardships,
        watermark_ms=max((int(v) for v in marks), default=None),
        last_change=last_change,
        dead_letters=sum(int(v) for v in dlq),
        trend=points,
    )


@dataclass
class CustomerDetail:
    customer_id: str
    profile: dict[str, str]  # attributes, features and risk fields of customer:{id}
    explanation: dict[str, Any] | None  # eq:risk:reasons:{id}: rule points, hardship rules, SHAP reasons


def customer_detail(client: redis.Redis, customer_id: str) -> CustomerDetail | None:
    with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(profile_key(customer_id))
        pipe.get(reasons_key(customer_id))
        raw, explained = pipe.execute()
    if not raw:
        return None
    profile = {_text(k): _text(v) for k, v in cast(dict[bytes, bytes], raw).items()}
    return CustomerDetail(customer_id, profile, orjson.loads(explained) if explained else None)
