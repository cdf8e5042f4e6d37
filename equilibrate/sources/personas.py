"""Personas: how a simulated customer's money behaves over time, and when it goes wrong.

Four personas, mixed 70/15/10/5 by default:

- Stable: income covers spending; only rare one-off shocks (a big bill), so ground truth is noisy.
- Overspender: discretionary spend well above essentials, rising after distress starts, funded by
  payday loans and a growing credit-card bill.
- Income Shock: salary stops on a random day; savings drain, cash use rises, bills keep coming.
- Silent Drain: pay slowly shrinks while essential bills creep up; discretionary spend is cut,
  small cash withdrawals multiply, and the balance erodes month after month.

Distress starts on a random day (never day 0) and some distressed customers recover (salary
resumes, spending normalises). All of it is computed for every customer at once, per day, as
numpy arrays: the simulator asks `Behaviour.levels(day)` and scales its draws with the answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from equilibrate.errors import ConfigError
from equilibrate.schema import Category, Channel
from equilibrate.sources.customers import Customer, GroundTruth

_NEVER = np.iinfo(np.int32).max
_EARNERS = frozenset({"employed", "self_employed", "contract"})


class Persona(StrEnum):
    STABLE = "stable"
    OVERSPENDER = "overspender"
    INCOME_SHOCK = "income_shock"
    SILENT_DRAIN = "silent_drain"


#: Index = the persona's integer code in the simulator's arrays.
PERSONAS: tuple[Persona, ...] = tuple(Persona)
DEFAULT_MIX: Mapping[Persona, float] = {
    Persona.STABLE: 0.70,
    Persona.OVERSPENDER: 0.15,
    Persona.INCOME_SHOCK: 0.10,
    Persona.SILENT_DRAIN: 0.05,
}


@dataclass(frozen=True)
class DistressWindow:
    """When distress starts (day indexes from the simulation start) and how often and when it ends."""

    first_day: int = 7
    last_day: int = 90
    recovery_share: float = 0.35
    recovery_after: tuple[int, int] = (21, 50)  # days of distress before a recovery


# Per persona (rows in PERSONAS order) and per lever: the level before distress and its change at
# full distress. Distress starts at _ONSET of full strength and reaches it after _RAMP_DAYS.
_RAMP_DAYS = np.array([1.0, 30.0, 14.0, 40.0])
_ONSET = np.array([1.0, 0.3, 0.3, 0.4])  # share of full strength on the first day of distress
_DISC_BASE = np.array([1.0, 1.6, 1.0, 1.0])
_DISC_DELTA = np.array([0.0, 2.6, -0.45, -0.5])
_ESSENTIAL_DELTA = np.array([0.0, 0.0, -0.1, 0.8])
_INCOME_DELTA = np.array([0.0, 0.0, 0.0, -0.4])
_ATM_RATE_DELTA = np.array([0.0, 0.3, 2.0, 3.0])
_ATM_AMOUNT_DELTA = np.array([0.0, 0.0, -0.2, -0.5])
_GAMBLING_DELTA = np.array([0.0, 1.5, 0.3, 0.0])
_CARD_DELTA = np.array([0.0, 1.5, 0.0, 0.5])
_PAYDAY_SHARE = np.array([0.01, 0.6, 0.4, 0.3])
_GAMBLER_SHARE = np.array([0.05, 0.35, 0.07, 0.06])
# Finances at the start, in months of income: (low, high) current balance; mean savings if any.
_BALANCE_MONTHS = np.array([[0.5, 1.6], [0.2, 0.6], [0.5, 1.1], [0.4, 1.0]])
_SAVINGS_MONTHS = np.array([2.0, 0.3, 1.0, 0.6])
_OVERDRAFT_SHARE = np.array([0.55, 0.9, 0.7, 0.7])


def assign_personas(
    customers: Sequence[Customer],
    seed: int,
    mix: Mapping[Persona, float] = DEFAULT_MIX,
    window: DistressWindow | None = None,
) -> list[GroundTruth]:
    """Exact persona counts per the mix; Income Shock (losing a job) only among earners."""
    window = window or DistressWindow()
    _check(mix, window)
    n = len(customers)
    rng = np.random.default_rng([seed, 1, n])
    counts = _largest_remainder(n, [mix.get(p, 0.0) for p in PERSONAS])
    codes = np.zeros(n, dtype=np.int8)
    earners = np.flatnonzero([c.employment in _EARNERS for c in customers])
    shock = rng.permutation(earners)[: counts[PERSONAS.index(Persona.INCOME_SHOCK)]]
    codes[shock] = PERSONAS.index(Persona.INCOME_SHOCK)
    taken = np.zeros(n, dtype=bool)
    taken[shock] = True
    rest = rng.permutation(np.flatnonzero(~taken))
    shortfall = counts[PERSONAS.index(Persona.INCOME_SHOCK)] - len(shock)
    pos = 0
    for code, persona in enumerate(PERSONAS):
        if persona is Persona.INCOME_SHOCK:
            continue
        k = counts[code] + (shortfall if persona is Persona.STABLE else 0)  # too few earners: more Stable
        codes[rest[pos : pos + k]] = code
        pos += k
    start = rng.integers(window.first_day, window.last_day + 1, n)
    recovers = rng.random(n) < window.recovery_share
    recovery = start + rng.integers(window.recovery_after[0], window.recovery_after[1] + 1, n)
    names, stable = [p.value for p in PERSONAS], PERSONAS.index(Persona.STABLE)
    rows = zip(customers, codes.tolist(), start.tolist(), recovery.tolist(), recovers.tolist(), strict=True)
    return [
        GroundTruth(c.customer_id, names[k], None, None)
        if k == stable
        else GroundTruth(c.customer_id, names[k], s, r if rec else None)
        for c, k, s, r, rec in rows
    ]


def _check(mix: Mapping[Persona, float], window: DistressWindow) -> None:
    if any(v < 0 for v in mix.values()) or abs(sum(mix.values()) - 1.0) > 1e-6:
        raise ConfigError(f"the persona mix must be non-negative shares summing to 1, got {dict(mix)}")
    if not 1 <= window.first_day <= window.last_day:
        raise ConfigError("distress must start on day 1 or later, and first_day must not exceed last_day")


def _largest_remainder(n: int, shares: Sequence[float]) -> list[int]:
    raw = np.asarray(shares) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts))[: n - counts.sum()]:
        counts[i] += 1
    return [int(c) for c in counts]


@dataclass(slots=True)
class Levels:
    """One day's behaviour for every customer: multipliers on the simulator's baseline draws."""

    distressed: np.ndarray  # bool
    income_on: np.ndarray  # bool: False while an Income Shock customer has no job
    income: np.ndarray
    discretionary: np.ndarray
    essential: np.ndarray
    atm_rate: np.ndarray
    atm_amount: np.ndarray
    gambling: np.ndarray
    card: np.ndarray  # credit-card repayment growth
    payday: np.ndarray  # bool: would take a payday loan when short today

    def scale(self, lever: str, gambler: np.ndarray) -> tuple[np.ndarray | float, np.ndarray]:
        """(rate multiplier, amount multiplier) per customer for spends pulled by `lever` (Spend.lever)."""
        if lever == "discretionary":
            root = np.sqrt(self.discretionary)
            return root, root  # spend more often, and more each time
        if lever == "essential":
            return 1.0, self.essential
        if lever == "atm":
            return self.atm_rate, self.atm_amount
        ones = np.ones(len(self.distressed))
        if lever == "gambling":
            return self.gambling * gambler, ones
        return 1.0, ones


class Behaviour:
    """The personas of a population, turned into per-day levels (vectorised across customers)."""

    def __init__(self, truth: Sequence[GroundTruth], rng: np.random.Generator) -> None:
        code_of = {p.value: i for i, p in enumerate(PERSONAS)}
        try:
            self.persona = np.array([code_of[t.persona] for t in truth], dtype=np.int8)
        except KeyError as exc:
            raise ConfigError(f"unknown persona {exc.args[0]!r} in the ground truth") from None
        self.start = np.array([_NEVER if t.distress_start_day is None else t.distress_start_day for t in truth])
        self.recovery = np.array([_NEVER if t.recovery_day is None else t.recovery_day for t in truth])
        n = len(truth)
        self.gambler = rng.random(n) < _GAMBLER_SHARE[self.persona]
        self.payday_prone = rng.random(n) < _PAYDAY_SHARE[self.persona]

    def levels(self, day: int) -> Levels:
        p = self.persona
        distressed = (day >= self.start) & (day < self.recovery)
        growth = np.clip((day - self.start) / _RAMP_DAYS[p], 0.0, 1.0)
        ramp = np.where(distressed, _ONSET[p] + (1.0 - _ONSET[p]) * growth, 0.0)
        return Levels(
            distressed=distressed,
            income_on=~(distressed & (p == PERSONAS.index(Persona.INCOME_SHOCK))),
            income=1.0 + _INCOME_DELTA[p] * ramp,
            discretionary=_DISC_BASE[p] + _DISC_DELTA[p] * ramp,
            essential=1.0 + _ESSENTIAL_DELTA[p] * ramp,
            atm_rate=1.0 + _ATM_RATE_DELTA[p] * ramp,
            atm_amount=1.0 + _ATM_AMOUNT_DELTA[p] * ramp,
            gambling=1.0 + _GAMBLING_DELTA[p] * ramp,
            card=1.0 + _CARD_DELTA[p] * ramp,
            payday=distressed & self.payday_prone,
        )

    def initial_finances(
        self, income: np.ndarray, has_savings: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Opening balance, savings and arranged overdraft (pence): the fragile start with less."""
        p = self.persona
        n = len(p)
        low, high = _BALANCE_MONTHS[p, 0], _BALANCE_MONTHS[p, 1]
        balance = income * rng.uniform(low, high)
        savings = np.where(has_savings, income * _SAVINGS_MONTHS[p] * rng.lognormal(-0.3, 0.8, n), 0.0)
        overdraft = np.where(
            rng.random(n) < _OVERDRAFT_SHARE[p], np.round(np.clip(income * rng.uniform(0.1, 0.5, n), 100, 2500), -1), 0
        )
        to_pence = 100.0
        return (
            np.round(balance * to_pence).astype(np.int64),
            np.round(savings * to_pence).astype(np.int64),
            np.round(overdraft * to_pence).astype(np.int64),
        )


# -- what everyone spends on, before persona levers scale it -------------------------------------
@dataclass(frozen=True)
class Spend:
    """A kind of day-to-day transaction: how often, how much (share of monthly income), when, where."""

    category: Category
    lever: str  # which Levels multiplier scales it: discretionary, essential, atm, gambling or none
    rate: float  # events per customer per day
    share: float  # expected share of monthly income
    sigma: float  # spread of single amounts (lognormal)
    hours: str  # an HOURS profile
    channel: Channel
    online: float  # share paid online instead of `channel`
    merchants: tuple[str, ...]
    weekend: float = 1.0  # rate multiplier Friday to Sunday
    credit: bool = False


SPENDS: tuple[Spend, ...] = (
    Spend(Category.GROCERIES, "essential", 0.45, 0.12, 0.5, "day", Channel.CARD, 0.08,
          ("Tesco", "Sainsbury's", "Asda", "Aldi", "Lidl", "Morrisons", "Co-op", "Waitrose", "Iceland")),
    Spend(Category.DINING, "discretionary", 0.22, 0.05, 0.6, "meal", Channel.CARD, 0.25,
          ("Pret A Manger", "Greggs", "Nando's", "Wagamama", "Costa Coffee", "Deliveroo", "Just Eat", "The Red Lion"),
          weekend=1.4),
    Spend(Category.ENTERTAINMENT, "discretionary", 0.08, 0.03, 0.7, "evening", Channel.CARD, 0.5,
          ("Odeon", "Vue Cinemas", "Ticketmaster", "Steam", "PlayStation Store", "Hollywood Bowl"), weekend=1.5),
    Spend(Category.TRAVEL, "discretionary", 0.20, 0.05, 0.7, "commute", Channel.CARD, 0.3,
          ("TfL", "Trainline", "Uber", "Shell", "BP", "National Express", "easyJet")),
    Spend(Category.SHOPPING, "discretionary", 0.16, 0.07, 0.8, "day", Channel.CARD, 0.5,
          ("Amazon", "Argos", "Primark", "Next", "Boots", "John Lewis", "Currys", "IKEA", "eBay"), weekend=1.3),
    Spend(Category.ATM_WITHDRAWAL, "atm", 0.07, 0.04, 0.5, "day", Channel.ATM, 0.0,
          ("ATM Post Office", "ATM Barclays", "ATM HSBC", "ATM Lloyds", "ATM Sainsbury's")),
    Spend(Category.TRANSFER_OUT, "none", 0.04, 0.04, 0.8, "any", Channel.BANK_TRANSFER, 0.2,
          ("Faster Payment sent", "Transfer to family", "Splitwise settle-up")),
    Spend(Category.GAMBLING, "gambling", 0.15, 0.04, 0.8, "evening", Channel.CARD, 0.9,
          ("Bet365", "Paddy Power", "William Hill", "Sky Bet", "Betfair", "National Lottery"), weekend=1.5),
    Spend(Category.TRANSFER_IN, "none", 0.03, 0.03, 0.8, "any", Channel.BANK_TRANSFER, 0.0,
          ("Faster Payment received", "Transfer from family"), credit=True),
    Spend(Category.REFUND, "none", 0.01, 0.01, 0.7, "day", Channel.CARD, 0.5, ("Amazon", "Argos", "Next"), credit=True),
)  # fmt: skip

EMPLOYERS = (
    "NHS Payroll", "Tesco Stores Ltd", "Royal Mail Group", "BT Group", "Sainsbury's Payroll", "HSBC UK Payroll",
    "Amazon UK Services", "City Council Payroll", "Capita Payroll", "Serco Ltd", "Rolls-Royce plc", "BAE Systems",
    "Unilever UK", "Network Rail", "Deloitte LLP", "Whitbread Group", "Compass Group UK", "Balfour Beatty",
)  # fmt: skip
LANDLORDS = ("Foxtons Lettings", "Nationwide Mortgage", "Halifax Mortgage", "Clarion Housing", "Peabody Trust",
             "Santander Mortgage", "Grainger Lettings", "Local Housing Association")  # fmt: skip
SUPPLIERS: Mapping[str, tuple[str, ...]] = {
    "energy": ("British Gas", "Octopus Energy", "EDF Energy", "E.ON Next", "OVO Energy", "Scottish Power"),
    "telecom": ("BT", "Sky", "Virgin Media", "Vodafone", "EE", "O2", "Three"),
    "subscription": ("Netflix", "Spotify", "Disney+", "Amazon Prime", "PureGym", "Apple Services"),
}
#: Single merchants the simulator uses by name.
FIXED = (
    "Kwik Fit", "Aviva Insurance", "Equilibrate Personal Loan", "Equilibrate Credit Card", "Transfer from savings",
    "QuickCash Loans", "Returned payment fee", "Overdraft interest", "Transfer to savings",
)  # fmt: skip
# When things happen (UTC hours; the customers live mostly in the UK): (from, to, weight) ranges.
HOURS: Mapping[str, tuple[tuple[int, int, float], ...]] = {
    "night": ((0, 5, 1.0),),  # BACS credits land overnight
    "early": ((5, 8, 1.0),),  # direct debits are collected first thing
    "fees": ((3, 5, 1.0),),
    "day": ((8, 21, 1.0), (21, 23, 0.3)),
    "meal": ((7, 9, 0.6), (11, 14, 2.0), (17, 21, 2.0), (21, 23, 0.5)),
    "commute": ((6, 9, 2.0), (9, 17, 0.6), (17, 20, 2.0), (20, 24, 0.4)),
    "evening": ((10, 18, 0.4), (18, 24, 2.0), (0, 2, 0.5)),
    "any": ((7, 23, 1.0),),
}


def hour_weights(profile: str) -> np.ndarray:
    """The HOURS profile as 24 probabilities."""
    w = np.zeros(24)
    for lo, hi, weight in HOURS[profile]:
        w[lo:hi] += weight
    weights: np.ndarray = w / w.sum()
    return weights
