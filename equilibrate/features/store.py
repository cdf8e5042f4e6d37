"""Redis layout of the feature engine, and its one atomic write per batch.

    customer:{id}                          HASH   live profile (features; other components add fields)
    cstate:{id}                            STRING packed rolling state (features/state.py)
    eq:features:offset:{topic}:{partition} STRING next offset to consume (the engine's own offsets)
    eq:features:watermark                  HASH   {topic}:{partition} -> newest event time (ms) seen
    eq:dirty                               SET    customers whose profile changed (risk engine takes them)
    eq:features:stats                      HASH   counters (events, late events dropped, fenced batches)

A batch's state, profiles, dirty marks, watermarks and offsets are written in one MULTI/EXEC.
The offset keys of the batch's partitions are WATCHed and checked against what this process last
wrote: if another process took the partition over and wrote first, the transaction is refused
(`FencedError`) and this process drops the batch instead of applying it twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import redis

from equilibrate.errors import EquilibrateError
from equilibrate.features.compute import PROFILE_FIELDS
from equilibrate.kafka.transport import TopicPartition
from equilibrate.storage import resp

STATE_PREFIX = "cstate:"
PROFILE_PREFIX = "customer:"
OFFSET_PREFIX = "eq:features:offset:"
WATERMARK_KEY = "eq:features:watermark"
DIRTY_KEY = "eq:dirty"
STATS_KEY = "eq:features:stats"


class FencedError(EquilibrateError):
    """Another engine process wrote this partition's offsets first: this batch must not land."""


def state_key(customer_id: str) -> str:
    return STATE_PREFIX + customer_id


def profile_key(customer_id: str) -> str:
    return PROFILE_PREFIX + customer_id


def offset_key(tp: TopicPartition) -> str:
    return f"{OFFSET_PREFIX}{tp[0]}:{tp[1]}"


def read_offsets(client: redis.Redis, parts: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]:
    if not parts:
        return {}
    values = client.mget([offset_key(tp) for tp in parts])
    return {tp: (int(v) if v is not None else None) for tp, v in zip(parts, values, strict=True)}


def load_states(client: redis.Redis, customer_ids: Sequence[str]) -> list[bytes | None]:
    if not customer_ids:
        return []
    return [
        b if isinstance(b, bytes) or b is None else b.encode()
        for b in client.mget([state_key(c) for c in customer_ids])
    ]


def watermark_ms(client: redis.Redis) -> int | None:
    """The stream watermark: the newest event time any partition has delivered."""
    return watermark_of(client.hvals(WATERMARK_KEY))


def watermark_of(values: Iterable[bytes | str]) -> int | None:
    """The watermark from the values of WATERMARK_KEY (one per partition), for a caller that read them."""
    return max((int(v) for v in values), default=None)


@dataclass
class BatchWrite:
    """Everything one consumed batch changes, written together or not at all."""

    customer_ids: list[str] = field(default_factory=list)
    blobs: list[bytes] = field(default_factory=list)
    profiles: list[list[object]] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)  # next offset per partition
    expected: dict[TopicPartition, int | None] = field(default_factory=dict)  # what we last wrote
    watermarks: dict[TopicPartition, int] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)


@dataclass
class PreparedCommit:
    """A batch encoded for its MULTI/EXEC: built on the engine's thread, sent by the writer."""

    watch: list[str]
    expected: list[int | None]
    commands: list[bytes]
    count: int

    def guard(self, current: list[bytes | None]) -> str | None:
        for key, value, expected in zip(self.watch, current, self.expected, strict=True):
            if (None if value is None else int(value)) != expected:
                return f"{key} is at {value!r}, this process expected {expected}: another process owns it"
        return None


def prepare_commit(batch: BatchWrite) -> PreparedCommit:
    """Encode every write of the batch (CPU only, no I/O)."""
    commands, count = _profile_commands(batch.customer_ids, batch.blobs, batch.profiles)
    extra = _position_commands(batch.offsets, batch.watermarks)
    extra += [resp.command("HINCRBY", STATS_KEY, name, n) for name, n in batch.stats.items() if n]
    return PreparedCommit(
        watch=[offset_key(tp) for tp in batch.offsets],
        expected=[batch.expected.get(tp) for tp in batch.offsets],
        commands=commands + extra,
        count=count + len(extra),
    )


def send_commit(client: redis.Redis, prepared: PreparedCommit) -> None:
    """One MULTI/EXEC, fenced on the partitions' offsets (I/O only). Raises FencedError."""
    try:
        resp.fenced_transaction(client, prepared.watch, prepared.guard, prepared.commands, prepared.count)
    except resp.TransactionAborted as exc:
        raise FencedError(str(exc)) from None


def commit_batch(client: redis.Redis, batch: BatchWrite) -> None:
    """Write one batch in one MULTI/EXEC, fenced on the partitions' offsets. Raises FencedError."""
    send_commit(client, prepare_commit(batch))


def _profile_commands(
    customer_ids: Sequence[str], blobs: Sequence[bytes], profiles: Sequence[Sequence[object]]
) -> tuple[list[bytes], int]:
    """The batch's profile writes as RESP: one HSET per customer, one MSET of states, one SADD."""
    if not customer_ids:
        return [], 0
    hsets = _profile_encoder().encode_many([PROFILE_PREFIX + cid for cid in customer_ids], profiles)
    states = resp.command(
        "MSET", *(x for cid, blob in zip(customer_ids, blobs, strict=True) for x in (STATE_PREFIX + cid, blob))
    )
    return [hsets, states, resp.command("SADD", DIRTY_KEY, *customer_ids)], len(customer_ids) + 2


@lru_cache(maxsize=1)
def _profile_encoder() -> resp.RowEncoder:
    return resp.RowEncoder("HSET", PROFILE_FIELDS)


def _position_commands(offsets: dict[TopicPartition, int], watermarks: dict[TopicPartition, int]) -> list[bytes]:
    # Watermarks only move forward; each partition has one writer, guarded by the offset fence.
    out = []
    if offsets:
        out.append(resp.command("MSET", *(x for tp, off in offsets.items() for x in (offset_key(tp), off))))
    if watermarks:
        out.append(
            resp.command("HSET", WATERMARK_KEY, *(x for (t, p), ms in watermarks.items() for x in (f"{t}:{p}", ms)))
        )
    return out


def write_rebuilt(
    client: redis.Redis,
    customer_ids: Sequence[str],
    blobs: Sequence[bytes],
    profiles: Sequence[Sequence[object]],
    chunk: int = 2_000,
) -> None:
    """Batch path: write rebuilt profiles in chunks (one MULTI/EXEC each, not one huge one)."""
    for start in range(0, len(customer_ids), chunk):
        end = start + chunk
        commands, count = _profile_commands(customer_ids[start:end], blobs[start:end], profiles[start:end])
        resp.fenced_transaction(client, [], _no_guard, commands, count)


def set_positions(
    client: redis.Redis, offsets: dict[TopicPartition, int], watermarks: dict[TopicPartition, int]
) -> None:
    commands = _position_commands(offsets, watermarks)
    if commands:
        resp.fenced_transaction(client, [], _no_guard, commands)


def _no_guard(_values: list[bytes | None]) -> str | None:
    return None


def take_dirty(client: redis.Redis, count: int) -> list[str]:
    """Atomically remove and return up to `count` changed customers (for the risk engine)."""
    popped = client.spop(DIRTY_KEY, count)
    ids: list[bytes | str] = list(popped) if isinstance(popped, list) else []
    return sorted(x.decode() if isinstance(x, bytes) else x for x in ids)


def read_profiles(client: redis.Redis, customer_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    ids = list(customer_ids)
    with client.pipeline(transaction=False) as pipe:
        for cid in ids:
            pipe.hgetall(profile_key(cid))
        rows = pipe.execute()
    return {cid: {k.decode(): v.decode() for k, v in row.items()} for cid, row in zip(ids, rows, strict=True)}
