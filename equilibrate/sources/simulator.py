"""The bank simulator: a population's current-account transactions, one simulated day at a time.

Why it is shaped like this: the producer must sustain 50,000+ events/s, so nothing in the hot path
is a per-event Python object. Each day is drawn for every customer at once as numpy columns
(Poisson counts, lognormal amounts, hours of day), settled against running balances in a few
vectorised passes, sorted by event time, and only then turned into JSON bytes with orjson.

Settlement is where delinquency comes from: a direct debit (rent, bills, a loan instalment, a card
repayment) that the balance plus arranged overdraft cannot cover is returned, and booked as an event
with status "failed" and the balance unchanged; a returned-payment fee follows the next day. Card
and cash spending that cannot be covered is declined and never booked.

Everything random comes from one numpy generator seeded from `seed`, so a run is reproducible event
for event, txn ids included.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson

from equilibrate.errors import ConfigError
from equilibrate.schema import Category, Channel
from equilibrate.sources.customers import Customer, GroundTruth
from equilibrate.sources.personas import (
    EMPLOYERS,
    FIXED,
    HOURS,
    LANDLORDS,
    SPENDS,
    SUPPLIERS,
    Behaviour,
    Levels,
    assign_personas,
    hour_weights,
)

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
CATEGORIES: tuple[Category, ...] = tuple(Category)
CHANNELS: tuple[Channel, ...] = tuple(Channel)
_CAT = {c: i for i, c in enumerate(CATEGORIES)}
_CH = {c: i for i, c in enumerate(CHANNELS)}
# Settlement kinds. Credits and forced debits (fees) always book; declinable debits (card, cash,
# transfers) vanish when they cannot be covered; direct debits are returned: booked as failed.
CREDIT, DECLINABLE, DIRECT_DEBIT, FORCED = 0, 1, 2, 3
RETURNED_PAYMENT_FEE = 1_200  # pence
BIG_BILL_DAILY_CHANCE = 1 / 450  # the rare shock that makes even Stable customers' ground truth noisy
_EARNING = ("employed", "contract")


@dataclass(frozen=True, slots=True)
class Post:
    """How one kind of event is booked: category, channel, settlement kind and hours of day."""

    category: Category
    channel: Channel
    kind: int
    hours: str


_DD = {c: Post(c, Channel.DIRECT_DEBIT, DIRECT_DEBIT, "early") for c in Category}
_FEE = Post(Category.FEE, Channel.OTHER, FORCED, "fees")
_BIG_CARD_BILL = Post(Category.SHOPPING, Channel.CARD, DECLINABLE, "day")
_SUBSCRIPTION = Post(Category.ENTERTAINMENT, Channel.CARD, DECLINABLE, "day")
_FROM_SAVINGS = Post(Category.TRANSFER_IN, Channel.ONLINE, CREDIT, "night")
_TO_SAVINGS = Post(Category.TRANSFER_OUT, Channel.ONLINE, DECLINABLE, "night")
_PAYDAY_LOAN = Post(Category.PAYDAY_LOAN, Channel.BANK_TRANSFER, CREDIT, "day")


@dataclass(frozen=True, slots=True)
class DayBatch:
    """One simulated day's booked events, in event-time order, as columns (amounts in pence)."""

    day: int
    date: str  # YYYY-MM-DD
    customer: np.ndarray  # int: index into Simulator.customer_ids
    ts_ms: np.ndarray  # epoch milliseconds, UTC
    amount: np.ndarray  # pence, > 0
    credit: np.ndarray  # bool
    category: np.ndarray  # index into CATEGORIES
    channel: np.ndarray  # index into CHANNELS
    merchant: np.ndarray  # index into Simulator.merchants
    balance: np.ndarray  # pence after the event
    failed: np.ndarray  # bool: a returned direct debit

    def __len__(self) -> int:
        return len(self.ts_ms)


class Simulator:
    """Drives a population through simulated days from `start` (floored to midnight UTC).

    Stateful: `next_day()` (or `days()`) continues where the last call stopped; make a new
    Simulator with the same arguments to replay the same history.
    """

    def __init__(
        self, customers: Sequence[Customer], seed: int, start: datetime, truth: Sequence[GroundTruth] | None = None
    ) -> None:
        if start.tzinfo is None:
            raise ConfigError("the simulation start must be timezone-aware (UTC)")
        if not customers:
            raise ConfigError("the simulator needs at least one customer")
        self.start = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.customer_ids = [c.customer_id for c in customers]
        self.keys = [cid.encode() for cid in self.customer_ids]
        self.day = 0
        n = self.n = len(customers)
        self.run_tag = "s" + hashlib.blake2b(f"{seed}:{n}:{self.start.date()}".encode(), digest_size=3).hexdigest()
        rng = self._rng = np.random.default_rng([seed, 2, n])
        truth = truth if truth is not None else assign_personas(customers, seed)
        if [t.customer_id for t in truth] != self.customer_ids:
            raise ConfigError("the ground truth does not list the same customers in the same order")
        self.behaviour = Behaviour(truth, rng)
        self.merchants: list[str] = []
        self._merchant_code: dict[str, int] = {}
        self._arange = np.arange(n)
        self._income = income = np.array([c.monthly_income for c in customers]) * 100.0  # pence a month
        self._has_savings = np.array(["savings" in c.accounts for c in customers])
        self.balance, self.savings, overdraft = self.behaviour.initial_finances(income / 100, self._has_savings, rng)
        self._floor = -overdraft
        self._fails = np.zeros(n, dtype=np.int64)
        self._parts: list[tuple[np.ndarray, ...]] = []
        self._pending_pay = np.full(n, -1)
        self._payday_due = np.full(n, -1)
        self._payday_amount = np.zeros(n)
        self._spend_merchants = [self._intern(s.merchants) for s in SPENDS]
        self._fixed = {name: int(self._intern((name,))[0]) for name in FIXED}
        self._hours = {name: hour_weights(name) for name in HOURS}
        self._setup_income(customers, rng)
        self._setup_bills(customers, rng)
        # Day-to-day spending scale: personal taste, but within what is left after fixed bills,
        # so that before any persona lever pulls, a household's budget roughly balances.
        fixed = (self._rent + self._util_amount.sum(axis=1) + self._loan + self._card + self._sub) / income
        variable = sum(sp.share for sp in SPENDS if not sp.credit and sp.lever != "gambling")
        self._taste = np.minimum(rng.lognormal(-0.045, 0.3, n), np.maximum(0.3, (0.9 - fixed) / variable))
        self._lookup = {
            name: np.array(values, dtype=object)
            for name, values in (
                ("customer", self.customer_ids), ("key", self.keys), ("merchant", self.merchants),
                ("direction", ("debit", "credit")), ("status", ("ok", "failed")),
                ("category", [c.value for c in CATEGORIES]), ("channel", [c.value for c in CHANNELS]),
            )
        }  # fmt: skip
        log.debug("simulating %d customers from %s (txn ids %s-*)", n, self.start.date(), self.run_tag)

    # -- set-up -------------------------------------------------------------------------------
    def _intern(self, names: Sequence[str]) -> np.ndarray:
        for name in names:
            if name not in self._merchant_code:
                self._merchant_code[name] = len(self.merchants)
                self.merchants.append(name)
        return np.array([self._merchant_code[name] for name in names], dtype=np.int64)

    def _pick(self, names: Sequence[str]) -> np.ndarray:
        """One merchant per customer from `names`."""
        return self._intern(names)[self._rng.integers(0, len(names), self.n)]

    def _setup_income(self, customers: Sequence[Customer], rng: np.random.Generator) -> None:
        n, emp = self.n, np.array([c.employment for c in customers])
        earning = np.isin(emp, _EARNING)
        self._biweekly = rng.random(n) < np.select([emp == "employed", emp == "contract", emp == "self_employed"],
                                                    [0.2, 0.5, 1.0], 0.0)  # fmt: skip
        self._phase = (self.start.weekday() - 4) % 7 + 7 * rng.integers(0, 2, n)  # bi-weekly pay on Fridays
        monthly_dom = rng.choice([25, 28, 31, 15, 1], n, p=[0.35, 0.25, 0.2, 0.1, 0.1])
        self._pay_dom = np.where(earning, monthly_dom, rng.integers(1, 29, n))
        self._pay_amount = np.where(self._biweekly, self._income * 12 / 26, self._income)
        self._pay_sigma = np.select([emp == "self_employed", earning], [0.35, 0.03], 0.0)
        benefits = np.isin(emp, ["retired", "unemployed"])
        self._pay_category = np.select([earning, benefits], [_CAT[Category.SALARY], _CAT[Category.BENEFITS]],
                                       _CAT[Category.TRANSFER_IN])  # fmt: skip
        pension, uc, student, client = self._intern(
            ("DWP State Pension", "DWP Universal Credit", "Student Finance England", "Client payment")
        )
        self._pay_merchant = np.select([earning, emp == "retired", emp == "unemployed", emp == "student"],
                                       [self._pick(EMPLOYERS), pension, uc, student], client)  # fmt: skip

    def _setup_bills(self, customers: Sequence[Customer], rng: np.random.Generator) -> None:
        n, income = self.n, self._income
        retired = np.array([c.employment == "retired" for c in customers])  # mostly own their home
        self._rent = np.round(income * rng.uniform(0.22, 0.36, n) * np.where(retired, 0.35, 1.0))
        self._rent_dom = np.where(rng.random(n) < 0.5, 1, rng.integers(1, 29, n))
        self._rent_merchant = self._pick(LANDLORDS)
        councils = self._intern([f"{c.city} Council Tax" for c in customers])
        self._util_merchant = np.stack([self._pick(SUPPLIERS["energy"]), councils, self._pick(SUPPLIERS["telecom"])], 1)
        self._util_dom = rng.integers(1, 29, (n, 3))
        shares = np.stack([rng.uniform(0.03, 0.06, n), rng.uniform(0.03, 0.05, n), rng.uniform(0.01, 0.025, n)], 1)
        self._util_amount = np.round(income[:, None] * shares)
        self._loan = np.array([(c.loan_instalment or 0.0) * 100 for c in customers])
        self._loan_dom = np.array([c.loan_due_day or 0 for c in customers])
        self._card = np.array([(c.card_min_payment or 0.0) * 100 for c in customers])
        self._card_dom = np.array([c.card_due_day or 0 for c in customers])
        self._sub = np.where(rng.random(n) < 0.75, np.round(rng.uniform(500, 1800, n)), 0)
        self._sub_dom = rng.integers(1, 29, n)
        self._sub_merchant = self._pick(SUPPLIERS["subscription"])

    # -- one day ------------------------------------------------------------------------------
    def days(self, count: int | None = None) -> Iterator[DayBatch]:
        """The next `count` days (forever when None)."""
        for _ in itertools.count() if count is None else range(count):
            yield self.next_day()

    def next_day(self) -> DayBatch:
        day, rng = self.day, self._rng
        date = self.start + timedelta(days=day)
        dom, dow, dim = date.day, date.weekday(), _days_in_month(date)
        levels = self.behaviour.levels(day)
        self._parts = []
        self._income_events(day, date, levels)
        self._bill_events(dom, dim, levels)
        self._rescue_events(day, dom, levels)
        self._spend_events(dow, levels)
        shock = np.flatnonzero(rng.random(self.n) < BIG_BILL_DAILY_CHANCE)  # a car repair, an annual premium
        bill = self._income[shock] * rng.uniform(0.2, 0.8, len(shock))
        card = rng.random(len(shock)) < 0.5
        self._book(shock[card], bill[card], _BIG_CARD_BILL, "Kwik Fit")
        self._book(shock[~card], bill[~card], _DD[Category.OTHER], "Aviva Insurance")
        self.day += 1
        return self._settle(day, date, *self._columns())

    def _book(
        self, cust: np.ndarray, amount: np.ndarray, post: Post, merchant: str | np.ndarray,
        channel: np.ndarray | None = None,
    ) -> None:  # fmt: skip
        """Add events for customers `cust` (columns, not objects), at times drawn from post.hours."""
        k = len(cust)
        if k == 0:
            return
        tod = self._rng.choice(24, k, p=self._hours[post.hours]) * HOUR_MS + self._rng.integers(0, HOUR_MS, k)
        merchants = np.full(k, self._fixed[merchant]) if isinstance(merchant, str) else merchant
        channels = np.full(k, _CH[post.channel]) if channel is None else channel
        pence = np.maximum(np.round(amount), 1).astype(np.int64)
        self._parts.append(
            (cust, tod, pence, np.full(k, _CAT[post.category]), channels, merchants, np.full(k, post.kind))
        )

    def _columns(self) -> list[np.ndarray]:
        if not self._parts:
            return [np.zeros(0, dtype=np.int64) for _ in range(7)]
        return [np.concatenate(col) for col in zip(*self._parts, strict=True)]

    def _income_events(self, day: int, date: datetime, lv: Levels) -> None:
        """Monthly pay on its day (the Friday before when that is a weekend), bi-weekly pay on Fridays;
        the bank sometimes credits a day or three late."""
        monthly, dow = ~self._biweekly, date.weekday()
        sched = np.zeros(self.n, dtype=bool)
        for ahead in (0, 1, 2) if dow == 4 else (0,) if dow < 5 else ():
            when = date + timedelta(days=ahead)
            if ahead == 0 or when.weekday() >= 5:
                sched |= monthly & (np.minimum(self._pay_dom, _days_in_month(when)) == when.day)
        sched |= self._biweekly & ((day + self._phase) % 14 == 0)
        idx = np.flatnonzero(sched & (self._pending_pay < 0))
        self._pending_pay[idx] = day + self._rng.choice(4, len(idx), p=[0.72, 0.14, 0.09, 0.05])  # bank jitter
        due = self._pending_pay == day
        self._pending_pay[due] = -1
        pay = np.flatnonzero(due & lv.income_on)
        amount = self._pay_amount[pay] * lv.income[pay] * self._rng.lognormal(0.0, self._pay_sigma[pay])
        for cat in np.unique(self._pay_category[pay]).tolist():
            sel = self._pay_category[pay] == cat
            post = Post(CATEGORIES[cat], Channel.BANK_TRANSFER, CREDIT, "night")
            self._book(pay[sel], amount[sel], post, self._pay_merchant[pay[sel]])

    def _bill_events(self, dom: int, dim: int, lv: Levels) -> None:
        def due(day_of_month: np.ndarray, amount: np.ndarray) -> np.ndarray:
            return np.flatnonzero((np.minimum(day_of_month, dim) == dom) & (amount > 0))

        i = due(self._rent_dom, self._rent)
        self._book(i, self._rent[i], _DD[Category.RENT], self._rent_merchant[i])
        for u in range(3):
            i = due(self._util_dom[:, u], self._util_amount[:, u])
            self._book(i, self._util_amount[i, u] * lv.essential[i], _DD[Category.UTILITIES], self._util_merchant[i, u])
        i = due(self._loan_dom, self._loan)
        self._book(i, self._loan[i], _DD[Category.LOAN_REPAYMENT], "Equilibrate Personal Loan")
        i = due(self._card_dom, self._card)
        self._book(i, self._card[i] * lv.card[i], _DD[Category.CARD_REPAYMENT], "Equilibrate Credit Card")
        i = due(self._sub_dom, self._sub)
        self._book(i, self._sub[i], _SUBSCRIPTION, self._sub_merchant[i])

    def _rescue_events(self, day: int, dom: int, lv: Levels) -> None:
        """Start-of-day money moves: savings in and out, payday loans taken and collected, bank fees."""
        rng, bal, inc = self._rng, self.balance, self._income
        i = np.flatnonzero((bal < np.maximum(10_000, 0.1 * inc)) & (self.savings > 0))  # short: dip into savings
        amount = np.minimum(self.savings[i], np.round(np.maximum(20_000, 0.3 * inc[i]) - bal[i], -2))
        self.savings[i] -= amount.astype(np.int64)
        self._book(i, amount, _FROM_SAVINGS, "Transfer from savings")
        i = np.flatnonzero((bal > 2.5 * inc) & self._has_savings)  # comfortable: put some aside
        amount = np.round(0.5 * inc[i], -3)
        self.savings[i] += amount.astype(np.int64)
        self._book(i, amount, _TO_SAVINGS, "Transfer to savings")
        due = np.flatnonzero(self._payday_due == day)
        self._book(due, self._payday_amount[due] * 1.24, _DD[Category.OTHER], "QuickCash Loans")
        self._payday_due[due] = -1
        short = lv.payday & (bal < 0.05 * inc) & (self._payday_due < 0) & (rng.random(self.n) < 0.35)
        i = np.flatnonzero(short)
        loan = np.clip(np.round(inc[i] * rng.uniform(0.15, 0.4, len(i)), -3), 10_000, 100_000)
        self._payday_due[i], self._payday_amount[i] = day + 28, loan
        self._book(i, loan, _PAYDAY_LOAN, "QuickCash Loans")
        i = np.flatnonzero(self._fails > 0)
        self._book(i, RETURNED_PAYMENT_FEE * self._fails[i], _FEE, "Returned payment fee")
        if dom == 1:
            i = np.flatnonzero(bal < 0)
            self._book(i, np.maximum(100, -bal[i] * 0.03), _FEE, "Overdraft interest")

    def _spend_events(self, dow: int, lv: Levels) -> None:
        rng = self._rng
        for sp, merchants in zip(SPENDS, self._spend_merchants, strict=True):
            rate_mult, amount_mult = lv.scale(sp.lever, self.behaviour.gambler)
            i = np.repeat(self._arange, rng.poisson(sp.rate * (sp.weekend if dow >= 4 else 1.0) * rate_mult))
            mean = self._income[i] * (sp.share / (30.0 * sp.rate)) * self._taste[i] * amount_mult[i]
            amount = mean * rng.lognormal(-(sp.sigma**2) / 2, sp.sigma, len(i))
            if sp.category is Category.ATM_WITHDRAWAL:
                amount = np.maximum(1, np.round(amount / 1_000)) * 1_000  # cash comes in tens
            channel = np.where(rng.random(len(i)) < sp.online, _CH[Channel.ONLINE], _CH[sp.channel])
            post = Post(sp.category, sp.channel, CREDIT if sp.credit else DECLINABLE, sp.hours)
            self._book(i, amount, post, merchants[rng.integers(0, len(merchants), len(i))], channel)

    # -- settlement ---------------------------------------------------------------------------
    def _settle(self, day: int, date: datetime, *cols: np.ndarray) -> DayBatch:
        order = np.lexsort((cols[1], cols[0]))
        cust, tod, amount, category, channel, merchant, kind = (c[order] for c in cols)
        credit = kind == CREDIT
        signed = np.where(credit, amount, -amount)
        ok, run = _settle(cust, signed, (kind == DECLINABLE) | (kind == DIRECT_DEBIT), self.balance, self._floor)
        if len(cust):
            ends = np.r_[np.flatnonzero(cust[1:] != cust[:-1]), len(cust) - 1]
            self.balance[cust[ends]] = run[ends]
        failed = (kind == DIRECT_DEBIT) & ~ok
        self._fails = np.bincount(cust[failed], minlength=self.n)
        keep = np.flatnonzero(ok | failed)
        keep = keep[np.argsort(tod[keep], kind="stable")]  # event-time order; per customer order unchanged
        return DayBatch(
            day=day, date=date.date().isoformat(), customer=cust[keep], ts_ms=tod[keep] + int(date.timestamp() * 1000),
            amount=amount[keep], credit=credit[keep], category=category[keep], channel=channel[keep],
            merchant=merchant[keep], balance=run[keep], failed=failed[keep],
        )  # fmt: skip

    # -- wire format --------------------------------------------------------------------------
    def keys_of(self, batch: DayBatch, lo: int = 0, hi: int | None = None) -> list[bytes]:
        """Kafka keys (customer ids) of events lo..hi of the batch, in order."""
        keys: list[bytes] = self._lookup["key"][batch.customer[lo:hi]].tolist()
        return keys

    def encode(self, batch: DayBatch, lo: int = 0, hi: int | None = None) -> list[bytes]:
        """Events lo..hi of the batch as schema-valid JSON bytes, in event-time order.

        Encode a chunk just before producing it, never a whole day at once: orjson gives every
        result a ~4 KiB buffer, so a million encoded events held together would take 4 GiB.
        Lookups (ids, names, enum values) are gathered with numpy object arrays, so the per-event
        loop only builds a dict and calls orjson. The cyclic garbage collector is paused meanwhile:
        the loop makes no reference cycles, and the collections its allocations trigger would cost
        a third of the time.
        """
        hi = len(batch) if hi is None else min(hi, len(batch))
        if hi <= lo:
            return []
        sl, lookup = slice(lo, hi), self._lookup
        ts = np.datetime_as_string(batch.ts_ms[sl].astype("datetime64[ms]"), unit="ms", timezone="UTC").tolist()
        prefix = f"{self.run_tag}-{batch.date.replace('-', '')}-"
        rows = zip(
            lookup["customer"][batch.customer[sl]].tolist(), ts, (batch.amount[sl] / 100).tolist(),
            lookup["direction"][batch.credit[sl].astype(np.int8)].tolist(),
            lookup["category"][batch.category[sl]].tolist(), lookup["channel"][batch.channel[sl]].tolist(),
            lookup["merchant"][batch.merchant[sl]].tolist(), (batch.balance[sl] / 100).tolist(),
            lookup["status"][batch.failed[sl].astype(np.int8)].tolist(), strict=True,
        )  # fmt: skip
        dumps, collecting = orjson.dumps, gc.isenabled()
        gc.disable()
        try:
            return [
                dumps({
                    "txn_id": f"{prefix}{seq:08d}", "customer_id": c, "ts": t, "amount": a, "direction": d,
                    "category": k, "channel": ch, "merchant": m, "balance_after": b, "currency": "GBP", "status": st,
                    "schema_version": 1,
                })
                for seq, (c, t, a, d, k, ch, m, b, st) in enumerate(rows, start=lo)
            ]  # fmt: skip
        finally:
            if collecting:
                gc.enable()


def _days_in_month(date: datetime) -> int:
    return ((date.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)).day


def _settle(
    cust: np.ndarray, signed: np.ndarray, bounded: np.ndarray, opening: np.ndarray, floor: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Running balances per customer (events sorted by customer, then time), refusing debits that
    would cross the customer's floor. Each pass refuses each customer's first offending debit only,
    because refusing it raises every later balance of that customer; a few passes settle a day."""
    ok = np.ones(len(cust), dtype=bool)
    if len(cust) == 0:
        return ok, np.zeros(0, dtype=np.int64)
    first = np.r_[True, cust[1:] != cust[:-1]]
    starts = np.flatnonzero(first)
    group = np.cumsum(first) - 1
    base, limit = opening[cust], floor[cust]
    while True:
        delta = np.where(ok, signed, 0)
        total = np.cumsum(delta)
        run = base + total - (total - delta)[starts][group]
        bad = np.flatnonzero(bounded & ok & (run < limit))
        if len(bad) == 0:
            return ok, run
        ok[bad[np.r_[True, cust[bad[1:]] != cust[bad[:-1]]]]] = False
