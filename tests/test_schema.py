"""The wire schema: the fast path and the model agree on every event, good or bad."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from equilibrate.errors import InvalidEventError
from equilibrate.schema import Transaction, Txn, parse_transaction
from tests.factories import txn

MUTATIONS: list[tuple[str, Any]] = [
    ("amount", "12.50"),
    ("amount", 0),
    ("amount", -1),
    ("amount", 1e12),
    ("amount", True),
    ("amount", None),
    ("amount", 7),
    ("balance_after", "-3"),
    ("balance_after", -250),
    ("ts", "2026-03-01T09:00:00+01:00"),
    ("ts", "2026-03-01T09:00:00"),
    ("ts", "2026-03-01"),
    ("ts", "01/03/2026 09:00"),
    ("ts", 1772355600),
    ("ts", "2026-03-01T09:00:00.123456Z"),
    ("ts", "2026-03-01 09:00:00Z"),
    ("txn_id", " padded "),
    ("txn_id", ""),
    ("txn_id", 42),
    ("customer_id", "C" * 65),
    ("direction", "DEBIT"),
    ("direction", "up"),
    ("category", "groceries "),
    ("category", "casino"),
    ("channel", "pigeon"),
    ("status", "pending"),
    ("currency", "GB"),
    ("currency", "gbp"),
    ("merchant", "x" * 201),
    ("schema_version", 2),
    ("schema_version", "1"),
    ("schema_version", 1.0),
    ("extra_field", "ignored"),
]


def _model(event: dict[str, Any]) -> Txn | str:
    try:
        return Transaction.model_validate(event).to_txn()
    except ValidationError:
        return "rejected"


def _fast(event: dict[str, Any]) -> Txn | str:
    try:
        return parse_transaction(orjson.dumps(event))
    except InvalidEventError:
        return "rejected"


@pytest.mark.parametrize(("field", "value"), MUTATIONS)
def test_fast_path_agrees_with_the_model(field: str, value: Any) -> None:
    event = {**txn(), field: value}
    assert _fast(event) == _model(event)


def test_agreement_on_random_combinations_and_missing_fields() -> None:
    rng = random.Random(5)
    base = txn()
    for _ in range(2000):
        event = dict(base)
        for field, value in rng.sample(MUTATIONS, rng.randint(0, 3)):
            event[field] = value
        for field in rng.sample(sorted(base), rng.randint(0, 2) if rng.random() < 0.2 else 0):
            event.pop(field)
        assert _fast(event) == _model(event), event


def test_a_good_event_round_trips() -> None:
    event = txn(amount=12.5, balance_after=-3.25)
    parsed = parse_transaction(orjson.dumps(event))
    assert parsed.amount == 12.5 and parsed.balance_after == -3.25
    assert parsed.ts.tzinfo is not None and parsed.ts.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert Transaction.model_validate(event).to_txn() == parsed


@pytest.mark.parametrize(
    "ts",
    [
        "2026-02-29T09:00:00Z",
        "2026-13-01T09:00:00Z",
        "2026-03-01T24:00:00Z",
        "2026-03-01T09:00:60Z",
        "2026-03-01T09:00:00+24:00",
        "٢٠٢٦-03-01T09:00:00Z",
        "0001-01-01T00:30:00+01:00",
    ],
)
def test_impossible_times_are_rejected_not_raised(ts: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        parse_transaction(orjson.dumps(txn(ts=ts)))
    assert info.value.reason == "bad_timestamp"


def test_absurd_balances_are_rejected() -> None:
    for balance in (1e12, -1e12, 9.3e16):
        with pytest.raises(InvalidEventError) as info:
            parse_transaction(orjson.dumps(txn(balance_after=balance)))
        assert info.value.reason == "bad_balance_after"
    assert parse_transaction(orjson.dumps(txn(balance_after=-999_999_999.99))).balance_after == -999_999_999.99
