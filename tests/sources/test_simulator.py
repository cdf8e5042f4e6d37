"""The simulator: persona signatures over 90 days, wire validity, balances, reproducibility (pure)."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from equilibrate.errors import ConfigError
from equilibrate.schema import DISCRETIONARY, ESSENTIAL, Category, Channel, Direction, Status, parse_transaction
from equilibrate.sources.customers import Customer, GroundTruth, generate_customers
from equilibrate.sources.personas import DEFAULT_MIX, DistressWindow, Persona, assign_personas
from equilibrate.sources.simulator import CATEGORIES, CHANNELS, DayBatch, Simulator, _settle

SEED = 42
START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 90
# Distress starts early enough that most of it is inside the 90 days we watch.
WINDOW = DistressWindow(first_day=5, last_day=35)
NEVER = 10**9


@dataclass
class History:
    customers: list[Customer]
    truth: list[GroundTruth]
    sim: Simulator
    batches: list[DayBatch]
    cust: np.ndarray
    day: np.ndarray
    amount: np.ndarray
    credit: np.ndarray
    category: np.ndarray
    channel: np.ndarray
    merchant: np.ndarray
    balance: np.ndarray
    failed: np.ndarray
    persona: np.ndarray  # per customer
    start: np.ndarray  # per customer, NEVER for Stable
    recovery: np.ndarray  # per customer, NEVER when it does not recover

    def cat(self, *categories: Category) -> np.ndarray:
        return np.isin(self.category, [CATEGORIES.index(c) for c in categories])

    def who(self, persona: Persona) -> np.ndarray:
        return np.flatnonzero(self.persona == persona.value)

    def distressed_now(self) -> np.ndarray:
        now: np.ndarray = (self.day >= self.start[self.cust]) & (self.day < self.recovery[self.cust])
        return now

    def per_customer(self, mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        w = None if weights is None else weights[mask]
        return np.bincount(self.cust[mask], weights=w, minlength=len(self.customers))


@pytest.fixture(scope="module")
def history() -> History:
    customers = generate_customers(2_000, SEED)
    truth = assign_personas(customers, SEED, window=WINDOW)
    sim = Simulator(customers, SEED, START, truth)
    batches = list(sim.days(DAYS))

    def col(name: str) -> np.ndarray:
        return np.concatenate([getattr(b, name) for b in batches])

    return History(
        customers=customers, truth=truth, sim=sim, batches=batches, cust=col("customer"),
        day=np.concatenate([np.full(len(b), b.day) for b in batches]), amount=col("amount"), credit=col("credit"),
        category=col("category"), channel=col("channel"), merchant=col("merchant"), balance=col("balance"),
        failed=col("failed"), persona=np.array([t.persona for t in truth]),
        start=np.array([NEVER if t.distress_start_day is None else t.distress_start_day for t in truth]),
        recovery=np.array([NEVER if t.recovery_day is None else t.recovery_day for t in truth]),
    )  # fmt: skip


# -- personas -------------------------------------------------------------------------------------
def test_persona_mix_is_exact_and_income_shock_hits_earners(history: History) -> None:
    counts = Counter(history.persona.tolist())
    assert {Persona(p): c / len(history.customers) for p, c in counts.items()} == pytest.approx(DEFAULT_MIX)
    for i in history.who(Persona.INCOME_SHOCK):
        assert history.customers[i].employment in {"employed", "self_employed", "contract"}
    with pytest.raises(ConfigError, match="summing to 1"):
        assign_personas(history.customers, SEED, mix={Persona.STABLE: 0.5})
    with pytest.raises(ConfigError, match="day 1 or later"):
        assign_personas(history.customers, SEED, window=DistressWindow(first_day=0))


def test_distress_starts_are_spread_and_never_day_zero(history: History) -> None:
    for truth in (history.truth, assign_personas(history.customers, SEED)):  # the test window and the default
        starts = np.array([t.distress_start_day for t in truth if t.persona != "stable"])
        assert (starts >= 5).all()
        assert len(np.unique(starts)) >= 25 and starts.std() > 7
        for t in truth:
            assert (t.persona == "stable") == (t.distress_start_day is None)
            if t.recovery_day is not None:
                assert t.distress_start_day is not None and t.recovery_day > t.distress_start_day


def test_income_shock_salary_stops_while_bills_continue(history: History) -> None:
    h = history
    shock = np.isin(h.cust, h.who(Persona.INCOME_SHOCK))
    salary = shock & h.cat(Category.SALARY)
    paid_before = np.unique(h.cust[salary & (h.day < h.start[h.cust])])
    assert len(paid_before) > 60
    assert not (salary & h.distressed_now()).any()  # no salary at all while in distress
    # Essential bills keep being collected (paid or returned) after the salary stops.
    watched = [c for c in paid_before if h.start[c] + 35 < DAYS]
    rent_after = h.per_customer(shock & h.cat(Category.RENT) & (h.day >= h.start[h.cust]))
    assert np.mean(rent_after[watched] > 0) > 0.95
    # Cash use rises and savings are drained.
    ids = h.who(Persona.INCOME_SHOCK)
    days_in = (np.minimum(h.recovery[ids], DAYS) - h.start[ids]).clip(0).sum()
    days_before = np.minimum(h.start[ids], DAYS).sum()
    atm = shock & h.cat(Category.ATM_WITHDRAWAL)
    assert (atm & h.distressed_now()).sum() / days_in > 1.8 * (atm & (h.day < h.start[h.cust])).sum() / days_before
    from_savings = shock & (h.merchant == h.sim.merchants.index("Transfer from savings"))
    drained_in = h.amount[from_savings & h.distressed_now()].sum() / days_in
    drained_before = h.amount[from_savings & (h.day < h.start[h.cust])].sum() / days_before
    assert drained_in > 2.5 * drained_before


def test_silent_drain_erodes_the_balance(history: History) -> None:
    h = history
    ids = [c for c in h.who(Persona.SILENT_DRAIN) if h.start[c] + 60 <= DAYS and h.recovery[c] >= h.start[c] + 60]
    assert len(ids) >= 30
    lower = []
    spend = {name: np.zeros(2) for name in ("before", "first", "last")}  # essential, essential + discretionary
    cash = {name: np.zeros(3) for name in ("before", "first", "last")}  # withdrawals, amount, customer-days
    ok = ~h.failed
    for c in ids:
        mine, start = h.cust == c, h.start[c]
        windows = {
            "before": mine & (h.day < start),
            "first": mine & (h.day >= start) & (h.day < start + 30),
            "last": mine & (h.day >= start + 30) & (h.day < start + 60),
        }
        lower.append(h.balance[windows["last"]].mean() < h.balance[windows["first"]].mean())
        for name, window in windows.items():
            spend[name] += [h.amount[window & ok & h.cat(*ESSENTIAL)].sum(),
                            h.amount[window & ok & h.cat(*ESSENTIAL, *DISCRETIONARY)].sum()]  # fmt: skip
            atm = window & h.cat(Category.ATM_WITHDRAWAL)
            cash[name] += [atm.sum(), h.amount[atm].sum(), start if name == "before" else 30]
    assert np.mean(lower) > 0.7  # the balance erodes
    share = {name: v[0] / v[1] for name, v in spend.items()}
    assert share["before"] < share["first"] < share["last"]  # essentials take a growing share
    per_day = {name: v[0] / v[2] for name, v in cash.items()}
    size = {name: v[1] / v[0] for name, v in cash.items()}
    assert per_day["last"] > 2 * per_day["before"]  # more cash withdrawals...
    assert size["last"] < 0.8 * size["before"]  # ...of smaller amounts


def test_overspenders_spend_more_on_wants_than_needs_and_borrow(history: History) -> None:
    h = history
    ok = ~h.failed & h.distressed_now()
    disc = h.per_customer(ok & h.cat(*DISCRETIONARY), h.amount.astype(float))
    ess = h.per_customer(ok & h.cat(*ESSENTIAL), h.amount.astype(float))
    over = h.who(Persona.OVERSPENDER)
    assert np.mean(disc[over] > ess[over]) > 0.7
    stable = h.who(Persona.STABLE)
    all_ok = ~h.failed
    disc_all = h.per_customer(all_ok & h.cat(*DISCRETIONARY), h.amount.astype(float))
    ess_all = h.per_customer(all_ok & h.cat(*ESSENTIAL), h.amount.astype(float))
    assert np.median(disc_all[stable] / ess_all[stable]) < 0.7
    payday = h.per_customer(h.cat(Category.PAYDAY_LOAN))
    assert np.mean(payday[over] > 0) > 0.3 > 10 * np.mean(payday[stable] > 0)


def test_failed_payments_concentrate_in_distressed_personas(history: History) -> None:
    h = history
    missed = h.failed & h.cat(Category.LOAN_REPAYMENT, Category.CARD_REPAYMENT)
    per_customer = h.per_customer(missed)
    stable = h.who(Persona.STABLE)
    distressed = np.flatnonzero(h.persona != Persona.STABLE.value)
    assert np.mean(per_customer[stable] == 0) > 0.95  # Stable customers mostly never miss one
    assert per_customer[stable].sum() > 0  # ...but the ground truth is noisy
    assert per_customer[distressed].mean() > 10 * per_customer[stable].mean()
    for persona in (Persona.OVERSPENDER, Persona.INCOME_SHOCK, Persona.SILENT_DRAIN):
        assert per_customer[h.who(persona)].mean() > 3 * per_customer[stable].mean(), persona
    after_start = (missed & (h.day >= h.start[h.cust])).sum()
    assert after_start / (missed & np.isin(h.cust, distressed)).sum() > 0.8


def test_some_distressed_customers_recover(history: History) -> None:
    h = history
    recovered = [c for c in h.who(Persona.INCOME_SHOCK) if h.recovery[c] <= DAYS - 20]
    salary = h.cat(Category.SALARY)
    salaried = [c for c in recovered if (salary & (h.cust == c) & (h.day < h.start[h.cust])).any()]
    assert len(salaried) >= 10
    resumed = [c for c in salaried if (salary & (h.cust == c) & (h.day >= h.recovery[c])).any()]
    assert len(resumed) / len(salaried) > 0.8
    # Overspenders who recover rein their spending back in.
    over = np.array([c for c in h.who(Persona.OVERSPENDER) if h.recovery[c] <= DAYS - 20])
    assert len(over) >= 20
    wants = np.isin(h.cust, over) & h.cat(*DISCRETIONARY) & ~h.failed
    during = h.amount[wants & h.distressed_now()].sum() / (h.recovery[over] - h.start[over]).sum()
    after = h.amount[wants & (h.day >= h.recovery[h.cust])].sum() / (DAYS - h.recovery[over]).sum()
    assert after < 0.75 * during
    never = sum(1 for t in h.truth if t.persona != "stable" and t.recovery_day is None)
    assert never > sum(1 for t in h.truth if t.recovery_day is not None) > 0


def test_monthly_pay_arrives_every_month_even_when_payday_is_a_weekend(history: History) -> None:
    h = history
    paid = h.per_customer(h.cat(Category.SALARY, Category.BENEFITS))
    stable_earners = [
        c for c in h.who(Persona.STABLE) if h.customers[c].employment in {"employed", "contract", "retired"}
    ]
    assert min(paid[stable_earners]) >= 2  # three months: never a missed month for Stable customers


# -- the wire -------------------------------------------------------------------------------------
def test_every_event_validates_with_consistent_balances_and_unique_ids(history: History) -> None:
    h = history
    last: dict[str, float] = {}
    ids: set[str] = set()
    previous_ts = None
    count = missed_payments = 0
    for batch in h.batches:
        day_start = START + timedelta(days=batch.day)
        for lo in range(0, len(batch), 10_000):
            for raw in h.sim.encode(batch, lo, lo + 10_000):
                txn = parse_transaction(raw)
                count += 1
                assert raw.split(b'"ts":"')[1][:24].endswith(b"Z")  # ms precision, UTC
                assert day_start <= txn.ts < day_start + timedelta(days=1)
                assert previous_ts is None or txn.ts >= previous_ts
                previous_ts = txn.ts
                assert txn.txn_id not in ids
                ids.add(txn.txn_id)
                assert txn.amount > 0 and round(txn.amount, 2) == txn.amount
                if txn.status is Status.FAILED:
                    assert txn.direction is Direction.DEBIT and txn.channel is Channel.DIRECT_DEBIT
                    missed_payments += txn.is_payment_failed
                prev = last.get(txn.customer_id)
                if prev is not None:
                    moved = 0.0 if txn.status is Status.FAILED else txn.amount
                    expected = prev + (moved if txn.direction is Direction.CREDIT else -moved)
                    assert abs(txn.balance_after - expected) < 0.005, (txn, prev)
                last[txn.customer_id] = txn.balance_after
    assert count == len(h.cust) > 250_000
    assert len(last) == len(h.customers)
    assert missed_payments == (h.failed & h.cat(Category.LOAN_REPAYMENT, Category.CARD_REPAYMENT)).sum() > 50


def test_returned_payments_are_charged_a_fee_the_next_day(history: History) -> None:
    h = history
    fee = h.merchant == h.sim.merchants.index("Returned payment fee")
    assert (h.category[fee] == CATEGORIES.index(Category.FEE)).all()
    failures = {(int(c), int(d)) for c, d in zip(h.cust[h.failed], h.day[h.failed], strict=True) if d < DAYS - 1}
    fees = {(int(c), int(d) - 1) for c, d in zip(h.cust[fee], h.day[fee], strict=True)}
    assert failures and failures == {f for f in fees if f[1] < DAYS - 1}


def test_settlement_declines_card_spend_and_returns_direct_debits() -> None:
    # One customer, opening balance 100.00, overdraft 50.00: events in time order.
    cust = np.zeros(4, dtype=np.int64)
    signed = np.array([-12_000, -4_000, 20_000, -50_000])  # debit, card, salary, direct debit
    ok, run = _settle(cust, signed, np.array([True, True, False, True]), np.array([10_000]), np.array([-5_000]))
    assert ok.tolist() == [True, False, True, False]
    assert run.tolist() == [-2_000, -2_000, 18_000, 18_000]


def test_channels_and_categories_are_the_schema_enums(history: History) -> None:
    assert {CATEGORIES[c] for c in np.unique(history.category)} >= {Category.SALARY, Category.RENT, Category.FEE}
    assert {CHANNELS[c] for c in np.unique(history.channel)} >= {Channel.CARD, Channel.DIRECT_DEBIT, Channel.ATM}


# -- reproducibility ------------------------------------------------------------------------------
def _digest(customers: list[Customer], seed: int, days: int = 10) -> str:
    sim = Simulator(customers, seed, START)
    digest = hashlib.sha256()
    for batch in sim.days(days):
        for key, value in zip(sim.keys_of(batch), sim.encode(batch), strict=True):
            digest.update(key + b"\0" + value + b"\n")
    return digest.hexdigest()


def test_same_seed_same_bytes_different_seed_different_bytes() -> None:
    customers = generate_customers(300, SEED)
    assert _digest(customers, SEED) == _digest(customers, SEED)
    assert _digest(customers, SEED) != _digest(customers, SEED + 1)


def test_start_must_be_timezone_aware() -> None:
    with pytest.raises(ConfigError, match="timezone-aware"):
        Simulator(generate_customers(3, SEED), SEED, datetime(2026, 1, 1))  # noqa: DTZ001
