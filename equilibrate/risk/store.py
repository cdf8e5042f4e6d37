"""The risk engine's Redis writes: one MULTI/EXEC per scored batch (layout in risk/keys.py)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import orjson
import redis

from equilibrate.risk.assess import Assessment
from equilibrate.risk.keys import (
    CHANGES_KEY,
    LEVELS_KEY,
    QUEUE_KEY,
    RISK_FIELDS,
    STATS_KEY,
    reasons_key,
)
from equilibrate.storage import resp

PROFILE_PREFIX = "customer:"


@lru_cache(maxsize=1)
def _encoder() -> resp.RowEncoder:
    return resp.RowEncoder("HSET", RISK_FIELDS)


def previous_levels(client: redis.Redis, ids: Sequence[str]) -> list[str | None]:
    if not ids:
        return []
    values = client.hmget(LEVELS_KEY, list(ids))
    return [None if v is None else (v.decode() if isinstance(v, bytes) else str(v)) for v in values]


def change_event(a: Assessment, i: int, previous: str | None) -> dict[str, object]:
    """What a level change publishes (risk-events topic and the eq:risk:changes stream)."""
    return {
        "schema_version": 1,
        "customer_id": a.ids[i],
        "previous_level": previous,
        "risk_level": a.levels[i],
        "risk_score": round(float(a.risk_score[i]), 1),
        "rule_score": int(a.rules.score[i]),
        "hardship_type": a.hardship_type(i),
        "reasons": a.reasons_text(i),
        "recommended_action": a.actions[i],
        "scored_at": a.scored_at(i),
        "model_version": a.model_version,
    }


def write_assessment(
    client: redis.Redis,
    a: Assessment,
    changes: Sequence[dict[str, object]],
    *,
    changes_maxlen: int,
    stats: dict[str, int] | None = None,
) -> None:
    """Scores into customer:{id}, the queue, levels and explanations, and the changes stream, at once."""
    if not len(a):
        return
    n = len(a)
    rows = [a.row(i) for i in range(n)]
    scores: list[float] = [round(float(v), 1) for v in a.risk_score.tolist()]
    commands = [
        _encoder().encode_many([PROFILE_PREFIX + cid for cid in a.ids], rows),
        resp.command("ZADD", QUEUE_KEY, *(x for i in range(n) for x in (scores[i], a.ids[i]))),
        resp.command("HSET", LEVELS_KEY, *(x for i in range(n) for x in (a.ids[i], a.levels[i]))),
        resp.command("MSET", *(x for i in range(n) for x in (reasons_key(a.ids[i]), orjson.dumps(a.explanation(i))))),
    ]
    count = n + 3
    for event in changes:
        commands.append(
            resp.command("XADD", CHANGES_KEY, "MAXLEN", "~", changes_maxlen, "*", "event", orjson.dumps(event))
        )
        count += 1
    for name, value in (stats or {}).items():
        if value:
            commands.append(resp.command("HINCRBY", STATS_KEY, name, value))
            count += 1
    resp.fenced_transaction(client, [], _no_guard, commands, count)


def _no_guard(_values: list[bytes | None]) -> str | None:
    return None
