"""The ingest gate's rules, without Kafka or Redis."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from equilibrate.kafka.transport import Record
from equilibrate.sources.gate import IngestGate, RecentIds
from tests.factories import encode, txn


def _rec(value: bytes | None, offset: int = 0) -> Record:
    return Record("transactions", 0, offset, b"C0000001", value, 0)


def _known(ids: Sequence[str]) -> list[bool]:
    return [cid.startswith("C") for cid in ids]


def test_each_kind_of_bad_input_gets_its_reason() -> None:
    good = txn()
    bad = {
        "not_json": b"\x00\xffnot json",
        "not_an_object": b"[1, 2]",
        "bad_amount": encode(txn(amount=0)),
        "bad_direction": encode(txn(direction="sideways")),
        "bad_timestamp": encode(txn(ts="yesterday-ish")),
        "missing_customer_id": orjson.dumps({k: v for k, v in txn().items() if k != "customer_id"}),
        "unknown_customer": encode(txn("X999")),
        "duplicate_txn_id": encode(good),
        "empty_message": None,
    }
    gate = IngestGate(_known)
    records = [_rec(encode(good), 0)] + [_rec(v, i + 1) for i, v in enumerate(bad.values())]
    accepted, rejected = gate.check(records)
    assert [a.txn.txn_id for a in accepted] == [good["txn_id"]]
    assert sorted(r.reason for r in rejected) == sorted(bad)
    assert all(r.detail for r in rejected)


def test_negative_amount_and_naive_timestamp_are_rejected() -> None:
    gate = IngestGate(None)
    accepted, rejected = gate.check([_rec(encode(txn(amount=-5))), _rec(encode(txn(ts="2026-03-01T09:00:00")))])
    assert not accepted
    assert [r.reason for r in rejected] == ["bad_amount", "bad_timestamp"]


def test_duplicates_within_one_batch_and_across_batches() -> None:
    gate = IngestGate(None)
    event = encode(txn(txn_id="dup-1"))
    accepted, rejected = gate.check([_rec(event, 0), _rec(event, 1)])
    assert len(accepted) == 1 and [r.reason for r in rejected] == ["duplicate_txn_id"]
    accepted, rejected = gate.check([_rec(event, 2)])
    assert not accepted and rejected[0].reason == "duplicate_txn_id"


def test_recent_ids_forget_the_oldest_beyond_capacity() -> None:
    recent = RecentIds(capacity=3)
    recent.extend(["a", "b", "c", "d"])
    assert "a" not in recent
    assert all(x in recent for x in "bcd")
    assert len(recent) == 3


def test_recent_ids_take_a_batch_in_bulk_only_when_all_are_new_and_fit() -> None:
    recent = RecentIds(capacity=5)
    assert recent.add_all_if_new(["a", "b"])
    assert not recent.add_all_if_new(["c", "a"])  # "a" seen before: nothing changes
    assert not recent.add_all_if_new(["d", "d"])  # repeated within the batch
    assert not recent.add_all_if_new(["e", "f", "g", "h"])  # would overflow the window
    assert len(recent) == 2 and "c" not in recent and "d" not in recent
    assert recent.add_all_if_new(["c", "d", "e"]) and len(recent) == 5
