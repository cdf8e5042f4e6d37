"""Rolling state and features on hand-made histories, where the right answer is known."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from equilibrate.features.compute import FEATURES, PROFILE_FIELDS, compute, format_profiles
from equilibrate.features.state import apply_events, new_records, pack, to_arrays, unpack_many
from equilibrate.schema import Txn, parse_transaction
from tests.factories import encode, stream, txn

DAY0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _t(day: int, *, hour: int = 12, **kw: Any) -> Txn:
    return parse_transaction(encode(txn(at=DAY0 + timedelta(days=day, hours=hour - 12), **kw)))


def _fold(txns: list[Txn], batch: int = 10_000) -> tuple[np.ndarray, int, list[str]]:
    ids = sorted({t.customer_id for t in txns})
    index = {c: i for i, c in enumerate(ids)}
    records = new_records(len(ids))
    late = 0
    for start in range(0, len(txns), batch):
        part = txns[start : start + batch]
        late += apply_events(records, to_arrays(part, [index[t.customer_id] for t in part]))
    return records, late, ids


def _features(txns: list[Txn], as_of_day: int | None = None) -> dict[str, float]:
    records, _, _ = _fold(txns)
    as_of = None if as_of_day is None else np.array([(DAY0.date().toordinal() - 719163) + as_of_day])
    return {k: float(v[0]) for k, v in compute(records, as_of).items()}


def _salary_history(
    days: int, monthly: float = 2000.0, stop_after: int | None = None, category: str = "salary"
) -> list[Txn]:
    out = []
    for d in range(days):
        if d % 30 == 0 and (stop_after is None or d < stop_after):
            out.append(_t(d, hour=8, amount=monthly, direction="credit", category=category, balance_after=2500))
        out.append(_t(d, amount=40, category="groceries", balance_after=2400 - d))
        if d % 3 == 0:
            out.append(_t(d, hour=19, amount=25, category="dining", balance_after=2380 - d))
    return out


def test_windows_sum_the_right_days() -> None:
    f = _features(_salary_history(90))
    assert f["spend_essential_7d"] == 7 * 40
    assert f["spend_essential_30d"] == 30 * 40
    assert f["spend_discretionary_7d"] == 25 * len([d for d in range(83, 90) if d % 3 == 0])
    assert f["spend_total_30d"] == f["spend_essential_30d"] + f["spend_discretionary_30d"]
    assert f["txn_count_7d"] == 7 + len([d for d in range(83, 90) if d % 3 == 0])
    assert f["days_since_salary"] == 89 - 60
    assert f["salary_regularity"] == pytest.approx(1.0)
    assert f["income_30d"] == 2000
    assert f["income_drop_pct"] == 0
    assert f["essential_share_30d"] == pytest.approx(1200 / f["spend_total_30d"], abs=0.01)


def test_pensions_and_benefits_count_as_salary_but_other_credits_do_not() -> None:
    benefits = _features(_salary_history(90, category="benefits"))
    assert benefits["days_since_salary"] == 89 - 60
    assert benefits["salary_credits_90d"] == 3
    assert benefits["income_30d"] == 2000
    transfers = _features(_salary_history(90, category="transfer_in"))
    assert transfers["salary_credits_90d"] == 0
    assert transfers["days_since_salary"] == 89  # never seen: the whole history (days since the first event)
    assert transfers["income_30d"] == 2000  # still income


def test_income_shock_shows_as_salary_gap_and_income_drop() -> None:
    f = _features(_salary_history(90, stop_after=45))
    assert f["days_since_salary"] == 89 - 30
    assert f["salary_credits_90d"] == 2  # days 0 and 30
    assert f["income_30d"] == 0
    assert f["income_drop_pct"] == 100


def test_time_based_features_move_with_the_watermark() -> None:
    history = _salary_history(60)
    now = _features(history)
    later = _features(history, as_of_day=59 + 20)
    assert later["days_inactive"] == 20 and now["days_inactive"] == 0
    assert later["days_since_salary"] == now["days_since_salary"] + 20
    assert later["spend_total_7d"] == 0  # nothing happened in the last week
    assert later["txn_count_30d"] < now["txn_count_30d"]


def test_out_of_order_events_land_on_their_own_day_and_too_old_ones_are_dropped() -> None:
    base = [_t(d, amount=10, balance_after=100) for d in range(100)]
    late_in_window = _t(95, amount=500, category="atm_withdrawal", balance_after=50)
    too_old = _t(5, amount=999, category="atm_withdrawal", balance_after=50)
    records, late, _ = _fold([*base, late_in_window, too_old], batch=30)
    f = {k: float(v[0]) for k, v in compute(records).items()}
    assert late == 1
    assert f["atm_amount_7d"] == 500 and f["atm_count_7d"] == 1
    assert f["balance"] == 100  # the newest event decides the balance, not the last to arrive


def test_cash_spike_negative_days_failed_payments_and_credit_stress() -> None:
    quiet = [_t(d, amount=20, category="atm_withdrawal", balance_after=300) for d in range(0, 80, 14)]
    stressed = [_t(d, amount=60, category="atm_withdrawal", balance_after=-40 - d) for d in range(83, 90)]
    extras = [
        _t(84, amount=150, category="loan_repayment", status="failed", balance_after=-45),
        _t(86, amount=300, direction="credit", category="payday_loan", balance_after=200),
        _t(87, amount=35, category="gambling", balance_after=165),
    ]
    f = _features(quiet + stressed + extras)
    assert f["atm_count_7d"] == 7 and f["atm_amount_7d"] == 420
    assert f["atm_spike"] > 5
    assert f["failed_payments_30d"] == 1 and f["failed_payments_90d"] == 1
    assert f["payday_credits_30d"] == 300
    assert f["gambling_30d"] == 35 and f["spend_discretionary_30d"] == 35
    assert f["negative_balance_days_30d"] >= 4
    assert f["balance_min_30d"] <= -129
    assert f["spend_essential_30d"] == 0  # a failed payment moves no money


def test_balance_trend_is_the_daily_slope() -> None:
    falling = [_t(d, amount=5, balance_after=1000 - 10 * d) for d in range(40)]
    f = _features(falling)
    assert f["balance_trend_30d"] == pytest.approx(-10, abs=0.5)
    assert f["balance_min_30d"] == pytest.approx(1000 - 10 * 39, abs=1)


def test_fold_is_independent_of_order_and_batching() -> None:
    events = [parse_transaction(encode(e)) for e in stream(30, 120)]
    a, _, _ = _fold(events, batch=5_000)
    shuffled = events[:]
    random.Random(7).shuffle(shuffled)
    b, _, _ = _fold(shuffled, batch=97)
    assert a.tobytes() == b.tobytes()


def test_pack_round_trip_and_profile_fields() -> None:
    records, _, _ = _fold(_salary_history(90))
    again = unpack_many([pack(records[0]), None])
    assert again[0].tobytes() == records[0].tobytes()
    assert again[1]["last_ms"] == -1
    row = format_profiles(records, compute(records))[0]
    fields = dict(zip(PROFILE_FIELDS, row, strict=True))
    assert set(FEATURES) <= set(fields)
    assert {"last_txn_ts", "updated_at", "feature_version"} <= set(fields)
    assert len(pack(records[0])) < 1000
