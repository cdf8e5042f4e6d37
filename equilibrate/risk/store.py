"""The risk engine's Redis writes: one MULTI/EXEC per scored batch (layout in risk/keys.py)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import orjson
import redis

from equilibrate.risk.assess import Assessment
from equilibrate.risk.keys import (
    CHANGES_KEY,
    HARDSHIP_TYPES,
    LEVELS,
    LEVELS_KEY,
    QUEUE_KEY,
    RISK_FIELDS,
    STATS_KEY,
    hardship_index,
    level_index,
    reasons_key,
)
from equilibrate.storage import resp

PROFILE_PREFIX = "customer:"


@lru_cache(maxsize=1)
def _encoder() -> resp.RowEncoder:
    return resp.RowEncoder("HSET", RISK_FIELDS)


class Previous(NamedTuple):
    """What the last write recorded for a customer: its level and a digest of its score row."""

    level: str | None
    digest: str | None


def previous_state(client: redis.Redis, ids: Sequence[str]) -> list[Previous]:
    """Each customer's last level and row digest, in one HMGET (eq:risk:levels holds `LEVEL|digest`)."""
    if not ids:
        return []
    out = []
    for v in client.hmget(LEVELS_KEY, list(ids)):
        if v is None:
            out.append(Previous(None, None))
            continue
        level, _, digest = (v.decode() if isinstance(v, bytes) else str(v)).partition("|")
        out.append(Previous(level, digest or None))
    return out


def row_digests(rows: Sequence[Sequence[object]]) -> list[str]:
    """A digest of each score row (RISK_FIELDS order) without `scored_at`: equal digests, nothing to rewrite."""
    at = RISK_FIELDS.index("scored_at")
    return [f"{zlib.crc32('|'.join(map(str, [*row[:at], *row[at + 1 :]])).encode()):08x}" for row in rows]


def change_event(a: Assessment, i: int, previous: str | None) -> dict[str, object]:
    """What a level change publishes (risk-events topic and the eq:risk:changes stream)."""
    return {
        "schema_version": 1,
        "customer_id": a.ids[i],
        "previous_level": previous,
        "risk_level": a.levels[i],
        "risk_score": a.scores_rounded[i],
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
    previous: Sequence[Previous],
    changes_maxlen: int,
    stats: dict[str, int] | None = None,
) -> int:
    """One MULTI/EXEC for the batch; returns how many customers' scores were rewritten.

    A customer whose row (score, level, rule score, hardship, reasons, action, model) is unchanged
    gets only its new `scored_at`; the others get every field, their queue entry, their level and
    digest, and their full explanation. Level changes go to the bounded changes stream.
    """
    if not len(a):
        return 0
    commands, count, rewritten = encode_assessment(
        a, changes, previous=previous, changes_maxlen=changes_maxlen, stats=stats
    )
    resp.fenced_transaction(client, [], _no_guard, commands, count)
    return rewritten


def encode_assessment(
    a: Assessment,
    changes: Sequence[dict[str, object]],
    *,
    previous: Sequence[Previous],
    changes_maxlen: int,
    stats: dict[str, int] | None = None,
) -> tuple[list[bytes], int, int]:
    """The batch's writes as RESP commands (CPU only): (commands, how many they hold, rows rewritten)."""
    rows = a.rows()
    digests = row_digests(rows)
    changed: list[int] = []
    same: list[int] = []
    for i, (digest, prev) in enumerate(zip(digests, previous, strict=True)):
        (same if digest == prev.digest else changed).append(i)
    commands: list[bytes] = []
    count = 0
    if same:
        keys = [PROFILE_PREFIX + a.ids[i] for i in same]
        commands.append(_scored_at_encoder().encode_many(keys, [[a.scored_at_texts[i]] for i in same]))
        count += len(same)
    if changed:
        ids = [a.ids[i] for i in changed]
        pairs = [(str(rows[i][0]), a.ids[i]) for i in changed]
        levels = [(a.ids[i], f"{a.levels[i]}|{digests[i]}") for i in changed]
        explained = [(reasons_key(a.ids[i]), orjson.dumps(a.explanation(i))) for i in changed]
        commands += [
            _encoder().encode_many([PROFILE_PREFIX + cid for cid in ids], [rows[i] for i in changed]),
            resp.command_of_strings("ZADD", QUEUE_KEY, args=[x for pair in pairs for x in pair]),
            resp.command_of_strings("HSET", LEVELS_KEY, args=[x for pair in levels for x in pair]),
            resp.command("MSET", *(x for pair in explained for x in pair)),
        ]
        count += len(changed) + 3
        index = _index_commands(ids, [a.levels[i] for i in changed], [a.hardship_type(i) for i in changed])
        commands += index
        count += len(index)
    for event in changes:
        commands.append(
            resp.command("XADD", CHANGES_KEY, "MAXLEN", "~", changes_maxlen, "*", "event", orjson.dumps(event))
        )
        count += 1
    for name, value in (stats or {}).items():
        if value:
            commands.append(resp.command("HINCRBY", STATS_KEY, name, value))
            count += 1
    return commands, count, len(changed)


def _index_commands(ids: Sequence[str], levels: Sequence[str], hardships: Sequence[str]) -> list[bytes]:
    """Each rewritten customer in its level's and hardship type's set, and out of the others."""
    commands = []
    for values, names, key in ((levels, LEVELS, level_index), (hardships, HARDSHIP_TYPES, hardship_index)):
        for name in dict.fromkeys([*names, *values]):
            inside = [cid for cid, v in zip(ids, values, strict=True) if v == name]
            outside = [cid for cid, v in zip(ids, values, strict=True) if v != name]
            if inside:
                commands.append(resp.command_of_strings("SADD", key(name), args=inside))
            if outside:
                commands.append(resp.command_of_strings("SREM", key(name), args=outside))
    return commands


@lru_cache(maxsize=1)
def _scored_at_encoder() -> resp.RowEncoder:
    return resp.RowEncoder("HSET", ("scored_at",))


def _no_guard(_values: list[bytes | None]) -> str | None:
    return None
