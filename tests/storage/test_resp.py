"""Hand-encoded RESP equals what Redis expects: checked against a real server."""

from __future__ import annotations

import pytest
import redis

from equilibrate.storage import resp


def test_encode_many_equals_row_by_row() -> None:
    enc = resp.RowEncoder("HSET", ["a", "b_long_name", "pct%"])
    rows = [[1, 2.5, "x"], [-0.75, 10**12, "2026-01-01T00:00:00Z"], [0, 0.0, ""]]
    keys = ["customer:C1", "customer:Ü2", "customer:C3"]
    assert enc.encode_many(keys, rows) == b"".join(enc.encode(k, r) for k, r in zip(keys, rows, strict=True))
    assert enc.encode_many([], []) == b""


def test_a_fenced_transaction_writes_everything_or_nothing(redis_client: redis.Redis) -> None:
    enc = resp.RowEncoder("HSET", ["spend", "note"])
    payload = enc.encode_many(["h:1", "h:2"], [[12.5, "a"], [0, "Ω"]])
    resp.fenced_transaction(
        redis_client, ["fence"], lambda v: None, [payload, resp.command("SET", "fence", 7)], count=3
    )
    assert redis_client.hgetall("h:1") == {b"spend": b"12.5", b"note": b"a"}
    assert redis_client.hget("h:2", "note") == "Ω".encode()
    with pytest.raises(resp.TransactionAborted):
        resp.fenced_transaction(
            redis_client, ["fence"], lambda v: None if v == [b"6"] else "moved on", [resp.command("SET", "h:3", 1)]
        )
    assert not redis_client.exists("h:3")
