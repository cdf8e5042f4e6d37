"""Small builders of valid wire events for tests (independent of the simulator)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from equilibrate.schema import SCHEMA_VERSION, format_ts

_ids = itertools.count(1)
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def txn(
    customer_id: str = "C0000001",
    *,
    at: datetime | None = None,
    amount: float = 12.5,
    direction: str = "debit",
    category: str = "groceries",
    balance_after: float = 500.0,
    status: str = "ok",
    txn_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "txn_id": txn_id or f"T{next(_ids):09d}",
        "customer_id": customer_id,
        "ts": format_ts(at or T0),
        "amount": amount,
        "direction": direction,
        "category": category,
        "channel": "card",
        "merchant": "Test Stores",
        "balance_after": balance_after,
        "currency": "GBP",
        "status": status,
        "schema_version": SCHEMA_VERSION,
        **extra,
    }


def stream(
    customers: int, per_customer: int, *, start: datetime = T0, step: timedelta = timedelta(hours=7), prefix: str = "T"
) -> list[dict[str, Any]]:
    """Interleaved events over several days for `customers` customers, in event-time order."""
    out = []
    for i in range(per_customer):
        for c in range(customers):
            out.append(
                txn(
                    f"C{c:07d}",
                    at=start + step * i + timedelta(minutes=c),
                    amount=10.0 + (i * 7 + c) % 90,
                    txn_id=f"{prefix}{c:05d}-{i:05d}",
                    direction="credit" if i % 10 == 0 else "debit",
                    category="salary" if i % 10 == 0 else "groceries",
                )
            )
    return out


def encode(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)
