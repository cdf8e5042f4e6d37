"""Behavioural features from rolling state, for many customers at once, as of any day.

`as_of` is a day number >= each record's `base_day`. The feature engine uses each customer's own
newest day (so the stored profile depends only on the customer's events); the risk engine's sweep
and the training-data builder pass a later day (the stream watermark, a snapshot date) and get the
windows as they stand then, with the days in between counted as days without activity.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from equilibrate.features.state import LONG, RECENT, Records

FEATURE_VERSION = "2"  # 2: pensions and benefits count as salary; salary_credits_90d
F64 = npt.NDArray[np.float64]

#: Every feature written to `customer:{id}`, in a stable order (also the model's default inputs).
FEATURES: tuple[str, ...] = (
    "days_since_salary",
    "salary_regularity",
    "salary_credits_90d",
    "income_30d",
    "income_drop_pct",
    "spend_total_7d",
    "spend_total_30d",
    "spend_essential_7d",
    "spend_essential_30d",
    "spend_discretionary_7d",
    "spend_discretionary_30d",
    "essential_share_30d",
    "discretionary_ratio_30d",
    "spend_change_pct",
    "atm_count_7d",
    "atm_amount_7d",
    "atm_spike",
    "balance",
    "balance_min_30d",
    "balance_trend_30d",
    "negative_balance_days_30d",
    "net_flow_30d",
    "failed_payments_30d",
    "failed_payments_90d",
    "payday_credits_30d",
    "gambling_30d",
    "txn_count_7d",
    "txn_count_30d",
    "days_inactive",
)
#: Features that are whole numbers by construction (counts, days, and sums of whole currency units),
#: written without decimals.
INTEGER_FEATURES = frozenset(
    {
        "days_since_salary",
        "salary_credits_90d",
        "atm_count_7d",
        "negative_balance_days_30d",
        "failed_payments_30d",
        "failed_payments_90d",
        "txn_count_7d",
        "txn_count_30d",
        "days_inactive",
        "income_30d",
        "spend_total_7d",
        "spend_total_30d",
        "spend_essential_7d",
        "spend_essential_30d",
        "spend_discretionary_7d",
        "spend_discretionary_30d",
        "atm_amount_7d",
        "net_flow_30d",
        "payday_credits_30d",
        "gambling_30d",
    }
)
MIN_WEEKLY_FLEXIBLE = 25.0  # weekly day-to-day spend below which a % change means little
ATM_BASELINE_FLOOR = 20.0  # weekly cash baseline below which a spike ratio means little


class _Windows:
    """Window sums over ring fields via cached cumulative sums (one pass per field, not per window)."""

    def __init__(self, records: Records, k: npt.NDArray[np.int64]) -> None:
        self.records = records
        self.k = k
        self._cums: dict[str, F64] = {}

    def __call__(self, name: str, start: int, stop: int) -> F64:
        """Sum of a field over days [as_of - stop + 1, as_of - start], per customer."""
        cum = self._cums.get(name)
        if cum is None:
            field = self.records[name].astype(np.float64)
            cum = np.concatenate([np.zeros((len(field), 1)), np.cumsum(field, axis=1)], axis=1)
            self._cums[name] = cum
        length = cum.shape[1] - 1
        lo = np.clip(start - self.k, 0, length)[:, None]
        hi = np.clip(stop - self.k, 0, length)[:, None]
        total: F64 = (np.take_along_axis(cum, hi, axis=1) - np.take_along_axis(cum, lo, axis=1))[:, 0]
        return total


def _ratio(num: F64, den: F64, default: float = 0.0) -> F64:
    out = np.full_like(num, default)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _daily_closes(records: Records, k: npt.NDArray[np.int64], days: int) -> tuple[F64, F64]:
    """(closing balance, lowest balance) for each of the last `days` days, newest first.

    Days without events carry the previous day's closing balance; days after the newest event
    carry the balance now; days before any known balance are NaN.
    """
    n = len(records)
    active = records["close_min"] > 0
    close = np.where(active, records["close_bal"].astype(np.float64), np.nan)
    low = np.where(active, records["min_bal"].astype(np.float64), np.nan)
    # forward-fill from older (higher age) to newer days
    idx = np.where(active, np.arange(RECENT)[None, :], RECENT)
    filled_idx = np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(n)[:, None]
    carried = np.where(filled_idx < RECENT, close[rows, np.minimum(filled_idx, RECENT - 1)], np.nan)
    day_low = np.where(active, low, carried)
    now = records["last_bal_p"].astype(np.float64) / 100.0
    age = np.arange(days)[None, :] - k[:, None]  # window position -> ring age
    in_ring = (age >= 0) & (age < RECENT)
    safe = np.clip(age, 0, RECENT - 1)
    closes = np.where(age < 0, now[:, None], np.where(in_ring, carried[rows, safe], np.nan))
    lows = np.where(age < 0, now[:, None], np.where(in_ring, day_low[rows, safe], np.nan))
    return closes, lows


def _slope(series: F64) -> F64:
    """Least-squares slope per row (units per day) over the non-NaN points; 0 with fewer than 2."""
    days = series.shape[1]
    x = -np.arange(days, dtype=np.float64)[None, :]  # newest first: older days are further back
    ok = ~np.isnan(series)
    cnt = ok.sum(axis=1)
    xs = np.where(ok, x, 0.0)
    ys = np.where(ok, series, 0.0)
    mx = _ratio(xs.sum(axis=1), cnt.astype(np.float64))
    my = _ratio(ys.sum(axis=1), cnt.astype(np.float64))
    cov = (np.where(ok, (x - mx[:, None]) * (series - my[:, None]), 0.0)).sum(axis=1)
    var = (np.where(ok, (x - mx[:, None]) ** 2, 0.0)).sum(axis=1)
    return np.where(cnt >= 2, _ratio(cov, var), 0.0)


def _salary_features(records: Records, k: npt.NDArray[np.int64], as_of: npt.NDArray[np.int64]) -> tuple[F64, F64, F64]:
    """(days since salary, regularity, days with a salary credit in 90 days). "Salary" is regular
    income: pay, pensions and benefits (schema.REGULAR_INCOME)."""
    ages = np.arange(LONG)[None, :]
    paid = (records["salary"] > 0) & (ages < (LONG - k)[:, None])
    any_paid = paid.any(axis=1)
    newest_age = np.where(any_paid, np.argmax(paid, axis=1), 0)
    history = np.minimum(as_of - records["first_day"].astype(np.int64), LONG)
    days_since = np.where(any_paid, newest_age + k, history).astype(np.float64)
    # regularity: 1 - coefficient of variation of the gaps between pay days (1 = like clockwork)
    big = 10 * LONG
    marked = np.where(paid, ages, big)
    next_older = np.minimum.accumulate(marked[:, ::-1], axis=1)[:, ::-1]
    next_older = np.concatenate([next_older[:, 1:], np.full((len(records), 1), big)], axis=1)
    has_gap = paid & (next_older < big)
    gaps = np.where(has_gap, next_older - ages, 0).astype(np.float64)
    count = has_gap.sum(axis=1).astype(np.float64)
    mean = _ratio(gaps.sum(axis=1), count)
    var = _ratio((np.where(has_gap, (gaps - mean[:, None]) ** 2, 0.0)).sum(axis=1), count)
    regularity = np.where(count >= 2, np.clip(1.0 - _ratio(np.sqrt(var), mean), 0.0, 1.0), 0.0)
    return days_since, regularity, paid.sum(axis=1).astype(np.float64)


def compute(records: Records, as_of: npt.NDArray[np.int64] | None = None) -> dict[str, F64]:
    """Every feature in FEATURES for each record, as of `as_of` (default: each record's newest day)."""
    base = records["base_day"].astype(np.int64)
    as_of = base if as_of is None else np.maximum(as_of.astype(np.int64), base)
    k = as_of - base
    w = _Windows(records, k)
    f: dict[str, F64] = {}
    f["days_since_salary"], f["salary_regularity"], f["salary_credits_90d"] = _salary_features(records, k, as_of)
    income = w("salary", 0, 30) + w("income_other", 0, 30)
    income_prev = w("salary", 30, 90) + w("income_other", 30, 90)
    history_days = np.minimum(as_of - records["first_day"].astype(np.int64) + 1, LONG)
    months_before = np.clip((history_days - 30) / 30.0, 0, 2)
    prev_avg = _ratio(income_prev, months_before)
    f["income_30d"] = income
    f["income_drop_pct"] = np.where(months_before >= 1, np.clip(_ratio(prev_avg - income, prev_avg) * 100, 0, 100), 0)

    def spend(start: int, stop: int) -> tuple[F64, F64, F64]:
        ess = w("essential", start, stop)
        disc = w("discretionary", start, stop)
        total = ess + disc + w("other_debit", start, stop) + w("atm_amt", start, stop)
        return total, ess, disc

    f["spend_total_7d"], f["spend_essential_7d"], f["spend_discretionary_7d"] = spend(0, 7)
    f["spend_total_30d"], f["spend_essential_30d"], f["spend_discretionary_30d"] = spend(0, 30)
    f["essential_share_30d"] = _ratio(f["spend_essential_30d"], f["spend_total_30d"])
    f["discretionary_ratio_30d"] = np.minimum(
        _ratio(f["spend_discretionary_30d"], f["spend_essential_30d"], default=0.0), 10.0
    )

    # Day-to-day spending (discretionary and cash): monthly bills land in some weeks and not others,
    # so a week compared with the four before says little when they are counted in.
    def flexible(start: int, stop: int) -> F64:
        return w("discretionary", start, stop) + w("atm_amt", start, stop)

    prev_week = flexible(7, 35) / 4.0
    change = _ratio(flexible(0, 7) - prev_week, prev_week) * 100
    f["spend_change_pct"] = np.where(prev_week >= MIN_WEEKLY_FLEXIBLE, np.clip(change, -100, 1000), 0.0)

    f["atm_count_7d"] = w("atm_cnt", 0, 7)
    f["atm_amount_7d"] = w("atm_amt", 0, 7)
    baseline = w("atm_amt", 7, LONG) / ((LONG - 7) / 7.0)
    f["atm_spike"] = f["atm_amount_7d"] / np.maximum(baseline, ATM_BASELINE_FLOOR)

    closes, lows = _daily_closes(records, k, 30)
    f["balance"] = records["last_bal_p"].astype(np.float64) / 100.0
    f["balance_min_30d"] = np.where(
        np.isnan(lows).all(axis=1), f["balance"], np.nanmin(np.where(np.isnan(lows), np.inf, lows), axis=1)
    )
    f["balance_trend_30d"] = _slope(closes)
    f["negative_balance_days_30d"] = (np.nan_to_num(lows, nan=0.0) < 0).sum(axis=1).astype(np.float64)
    credits = income + w("payday", 0, 30)
    f["net_flow_30d"] = credits - f["spend_total_30d"]

    f["failed_payments_30d"] = w("failed", 0, 30)
    f["failed_payments_90d"] = w("failed", 0, LONG)
    f["payday_credits_30d"] = w("payday", 0, 30)
    f["gambling_30d"] = w("gambling", 0, 30)
    f["txn_count_7d"] = w("txn_cnt", 0, 7)
    f["txn_count_30d"] = w("txn_cnt", 0, 30)
    f["days_inactive"] = k.astype(np.float64)
    return f


#: Every field the feature engine writes to `customer:{id}`, in the order of `format_profiles` rows.
PROFILE_FIELDS: tuple[str, ...] = (*FEATURES, "last_txn_ts", "updated_at", "feature_version")


def format_profiles(
    records: Records,
    feats: dict[str, F64],
    updated_at: datetime | None = None,
) -> list[list[object]]:
    """Each customer's profile values, in PROFILE_FIELDS order (for HSET).

    Values are native ints and floats rounded to 2 decimals; Redis stores their shortest repr.
    """
    n = len(records)
    table = np.empty((n, len(PROFILE_FIELDS)), dtype=object)
    for j, name in enumerate(FEATURES):
        values = feats[name]
        if name in INTEGER_FEATURES:
            table[:, j] = values.astype(np.int64)
        else:
            table[:, j] = np.round(np.nan_to_num(values), 2) + 0.0
    j = len(FEATURES)
    seconds = (records["last_ms"] // 1000).astype("datetime64[s]")
    table[:, j] = np.char.add(np.datetime_as_string(seconds, unit="s"), "Z").tolist()
    table[:, j + 1] = (updated_at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    table[:, j + 2] = FEATURE_VERSION
    rows: list[list[object]] = table.tolist()
    return rows
