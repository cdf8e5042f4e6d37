"""The transaction event: the one schema every source produces and every consumer reads.

On the wire it is a JSON object (orjson), keyed by customer id. `Transaction` is the model
class that validates it; `parse_transaction` is the hot-path entry used by consumers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from equilibrate.errors import InvalidEventError

SCHEMA_VERSION: Literal[1] = 1


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
    balance_after: Annotated[float, Field(allow_inf_nan=False)]
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "GBP"
    status: Status = Status.OK
    schema_version: Literal[1] = SCHEMA_VERSION

    @field_validator("ts")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamp must carry a UTC offset (e.g. 2026-01-31T09:15:00Z)")
        return value.astimezone(UTC)

    @property
    def is_payment_failed(self) -> bool:
        """A failed repayment of a credit product: the delinquency the engine exists to foresee."""
        return self.status is Status.FAILED and self.category in CREDIT_REPAYMENT

    @property
    def epoch_s(self) -> float:
        return self.ts.timestamp()

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


def format_ts(moment: datetime) -> str:
    """UTC ISO-8601 with a Z suffix and millisecond precision, as the wire format wants it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_transaction(raw: bytes | str) -> Transaction:
    """Validate one wire event; raise InvalidEventError with a short reason code on any problem."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEventError("not_json", str(exc)) from None
    if not isinstance(data, dict):
        raise InvalidEventError("not_an_object", type(data).__name__)
    try:
        return Transaction.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "event"
        raise InvalidEventError(_reason_for(field, first["type"]), f"{field}: {first['msg']}") from None


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
