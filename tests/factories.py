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


_CATS = [
    ("groceries", "debit"),
    ("dining", "debit"),
    ("rent", "debit"),
    ("utilities", "debit"),
    ("atm_withdrawal", "debit"),
    ("shopping", "debit"),
    ("gambling", "debit"),
    ("transfer_out", "debit"),
    ("fee", "debit"),
    ("loan_repayment", "debit"),
    ("transfer_in", "credit"),
    ("payday_loan", "credit"),
]


def varied_stream(
    customers: int, days: int, *, seed: int = 1, start: datetime = T0, late_fraction: float = 0.05
) -> list[dict[str, Any]]:
    """Mixed categories with balances, salaries, failures, late (out-of-order) and very late events.

    Returned in arrival order: mostly event-time order, with `late_fraction` of events arriving up
    to 10 days late and a few arriving more than 90 days late (too old for the windows).
    """
    import random

    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for c in range(customers):
        cid = f"C{c:07d}"
        balance = rng.uniform(-200, 3000)
        for d in range(days):
            day = start + timedelta(days=d)
            if d % 30 == c % 30:
                balance += 1800
                events.append(
                    txn(
                        cid,
                        at=day + timedelta(hours=7),
                        amount=1800.0,
                        direction="credit",
                        category="salary",
                        balance_after=round(balance, 2),
                        txn_id=f"S{seed}-{c}-{d}",
                    )
                )
            for j in range(rng.randint(0, 4)):
                cat, direction = rng.choice(_CATS)
                amount = round(rng.uniform(1, 250), 2)
                status = "failed" if cat == "loan_repayment" and balance < 100 else "ok"
                if status == "ok":
                    balance += amount if direction == "credit" else -amount
                events.append(
                    txn(
                        cid,
                        at=day + timedelta(hours=8 + j * 3, minutes=rng.randint(0, 59)),
                        amount=amount,
                        direction=direction,
                        category=cat,
                        status=status,
                        balance_after=round(balance, 2),
                        txn_id=f"E{seed}-{c}-{d}-{j}",
                    )
                )
    events.sort(key=lambda e: (e["ts"], e["txn_id"]))
    arrival = []
    held: list[tuple[int, dict[str, Any]]] = []
    for i, e in enumerate(events):
        if rng.random() < late_fraction:
            held.append((i + rng.randint(5, 40 * customers), e))
        else:
            arrival.append(e)
        while held and held[0][0] <= i:
            arrival.append(held.pop(0)[1])
        held.sort(key=lambda h: h[0])
    arrival += [e for _, e in held]
    if days > 100:  # a couple of events far older than the 90-day window, arriving at the end
        for c in range(min(customers, 3)):
            arrival.append(
                txn(
                    f"C{c:07d}",
                    at=start + timedelta(days=1, hours=13),
                    amount=77.0,
                    category="shopping",
                    balance_after=1.0,
                    txn_id=f"OLD{seed}-{c}",
                )
            )
    return arrival
