"""The simulated bank's customer master (data/customers.csv) and the evaluation ground truth.

Customers are drawn with numpy in whole columns and named from small pre-generated Faker pools
(en_GB, plus en_IN for the Hindi speakers), so a million customers take seconds, not the hours
one Faker call per customer would. The persona a customer follows is *not* a customer attribute:
it lives only in ground_truth.csv, because it is the answer the engine is evaluated against and
must never become a feature or a model input.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from equilibrate.errors import ConfigError

log = logging.getLogger(__name__)

MAX_CUSTOMERS = 1_000_000
EMPLOYMENTS = ("employed", "self_employed", "contract", "student", "retired", "unemployed")
CHANNELS = ("email", "sms", "app", "voice")
INCOME_BANDS = ("under_1k", "1k_2k", "2k_3k", "3k_5k", "5k_plus")
_BAND_EDGES = (1000, 2000, 3000, 5000)
_CITIES = (
    ("London", 20, 30),
    ("Birmingham", 6, 10),
    ("Manchester", 6, 5),
    ("Leeds", 5, 3),
    ("Glasgow", 5, 2),
    ("Liverpool", 4, 1),
    ("Bristol", 4, 2),
    ("Sheffield", 4, 2),
    ("Edinburgh", 4, 2),
    ("Cardiff", 3, 1),
    ("Leicester", 3, 12),
    ("Nottingham", 3, 3),
    ("Newcastle", 3, 1),
    ("Belfast", 3, 1),
    ("Southampton", 2, 2),
    ("Coventry", 2, 5),
    ("Bradford", 3, 3),
    ("Brighton", 2, 1),
    ("Reading", 2, 4),
    ("Wolverhampton", 2, 6),
    ("Milton Keynes", 2, 3),
    ("Norwich", 2, 1),
    ("Plymouth", 2, 1),
    ("Aberdeen", 2, 1),
)  # (city, weight for everyone, weight for Hindi speakers)
_DOMAINS = ("gmail.com", "outlook.com", "hotmail.co.uk", "yahoo.co.uk", "icloud.com", "btinternet.com")
# Employment mix by age group (<23, 23-54, 55-65, 66+), columns in EMPLOYMENTS order.
_EMPLOYMENT_BY_AGE = np.array(
    [
        [0.30, 0.03, 0.05, 0.52, 0.00, 0.10],
        [0.70, 0.12, 0.09, 0.03, 0.00, 0.06],
        [0.55, 0.13, 0.07, 0.00, 0.20, 0.05],
        [0.07, 0.06, 0.01, 0.00, 0.86, 0.00],
    ]
)
# Median net monthly income (GBP) and spread by employment.
_INCOME_MEDIAN = np.array([2300.0, 2400.0, 2600.0, 750.0, 1500.0, 850.0])
_INCOME_SIGMA = np.array([0.40, 0.55, 0.35, 0.30, 0.35, 0.20])
# Preferred contact channel by age group (<35, 35-64, 65+), columns in CHANNELS order.
_CHANNEL_BY_AGE = np.array([[0.15, 0.20, 0.60, 0.05], [0.30, 0.27, 0.33, 0.10], [0.35, 0.20, 0.10, 0.35]])
_NAME_CLEAN = re.compile(r"[^a-z]")


class Customer(NamedTuple):
    """One row of customers.csv: static attributes the engine may use (never the persona).

    A NamedTuple rather than a frozen dataclass: immutable, and five times cheaper to build,
    which is what keeps a million customers within seconds.
    """

    customer_id: str
    name: str
    city: str
    age: int
    employment: str
    income_band: str
    monthly_income: float
    phone: str
    email: str
    preferred_channel: str
    language: str
    timezone: str
    consent_email: bool
    consent_sms: bool
    consent_app: bool
    consent_voice: bool
    vulnerable: bool
    accounts: str
    has_loan: bool
    loan_instalment: float | None
    loan_due_day: int | None
    has_card: bool
    card_min_payment: float | None
    card_due_day: int | None

    def as_row(self) -> dict[str, str]:
        """The CSV (and registry) form: booleans as true/false, absent values as empty strings."""
        return dict(zip(CUSTOMER_COLUMNS, map(_cell, self), strict=True))


class GroundTruth(NamedTuple):
    """Which persona a customer follows and when its distress starts and ends (day index from the start)."""

    customer_id: str
    persona: str
    distress_start_day: int | None
    recovery_day: int | None


CUSTOMER_COLUMNS: tuple[str, ...] = Customer._fields
TRUTH_COLUMNS: tuple[str, ...] = GroundTruth._fields
#: Customers are drawn in blocks of this size, each from its own random stream, so customer
#: C0000042 is the same person whether 300 or 1,000,000 customers are generated.
BLOCK = 10_000
_POOL_SIZES = (("en_GB", 800), ("en_IN", 400))

NamePools = dict[str, tuple[list[str], list[str]]]


def customer_id(index: int) -> str:
    """The id of the index-th customer (0-based): C0000001, C0000002, ..."""
    return f"C{index + 1:07d}"


def generate_customers(n: int, seed: int) -> list[Customer]:
    """`n` reproducible customers; the first k of them do not depend on n."""
    if not 1 <= n <= MAX_CUSTOMERS:
        raise ConfigError(f"the number of customers must be between 1 and {MAX_CUSTOMERS:,}, got {n:,}")
    pools = _name_pools(seed)
    out: list[Customer] = []
    for block in range((n + BLOCK - 1) // BLOCK):
        out.extend(_block(seed, block, pools, min(BLOCK, n - block * BLOCK)))
    return out


def _name_pools(seed: int) -> NamePools:
    """First and last names per locale, made once (Faker is slow per call, numpy then picks from them)."""
    from faker import Faker

    pools: NamePools = {}
    for locale, size in _POOL_SIZES:
        fake = Faker(locale)
        fake.seed_instance(seed)
        pools[locale] = ([fake.first_name() for _ in range(size)], [fake.last_name() for _ in range(size)])
    return pools


def _block(seed: int, block: int, pools: NamePools, keep: int) -> list[Customer]:
    """One block of customers, drawn as whole numpy columns, then zipped into rows."""
    n = BLOCK
    rng = np.random.default_rng([seed, 0, block])
    hindi = rng.random(n) < 0.08
    gb_first, gb_last = pools["en_GB"]
    in_first, in_last = pools["en_IN"]
    first_i = np.where(hindi, rng.integers(0, len(in_first), n), rng.integers(0, len(gb_first), n))
    last_i = np.where(hindi, rng.integers(0, len(in_last), n), rng.integers(0, len(gb_last), n))
    city_idx = np.where(hindi, _weighted(rng, n, [c[2] for c in _CITIES]), _weighted(rng, n, [c[1] for c in _CITIES]))
    age = np.clip(rng.normal(46, 17, n), 18, 92).astype(np.int64)
    employment = _choose_by_group(rng, np.digitize(age, [23, 55, 66]), _EMPLOYMENT_BY_AGE)
    income = np.maximum(np.round(_INCOME_MEDIAN[employment] * rng.lognormal(0.0, _INCOME_SIGMA[employment]), -1), 300)
    channel = _choose_by_group(rng, np.digitize(age, [35, 65]), _CHANNEL_BY_AGE)
    consents = rng.random((n, 4)) < np.array([0.72, 0.66, 0.60, 0.48])
    consents[np.arange(n), channel] = rng.random(n) < 0.96  # most consent to the channel they prefer
    vulnerable = rng.random(n) < 0.036 + 0.06 * (age >= 80) + 0.04 * (employment == 5)
    kolkata = hindi & (rng.random(n) < 0.4)
    savings = rng.random(n) < 0.55
    student = employment == 3
    has_loan = rng.random(n) < np.where(student, 0.05, 0.27)
    has_card = rng.random(n) < np.where(student, 0.20, 0.55)
    instalment = np.round(np.clip(income * rng.uniform(0.04, 0.14, n), 40, 900), 2)
    card_min = np.round(np.clip(income * rng.uniform(0.01, 0.06, n), 25, 300), 2)
    loan_day = rng.integers(1, 29, n)
    card_day = rng.integers(1, 29, n)
    phone = rng.integers(0, 1_000_000_000, n)
    email_num = rng.integers(1, 1000, n)
    domain = rng.integers(0, len(_DOMAINS), n)

    cities = [c[0] for c in _CITIES]
    bands = [INCOME_BANDS[b] for b in np.digitize(income[:keep], _BAND_EDGES).tolist()]
    clean = {name: _NAME_CLEAN.sub("", name.lower()) for pool in pools.values() for names in pool for name in names}
    base = block * BLOCK
    columns = zip(
        first_i[:keep].tolist(), last_i[:keep].tolist(), hindi[:keep].tolist(), city_idx[:keep].tolist(),
        age[:keep].tolist(), employment[:keep].tolist(), income[:keep].tolist(), phone[:keep].tolist(),
        email_num[:keep].tolist(), domain[:keep].tolist(), channel[:keep].tolist(), kolkata[:keep].tolist(),
        consents[:keep].tolist(), vulnerable[:keep].tolist(), savings[:keep].tolist(), has_loan[:keep].tolist(),
        instalment[:keep].tolist(), loan_day[:keep].tolist(), has_card[:keep].tolist(), card_min[:keep].tolist(),
        card_day[:keep].tolist(),
        strict=True,
    )  # fmt: skip
    out: list[Customer] = []
    for i, (fi, li, hi, city, ag, emp, inc, ph, num, dom, ch, kol, cons, vul, sav, loan, inst, lday, card, cmin,
            cday) in enumerate(columns):  # fmt: skip
        fn, ln = (in_first[fi], in_last[li]) if hi else (gb_first[fi], gb_last[li])
        products = ["current"] + ["savings"] * sav + ["credit_card"] * card + ["loan"] * loan
        out.append(
            Customer(
                customer_id(base + i),
                f"{fn} {ln}",
                cities[city],
                ag,
                EMPLOYMENTS[emp],
                bands[i],
                inc,
                f"+447{ph:09d}",
                f"{clean[fn]}.{clean[ln]}{num}@{_DOMAINS[dom]}",
                CHANNELS[ch],
                "hi" if hi else "en",
                "Asia/Kolkata" if kol else "Europe/London",
                cons[0],
                cons[1],
                cons[2],
                cons[3],
                vul,
                ";".join(products),
                loan,
                inst if loan else None,
                lday if loan else None,
                card,
                cmin if card else None,
                cday if card else None,
            )
        )
    return out


def _weighted(rng: np.random.Generator, n: int, weights: Sequence[float]) -> np.ndarray:
    p = np.asarray(weights, dtype=float)
    picked: np.ndarray = rng.choice(len(p), size=n, p=p / p.sum())
    return picked


def _choose_by_group(rng: np.random.Generator, group: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row, with the probabilities of the row's group (vectorised)."""
    cum = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    u = rng.random(len(group))
    chosen: np.ndarray = np.minimum((u[:, None] > cum[group]).sum(axis=1), probs.shape[1] - 1)
    return chosen


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, str]]) -> None:
    """Write next to the target, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def write_customers_csv(path: Path, customers: Sequence[Customer]) -> None:
    _write_csv(path, CUSTOMER_COLUMNS, [c.as_row() for c in customers])
    log.info("wrote %d customers to %s", len(customers), path)


def load_customers_csv(path: Path) -> list[Customer]:
    """Read customers.csv back into typed customers."""
    out: list[Customer] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = set(CUSTOMER_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ConfigError(f"{path} lacks the columns {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            try:
                out.append(_customer_from_row(row))
            except ValueError as exc:
                raise ConfigError(f"{path} line {line}: {exc}") from None
    return out


def _customer_from_row(row: dict[str, str]) -> Customer:
    def flag(name: str) -> bool:
        value = row[name].strip().lower()
        if value not in {"true", "false"}:
            raise ValueError(f"{name} must be true or false, got {row[name]!r}")
        return value == "true"

    def opt_int(name: str) -> int | None:
        return int(row[name]) if row[name] else None

    def opt_float(name: str) -> float | None:
        return float(row[name]) if row[name] else None

    return Customer(
        customer_id=row["customer_id"],
        name=row["name"],
        city=row["city"],
        age=int(row["age"]),
        employment=row["employment"],
        income_band=row["income_band"],
        monthly_income=float(row["monthly_income"]),
        phone=row["phone"],
        email=row["email"],
        preferred_channel=row["preferred_channel"],
        language=row["language"],
        timezone=row["timezone"],
        consent_email=flag("consent_email"),
        consent_sms=flag("consent_sms"),
        consent_app=flag("consent_app"),
        consent_voice=flag("consent_voice"),
        vulnerable=flag("vulnerable"),
        accounts=row["accounts"],
        has_loan=flag("has_loan"),
        loan_instalment=opt_float("loan_instalment"),
        loan_due_day=opt_int("loan_due_day"),
        has_card=flag("has_card"),
        card_min_payment=opt_float("card_min_payment"),
        card_due_day=opt_int("card_due_day"),
    )


def write_ground_truth(path: Path, truth: Sequence[GroundTruth]) -> None:
    """Persona and distress window per customer: for evaluation only, never for features."""
    _write_csv(path, TRUTH_COLUMNS, [dict(zip(TRUTH_COLUMNS, map(_cell, t), strict=True)) for t in truth])
    log.info("wrote ground truth for %d customers to %s", len(truth), path)


def load_ground_truth(path: Path) -> list[GroundTruth]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [
            GroundTruth(
                customer_id=row["customer_id"],
                persona=row["persona"],
                distress_start_day=int(row["distress_start_day"]) if row["distress_start_day"] else None,
                recovery_day=int(row["recovery_day"]) if row["recovery_day"] else None,
            )
            for row in csv.DictReader(fh)
        ]
