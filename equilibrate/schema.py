"""The transaction event: the one schema every source produces and every consumer reads.

On the wire it is a JSON object (orjson), keyed by customer id. `Transaction` is the model
class that validates it; `parse_transaction` is the hot-path entry used by consumers.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from equilibrate.errors import InvalidEventError

SCHEMA_VERSION: Literal[1] = 1
#: Larger balances are data errors (and would overflow the engine's integer pennies).
MAX_BALANCE = 1e12


class Category(StrEnum):
    """What a transaction is for. Our own codes; replay maps a bank's codes onto these."""

    SALARY = "salary"
    BENEFITS = "benefits"
    TRANSFER_IN = "transfer_in"
    PAYDAY_LOAN = "payday_loan"
    REFUND = "refund"
    RENT = "rent"
    UTILITIES = "utilities"
    GROCERIES = "groceries"
    LOAN_REPAYMENT = "loan_repayment"
    CARD_REPAYMENT = "card_repayment"
    DINING = "dining"
    ENTERTAINMENT = "entertainment"
    TRAVEL = "travel"
    SHOPPING = "shopping"
    GAMBLING = "gambling"
    ATM_WITHDRAWAL = "atm_withdrawal"
    TRANSFER_OUT = "transfer_out"
    FEE = "fee"
    OTHER = "other"


#: Spend a household cannot easily cut: housing, bills, food and debt service.
ESSENTIAL = frozenset(
    {Category.RENT, Category.UTILITIES, Category.GROCERIES, Category.LOAN_REPAYMENT, Category.CARD_REPAYMENT}
)
#: Spend that can be cut when money is short.
DISCRETIONARY = frozenset(
    {Category.DINING, Category.ENTERTAINMENT, Category.TRAVEL, Category.SHOPPING, Category.GAMBLING}
)
#: Credits a household lives on, month after month: pay, pensions and benefits. Features call all
#: of them "salary" (days since salary, salary regularity); other credits are one-off income.
REGULAR_INCOME = frozenset({Category.SALARY, Category.BENEFITS})
#: Repayments of the bank's own credit products: a failed one is a missed payment (delinquency).
CREDIT_REPAYMENT = frozenset({Category.LOAN_REPAYMENT, Category.CARD_REPAYMENT})


class Direction(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"  # a returned direct debit: no money moved


class Channel(StrEnum):
    CARD = "card"
    DIRECT_DEBIT = "direct_debit"
    STANDING_ORDER = "standing_order"
    BANK_TRANSFER = "bank_transfer"
    ATM = "atm"
    ONLINE = "online"
    BRANCH = "branch"
    OTHER = "other"


class Transaction(BaseModel):
    """One booked (or failed) transaction on a customer's current account."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    txn_id: Annotated[str, Field(min_length=1, max_length=128)]
    customer_id: Annotated[str, Field(min_length=1, max_length=64)]
    ts: datetime  # event time, UTC
    amount: Annotated[float, Field(gt=0, lt=1e10, allow_inf_nan=False)]
    direction: Direction
    category: Category
    channel: Channel = Channel.OTHER
    merchant: Annotated[str, Field(max_length=200)] = ""
    balance_after: Annotated[float, Field(gt=-MAX_BALANCE, lt=MAX_BALANCE, allow_inf_nan=False)]
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "GBP"
    status: Status = Status.OK
    schema_version: Literal[1] = SCHEMA_VERSION

    @field_validator("ts")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        offset = value.utcoffset()
        if offset is None:
            raise ValueError("timestamp must carry a UTC offset (e.g. 2026-01-31T09:15:00Z)")
        if not offset:
            return value.replace(tzinfo=UTC)  # already UTC: much cheaper than astimezone
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("timestamp is out of range once converted to UTC") from None

    @property
    def is_payment_failed(self) -> bool:
        """A failed repayment of a credit product: the delinquency the engine exists to foresee."""
        return self.status is Status.FAILED and self.category in CREDIT_REPAYMENT

    @property
    def epoch_s(self) -> float:
        return self.ts.timestamp()

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    def to_txn(self) -> Txn:
        return Txn(
            self.txn_id,
            self.customer_id,
            self.ts,
            self.amount,
            self.direction,
            self.category,
            self.channel,
            self.merchant,
            self.balance_after,
            self.currency,
            self.status,
            self.schema_version,
        )


class Txn(NamedTuple):
    """A validated transaction as consumers carry it: immutable and cheap to create.

    Only `parse_transaction` (or `Transaction.to_txn`) makes these, so every Txn has passed the
    model's rules.
    """

    txn_id: str
    customer_id: str
    ts: datetime
    amount: float
    direction: Direction
    category: Category
    channel: Channel
    merchant: str
    balance_after: float
    currency: str
    status: Status
    schema_version: int

    @property
    def is_payment_failed(self) -> bool:
        return self.status is Status.FAILED and self.category in CREDIT_REPAYMENT


def format_ts(moment: datetime) -> str:
    """UTC ISO-8601 with a Z suffix and millisecond precision, as the wire format wants it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


_ISO_UTCISH = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")
_DIRECTIONS = {d.value: d for d in Direction}
_CATEGORIES = {c.value: c for c in Category}
_CHANNELS = {c.value: c for c in Channel}
_STATUSES = {s.value: s for s in Status}


def parse_transaction(raw: bytes | str) -> Txn:
    """Validate one wire event; raise InvalidEventError with a short reason code on any problem.

    Plainly well-formed events take a strict fast path; anything else (a string number, padding
    to strip, another time format, a missing optional field...) goes through the `Transaction`
    model, which decides and names the problem. Both give the same result (tests compare them).
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEventError("not_json", str(exc)) from None
    if not isinstance(data, dict):
        raise InvalidEventError("not_an_object", type(data).__name__)
    fast = _fast(data)
    if fast is not None:
        return fast
    try:
        return Transaction.model_validate(data).to_txn()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "event"
        raise InvalidEventError(_reason_for(field, first["type"]), f"{field}: {first['msg']}") from None


def _fast(d: dict[str, Any]) -> Txn | None:
    """The Txn for a plainly well-formed event, or None to let the model decide."""
    try:
        txn_id, cid, ts, amount, bal = d["txn_id"], d["customer_id"], d["ts"], d["amount"], d["balance_after"]
        direction, category = _DIRECTIONS[d["direction"]], _CATEGORIES[d["category"]]
        channel, status = _CHANNELS[d["channel"]], _STATUSES[d["status"]]
        merchant, currency, version = d["merchant"], d["currency"], d["schema_version"]
    except (KeyError, TypeError):
        return None
    if not (
        type(txn_id) is str
        and type(cid) is str
        and type(merchant) is str
        and type(currency) is str
        and type(ts) is str
        and type(version) is int
        and version == SCHEMA_VERSION
    ):
        return None
    if not (0 < len(txn_id) <= 128 and 0 < len(cid) <= 64 and len(merchant) <= 200 and len(currency) == 3):
        return None
    if txn_id != txn_id.strip() or cid != cid.strip() or merchant != merchant.strip() or currency != currency.strip():
        return None
    if type(amount) not in (float, int) or type(bal) not in (float, int) or not 0 < amount < 1e10:
        return None
    if not (math.isfinite(amount) and -MAX_BALANCE < bal < MAX_BALANCE) or _ISO_UTCISH.fullmatch(ts) is None:
        return None
    try:  # the regex admits 2026-02-30, hour 24, non-ASCII digits...: let the model reject those
        moment = datetime.fromisoformat(ts)
        if moment.tzinfo is not UTC:
            moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return Txn(
        txn_id,
        cid,
        moment,
        float(amount),
        direction,
        category,
        channel,
        merchant,
        float(bal),
        currency,
        status,
        version,
    )


def _reason_for(field: str, error_type: str) -> str:
    if error_type == "missing":
        return f"missing_{field}"
    if field == "amount":
        return "bad_amount"
    if field == "ts":
        return "bad_timestamp"
    if field == "schema_version":
        return "unsupported_schema_version"
    return f"bad_{field}"
