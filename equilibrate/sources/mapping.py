"""How a bank's own export maps onto our transaction event: the config model and the row mapping.

Pure logic, no I/O: `replay` reads the file and sends the events. Conversion is columnar
(pyarrow.compute / numpy) because an export can hold millions of rows and per-row validation
would dominate the replay. Instead of raising, each bad row gets the first reason it fails on
(`REASONS`), so one bad row never stops a replay.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator

from equilibrate.errors import ConfigError
from equilibrate.schema import SCHEMA_VERSION, Category, Channel, Direction, Status

#: Fields a source column can be mapped to (`columns:` in YAML, `--map FIELD=COLUMN`).
FIELDS: tuple[str, ...] = ("customer_id", "ts", "amount", "direction", "debit_amount", "credit_amount", "category")
FIELDS += ("balance_after", "txn_id", "merchant", "channel", "currency", "status")
#: Reject reasons in the order rows are checked (a row gets the first it fails): the mapped field
#: whose value the detail shows, and a hint.
REASONS: dict[str, tuple[str, str]] = {
    "missing_customer": ("customer_id", " (blank)"),
    "bad_customer_id": ("customer_id", " (longer than 64 characters)"),
    "bad_date": ("ts", " (expected date_format {m.date_format}, between 1900 and 2100)"),
    "bad_amount": ("amount", " (not a number)"),
    "zero_amount": ("amount", ""),
    "unknown_direction": ("direction", " (not in direction_map, nor debit/credit/dr/cr)"),
    "unmapped_category": ("category", " (not in category_map and no category_default)"),
    "bad_balance": ("balance_after", " (not a number)"),
    "unknown_channel": ("channel", " (not in channel_map and no channel_default)"),
    "unknown_status": ("status", " (not in status_map, nor ok/failed, and no status_default)"),
    "bad_currency": ("currency", " (not a 3-letter code)"),
    "bad_txn_id": ("txn_id", " (longer than 128 characters)"),
}
_REASON_NAMES = list(REASONS)
#: The event's fields in `Transaction` order (schema_version last), as `Events.columns` holds them.
EVENT_FIELDS: tuple[str, ...] = ("txn_id", "customer_id", "ts", "amount", "direction", "category", "channel")
EVENT_FIELDS += ("merchant", "balance_after", "currency", "status")
DATE_KINDS = ("iso", "epoch_s", "epoch_ms")
MALFORMED = "malformed_row"  # wrong number of fields: found by the reader, reported beside REASONS
_MIN_US, _MAX_US = -2_208_988_800_000_000, 4_102_444_800_000_000  # 1900-01-01 .. 2100-01-01 UTC
_TIME = r"[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?"
_ZONE = r"(Z|[+-]\d{2}(:?\d{2})?)"
_ISO = rf"^\d{{4}}-\d{{2}}-\d{{2}}({_TIME}{_ZONE}?)?$"
_OFFSET = rf"{_TIME}{_ZONE}$"  # an offset only counts after a time: 2024-01-31 is naive
_NUMBER = r"^[+-]?(\d+(\.\d*)?|\.\d+)$"

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
Mask = NDArray[np.bool_]


class MappingError(ConfigError):
    """The mapping is incomplete or names something that does not exist."""


class ReplayMapping(BaseModel):
    """One bank export layout. YAML keys and CLI flags share these names (`date_format` = `--date-format`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    columns: dict[str, str]
    format: Literal["csv", "parquet"] | None = None  # None: from the file name
    delimiter: str = ","
    encoding: str = "utf-8"
    date_format: str = "iso"  # iso, epoch_s, epoch_ms or a strptime format such as %d/%m/%Y %H:%M
    timezone: str = "UTC"  # for naive times; ambiguous -> the earlier, in a DST gap -> its end
    signed_amount: bool = False  # negative amount = debit, instead of a direction column
    decimal_comma: bool = False  # 1.234,56 instead of 1,234.56
    currency: str = "GBP"  # constant, or the fallback when a currency column is blank
    category_map: dict[str, Category] = {}
    category_default: Category | None = None  # None ("reject"): unmapped codes are rejected
    direction_map: dict[str, Direction] = {}
    channel_map: dict[str, Channel] = {}
    channel_default: Channel | None = Channel.OTHER
    status_map: dict[str, Status] = {}
    status_default: Status | None = None

    @field_validator("columns")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        for name, column in value.items():
            if name not in FIELDS:
                raise ValueError(f"unknown field {name!r} (known: {', '.join(FIELDS)})")
            if not column:
                raise ValueError(f"empty column name for {name}")
        return value

    @field_validator("category_default", "channel_default", "status_default", mode="before")
    @classmethod
    def _reject_means_none(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in {"reject", "none", ""} else value

    @field_validator("category_map", "direction_map", "channel_map", "status_map")
    @classmethod
    def _fold_codes(cls, value: dict[str, Any]) -> dict[str, Any]:
        return {code.strip().casefold(): target for code, target in value.items()}

    @field_validator("delimiter", "date_format", "timezone", "currency")
    @classmethod
    def _scalars(cls, value: str, info: ValidationInfo) -> str:
        if info.field_name == "delimiter":
            value = {"tab": "\t", "\\t": "\t"}.get(value, value)
            if len(value) != 1:
                raise ValueError(f"expected one character (or 'tab'), got {value!r}")
        elif info.field_name == "date_format" and value not in DATE_KINDS and "%" not in value:
            raise ValueError(f"expected iso, epoch_s, epoch_ms or a strptime format like %d/%m/%Y, got {value!r}")
        elif info.field_name == "currency":
            if not re.fullmatch(r"[A-Za-z]{3}", value):
                raise ValueError(f"expected a 3-letter ISO code such as GBP, got {value!r}")
            value = value.upper()
        elif info.field_name == "timezone":
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r} (e.g. Europe/London, Asia/Kolkata, UTC)") from None
        return value

    @model_validator(mode="after")
    def _complete(self) -> ReplayMapping:
        cols = self.columns
        for name in ("customer_id", "ts", "balance_after"):
            if name not in cols:
                raise ValueError(f"no column mapped for {name} (--map {name}=COLUMN)")
        if "category" not in cols and self.category_default is None:
            raise ValueError("no column mapped for category (--map category=COLUMN) and no category_default")
        split = "debit_amount" in cols or "credit_amount" in cols
        if split and not ("debit_amount" in cols and "credit_amount" in cols and "amount" not in cols):
            raise ValueError("map both debit_amount and credit_amount (paid out / paid in), and not amount")
        if not split and "amount" not in cols:
            raise ValueError("no column mapped for amount (--map amount=COLUMN)")
        if split and ("direction" in cols or self.signed_amount):
            raise ValueError("debit_amount/credit_amount already give the direction: drop direction/signed_amount")
        if not split and ("direction" in cols) == self.signed_amount:
            raise ValueError("map a direction column (--map direction=COLUMN) or set signed_amount, not both")
        return self


def build_mapping(*layers: Mapping[str, Any]) -> ReplayMapping:
    """Merge layers (YAML first, then CLI flags) and validate; one line names the first problem.

    Later layers win; `columns` and the value maps merge key by key, so a CLI flag can fix one
    entry of a YAML file without repeating the rest.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    try:
        return ReplayMapping.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key (known: {', '.join(ReplayMapping.model_fields)})"
        elif err["type"] == "missing":
            msg = "required (map the columns with --map FIELD=COLUMN or `columns:` in the YAML)"
        elif isinstance(err.get("input"), str | int | float) and repr(err["input"]) not in msg:
            msg = f"{msg}, got {err['input']!r}"
        raise MappingError(f"mapping: {where + ': ' if where else ''}{msg}") from None


def parse_pairs(pairs: Sequence[str], flag: str) -> dict[str, str]:
    """`KEY=VALUE` flags (--map customer_id=AcctNo, --category-map GROC=groceries) as a dict."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise MappingError(f"{flag} expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def check_columns(mapping: ReplayMapping, available: Sequence[str]) -> None:
    """Refuse a mapping that names a column the file does not have, before reading any row."""
    for name, column in mapping.columns.items():
        if column not in available:
            have = ", ".join(repr(c) for c in available)
            hint = " (one column only: is the delimiter right?)" if len(available) == 1 else ""
            raise MappingError(f"column {column!r} (mapped to {name}) is not in the file; its columns: {have}{hint}")
        if list(available).count(column) > 1:
            raise MappingError(f"column {column!r} (mapped to {name}) appears more than once in the file")


@dataclass(slots=True)
class Events:
    """Accepted rows in event-time order (stable for ties): one list per `EVENT_FIELDS` entry."""

    line: I64
    ts_us: I64
    columns: list[list[Any]]

    def __len__(self) -> int:
        return len(self.line)

    def dicts(self) -> Iterator[dict[str, Any]]:
        """Each event in `Transaction` field order, timestamps as `format_ts` writes them."""
        for t, c, ts, a, d, cat, ch, m, b, cur, st in zip(*self.columns, strict=True):
            yield {
                "txn_id": t,
                "customer_id": c,
                "ts": ts,
                "amount": a,
                "direction": d,
                "category": cat,
                "channel": ch,
                "merchant": m,
                "balance_after": b,
                "currency": cur,
                "status": st,
                "schema_version": SCHEMA_VERSION,
            }

    def encoded(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs: the bytes `Transaction.to_json` gives (ts via `format_ts`), no pydantic per row."""
        dumps = orjson.dumps
        for event in self.dicts():
            yield event["customer_id"].encode(), dumps(event)


@dataclass(slots=True)
class Rejects:
    """Rows that could not be mapped: source row index, 1-based line, reason code, detail."""

    row: I64
    line: I64
    reason: list[str]
    detail: list[str]
    counts: Counter[str] = field(default_factory=Counter)


def map_rows(table: pa.Table, mapping: ReplayMapping, *, source_name: str, lines: I64) -> tuple[Events, Rejects]:
    """Map every row of `table` (line numbers in `lines`); split into events and rejects."""
    n, cols, codes = table.num_rows, mapping.columns, np.zeros(table.num_rows, dtype=np.int8)

    def column(name: str) -> pa.Array:
        return table.column(cols[name]).combine_chunks()

    def fail(reason: str, bad: Mask) -> None:
        codes[(codes == 0) & bad] = _REASON_NAMES.index(reason) + 1

    customer = _strings(column("customer_id"))
    fail("missing_customer", _np(pc.equal(customer, "")))
    fail("bad_customer_id", _np(pc.greater(pc.utf8_length(customer), 64)))
    ts_us, ts_ok = _times(column("ts"), mapping.date_format, mapping.timezone)
    fail("bad_date", ~ts_ok)
    if "debit_amount" in cols:
        out, out_ok = _numbers(column("debit_amount"), mapping.decimal_comma, blank=0.0)
        inn, in_ok = _numbers(column("credit_amount"), mapping.decimal_comma, blank=0.0)
        both = (np.abs(out) > 0) & (np.abs(inn) > 0)
        amount, amount_ok = np.where(np.abs(out) > 0, -np.abs(out), np.abs(inn)), out_ok & in_ok & ~both
    else:
        amount, amount_ok = _numbers(column("amount"), mapping.decimal_comma)
    fail("bad_amount", ~amount_ok | ~(np.abs(amount) < 1e10))
    fail("zero_amount", amount == 0)
    if "direction" in cols:
        lookup = {"debit": "debit", "credit": "credit", "dr": "debit", "cr": "credit", **mapping.direction_map}
        direction, dir_ok = _lookup(_strings(column("direction")), lookup, None)
        fail("unknown_direction", ~dir_ok)
    else:
        direction = np.where(amount < 0, "debit", "credit").astype(object)
    if "category" in cols:
        codes_ = _strings(column("category"))
        category, cat_ok = _lookup(codes_, _table(Category, mapping.category_map), mapping.category_default)
        fail("unmapped_category", ~cat_ok)
    else:
        category = np.full(n, str(mapping.category_default), dtype=object)
    balance, balance_ok = _numbers(column("balance_after"), mapping.decimal_comma)
    fail("bad_balance", ~balance_ok)
    channel, status = np.full(n, "other", dtype=object), np.full(n, "ok", dtype=object)
    if "channel" in cols:
        given = _strings(column("channel"))
        channel, ok = _lookup(given, _table(Channel, mapping.channel_map), mapping.channel_default)
        fail("unknown_channel", ~ok)
    if "status" in cols:
        given = _strings(column("status"))
        status, ok = _lookup(given, _table(Status, mapping.status_map), mapping.status_default)
        fail("unknown_status", ~ok)
    currency = pa.repeat(mapping.currency, n)
    if "currency" in cols:
        given = pc.utf8_upper(_strings(column("currency")))
        currency = pc.if_else(pc.equal(given, ""), currency, given)
        fail("bad_currency", ~_np(pc.match_substring_regex(currency, r"^[A-Z]{3}$")))
    txn = _strings(column("txn_id")) if "txn_id" in cols else pa.repeat("", n)
    fail("bad_txn_id", _np(pc.greater(pc.utf8_length(txn), 128)))

    accepted = np.flatnonzero(codes == 0)
    order = accepted[np.argsort(ts_us[accepted], kind="stable")]
    take = pa.array(order, pa.int64())
    txn_ids = pc.take(txn, take).to_pylist()
    missing = [i for i, t in enumerate(txn_ids) if not t]
    if missing:
        blake2b = hashlib.blake2b
        keys = _row_keys(table, order[missing], lines, source_name)
        hashed = ["rp-" + blake2b(key, digest_size=16).hexdigest() for key in keys]
        if len(missing) == len(txn_ids):
            txn_ids = hashed
        else:
            for i, txn_id in zip(missing, hashed, strict=True):
                txn_ids[i] = txn_id
    if "merchant" in cols:
        merchant = pc.utf8_rtrim_whitespace(pc.utf8_slice_codeunits(_strings(column("merchant")), 0, 200))
        merchants = pc.take(merchant, take).to_pylist()
    else:
        merchants = [""] * len(order)
    stamps = np.datetime_as_string(ts_us[order].astype("datetime64[us]"), unit="ms", timezone="UTC").tolist()
    values = [txn_ids, pc.take(customer, take).to_pylist(), stamps, np.abs(amount[order]).tolist()]
    values += [direction[order].tolist(), category[order].tolist(), channel[order].tolist(), merchants]
    currencies = pc.take(currency, take).to_pylist() if "currency" in cols else [mapping.currency] * len(order)
    values += [balance[order].tolist(), currencies, status[order].tolist()]
    events = Events(line=lines[order], ts_us=ts_us[order], columns=values)
    return events, _rejects(table, mapping, codes, lines)


def _rejects(table: pa.Table, mapping: ReplayMapping, codes: NDArray[np.int8], lines: I64) -> Rejects:
    """Reason and a detail naming the column and its value, for each rejected row, in line order."""
    rows = np.flatnonzero(codes)
    reasons = [_REASON_NAMES[c - 1] for c in codes[rows].tolist()]
    details = [""] * len(rows)
    by_reason: dict[str, list[int]] = {}
    for i, reason in enumerate(reasons):
        by_reason.setdefault(reason, []).append(i)
    split = "debit_amount" in mapping.columns
    for reason, idx in by_reason.items():
        take = pa.array(rows[idx], pa.int64())
        fields = ("debit_amount", "credit_amount") if split and "amount" in reason else (REASONS[reason][0],)
        shown = [
            [f"{mapping.columns[f]}={value!r}" for value in table.column(mapping.columns[f]).take(take).to_pylist()]
            for f in fields
        ]
        hint = REASONS[reason][1].format(m=mapping)
        if reason == "bad_amount" and split:
            hint = " (not a number, or both paid out and paid in)"
        for i, *parts in zip(idx, *shown, strict=True):
            details[i] = ", ".join(parts) + hint
    return Rejects(row=rows, line=lines[rows], reason=reasons, detail=details, counts=Counter(reasons))


def _np(arr: pa.Array) -> Mask:
    """A boolean pyarrow array as numpy, nulls as False."""
    out: Mask = pc.fill_null(arr, False).to_numpy(zero_copy_only=False)
    return out


def _strings(arr: pa.Array) -> pa.Array:
    """Any column as trimmed strings, nulls as ''."""
    if not pa.types.is_string(arr.type):
        arr = pc.cast(arr, pa.string())
    return pc.utf8_trim_whitespace(pc.fill_null(arr, ""))


def _row_keys(table: pa.Table, rows: I64, lines: I64, source_name: str) -> list[bytes]:
    """What a generated txn id hashes: file name, line number and the row's original values."""
    sub = table.take(pa.array(rows, pa.int64()))
    parts = [pc.fill_null(pc.cast(c, pa.string()), "") for c in sub.columns]
    head = [pa.repeat(source_name, len(rows)), pc.cast(pa.array(lines[rows]), pa.string())]
    keys: list[bytes] = pc.cast(pc.binary_join_element_wise(*head, *parts, "\x1f"), pa.binary()).to_pylist()
    return keys


def _table(enum: type[Category] | type[Channel] | type[Status], extra: Mapping[str, Any]) -> dict[str, str]:
    """Our own values map to themselves; the bank's codes are added on top."""
    return {member.value: member.value for member in enum} | {k: str(v) for k, v in extra.items()}


def _lookup(codes: pa.Array, table: Mapping[str, str], default: str | None) -> tuple[NDArray[np.object_], Mask]:
    """Map codes through `table` (case-insensitive), once per distinct code, not once per row."""
    encoded = pc.dictionary_encode(codes)
    distinct = [table.get(code.casefold(), default) for code in encoded.dictionary.to_pylist()]
    values = np.array([str(v) if v is not None else "" for v in distinct] or [""], dtype=object)
    known = np.array([v is not None for v in distinct] or [False])
    idx = encoded.indices.to_numpy(zero_copy_only=False)
    return values[idx], known[idx]


def _numbers(arr: pa.Array, decimal_comma: bool, blank: float | None = None) -> tuple[F64, Mask]:
    """Amounts as floats: thousands separators, currency signs, trailing minus and (1.00) allowed.

    A separator is only dropped when it groups digits in threes, so "12,50" without
    decimal_comma is rejected rather than read as 1250.
    """
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_decimal(arr.type):
        values = pc.cast(arr, pa.float64())
        if blank is not None:
            values = pc.fill_null(values, blank)
        out: F64 = values.to_numpy(zero_copy_only=False).astype(np.float64)
        return out, np.isfinite(out)
    text = _strings(arr)
    if blank is not None:
        text = pc.if_else(pc.equal(text, ""), "0", text)
    plain = _np(pc.match_substring_regex(text, r"^[+-]?\d+$" if decimal_comma else _NUMBER))
    if not plain.all():  # normalise only the rows that are not plain numbers already
        odd = pa.array(~plain)
        text = pc.replace_with_mask(text, odd, _normalise(text.filter(odd), decimal_comma))
    ok = _np(pc.match_substring_regex(text, _NUMBER))
    parsed = pc.cast(pc.if_else(pa.array(ok), text, pa.scalar(None, pa.string())), pa.float64())
    out = parsed.to_numpy(zero_copy_only=False).astype(np.float64)
    return out, ok & np.isfinite(out)


def _normalise(text: pa.Array, decimal_comma: bool) -> pa.Array:
    """Bank-style amounts to plain numbers: "£1,234.50", "1.234,50-", "(7.25)" -> "1234.50", "-1234.50", "-7.25"."""
    text = pc.replace_substring_regex(text, r"[\s\x{00a0}\x{202f}'£€$₹]", "")
    text = pc.replace_substring_regex(text, r"^\((.+)\)$", r"-\1")
    text = pc.replace_substring_regex(text, r"^([^-].*)-$", r"-\1")
    group, point = (".", ",") if decimal_comma else (",", ".")
    grouped = pc.match_substring_regex(text, rf"^[+-]?\d{{1,3}}(\{group}\d{{3}})+(\{point}\d*)?$")
    text = pc.if_else(grouped, pc.replace_substring(text, group, ""), text)
    if decimal_comma:  # a point left over is not a thousands separator: refuse rather than guess
        text = pc.if_else(pc.match_substring(text, "."), "x", pc.replace_substring(text, ",", "."))
    return text


def _times(arr: pa.Array, date_format: str, zone: str) -> tuple[I64, Mask]:
    """Event times as UTC microseconds since the epoch, and which rows parsed.

    `kind` marks each row unparsed (0), naive local time (1, still to convert from `zone`) or UTC (2).
    """
    us, kind = np.zeros(len(arr), np.int64), np.zeros(len(arr), np.int8)
    if pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type):
        aware = pa.types.is_timestamp(arr.type) and arr.type.tz is not None
        stamps = pc.cast(arr, pa.timestamp("us", "UTC" if aware else None))
        us[:], kind[:] = _ints(stamps), np.where(_np(pc.is_valid(stamps)), 2 if aware else 1, 0)
    elif date_format in ("epoch_s", "epoch_ms"):
        seconds, ok = _numbers(arr, decimal_comma=False)
        scale = 1e6 if date_format == "epoch_s" else 1e3
        ok &= np.abs(np.where(ok, seconds, 0)) < 1e16 / scale
        us[:], kind[:] = np.round(np.where(ok, seconds, 0) * scale).astype(np.int64), np.where(ok, 2, 0)
    elif date_format == "iso":
        text = _strings(arr)
        valid = _np(pc.match_substring_regex(text, _ISO))
        has_offset = valid & _np(pc.match_substring_regex(text, _OFFSET))
        for rows, tz in ((valid & ~has_offset, None), (has_offset, "UTC")):
            if not rows.any():
                continue
            try:
                stamps = pc.cast(pc.if_else(pa.array(rows), text, pa.scalar(None, pa.string())), pa.timestamp("us", tz))
                us[rows], kind[rows] = _ints(stamps)[rows], 2 if tz else 1
            except pa.ArrowInvalid:  # e.g. 2024-02-30 somewhere in the column: settle it row by row
                _python_times(text, np.flatnonzero(rows), datetime.fromisoformat, us, kind)
    else:
        text = _strings(arr)
        parsed = pc.strptime(text, format=date_format, unit="us", error_is_null=True)
        ok = _np(pc.is_valid(parsed))
        us[:], kind[:] = _ints(parsed), np.where(ok, 2 if parsed.type.tz else 1, 0)
        # pyarrow rolls 31/02 over to 2 March and second 60 into the next minute: a row that may have
        # rolled over (day 1-3, second 0-1) is kept only if it formats back to its input.
        suspect = _np(pc.less_equal(pc.day(parsed), 3))
        if "%S" in date_format or "%T" in date_format:
            suspect |= _np(pc.less_equal(pc.second(parsed), 1))
        idx = pa.array(np.flatnonzero(suspect & ok), pa.int64())
        back = pc.strftime(pc.cast(parsed.take(idx), pa.timestamp("s", parsed.type.tz), safe=False), format=date_format)
        kind[idx.to_numpy()[~_np(pc.equal(back, text.take(idx)))]] = 0
        retry = np.flatnonzero((kind == 0) & _np(pc.not_equal(text, "")))
        _python_times(text, retry, lambda v: datetime.strptime(v, date_format), us, kind)  # noqa: DTZ007
    local = kind == 1
    if local.any() and zone != "UTC":
        naive = pa.array(us, pa.timestamp("us"), mask=~local)
        us[local] = _ints(pc.assume_timezone(naive, zone, ambiguous="earliest", nonexistent="latest"))[local]
    return us, (kind > 0) & (us >= _MIN_US) & (us < _MAX_US)


def _python_times(text: pa.Array, idx: I64, parse: Callable[[str], datetime], us: I64, kind: NDArray[np.int8]) -> None:
    """The strict slow path: Python's parser for the rows the vectorised one could not settle."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for i, value in zip(idx.tolist(), text.take(pa.array(idx, pa.int64())).to_pylist(), strict=True):
        try:
            moment = parse(value)
        except (ValueError, TypeError):
            continue
        aware = moment.tzinfo is not None
        us[i] = (moment - (epoch if aware else epoch.replace(tzinfo=None))) // timedelta(microseconds=1)
        kind[i] = 2 if aware else 1


def _ints(stamps: pa.Array) -> I64:
    """Timestamps as int64 microseconds (nulls as 0: callers track validity separately)."""
    out: I64 = pc.fill_null(pc.cast(stamps, pa.int64()), 0).to_numpy(zero_copy_only=False)
    return out
