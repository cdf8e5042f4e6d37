"""Customer history CSV: its columns, its rows, its daily rotation (pure: no Redis, no files).

    <data_dir>/customer_history.csv                 the current day's snapshots (event time, UTC)
    <data_dir>/customer_history-YYYY-MM-DD.csv      a finished day
    <data_dir>/customer_history.state.json          the current file's day and the pass in progress

Days are event days (the stream watermark), never the wall clock, so a replay of last month
produces last month's files. Rows are for spreadsheets as much as for training: text is quoted,
numbers are bare, and a text cell a spreadsheet would run as a formula starts with an apostrophe.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import orjson

from equilibrate.features.compute import FEATURES
from equilibrate.risk.keys import RISK_FIELDS

CURRENT_NAME = "customer_history.csv"
STATE_NAME = "customer_history.state.json"
ROTATED_PREFIX = "customer_history-"
SCAN_DONE = -1  # Checkpoint.cursor once SSCAN has returned cursor 0: only `pending` is left

#: Risk fields worth keeping in history (the recommended action is policy, not a measurement).
RISK_COLUMNS: tuple[str, ...] = tuple(f for f in RISK_FIELDS if f != "recommended_action")
#: The `customer:{id}` fields a snapshot reads (HMGET), in column order.
READ_FIELDS: tuple[str, ...] = (*FEATURES, *RISK_COLUMNS)
COLUMNS: tuple[str, ...] = ("snapshot_at", "customer_id", *READ_FIELDS)

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NUMBER_BYTES = _NUMBER.pattern.encode()
# Several numbers joined by commas: a row's features checked in one C call instead of one per cell.
_NUMBER_LIST = re.compile(rb"%s(?:,%s)*" % (_NUMBER_BYTES, _NUMBER_BYTES))
# OWASP's list: a cell starting with one of these may run as a formula in Excel, LibreOffice, Sheets.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NEWLINES = re.compile(r"\r\n|\r|\n")
_NUMBER_START = frozenset("0123456789+-.")


def current_path(data_dir: Path) -> Path:
    return data_dir / CURRENT_NAME


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_NAME


def rotated_path(data_dir: Path, day: str, part: int = 0) -> Path:
    """Where a finished day goes; `part` > 0 only when that name is taken (a replayed day)."""
    suffix = f".{part}" if part else ""
    return data_dir / f"{ROTATED_PREFIX}{day}{suffix}.csv"


def snapshot_at(watermark_ms: int) -> str:
    """The stamp of a pass: its watermark as ISO 8601 UTC, to the second."""
    return datetime.fromtimestamp(watermark_ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_of(stamp: str) -> str:
    """The UTC day (YYYY-MM-DD) of a snapshot_at stamp; ValueError if it is not one."""
    return date.fromisoformat(stamp[:10]).isoformat()


def rotated_day(name: str) -> str | None:
    """The event day in a finished file's name (customer_history-YYYY-MM-DD[.n].csv); None otherwise."""
    if not name.startswith(ROTATED_PREFIX) or not name.endswith(".csv"):
        return None
    try:
        return day_of(name.removeprefix(ROTATED_PREFIX))
    except ValueError:
        return None


def expired(day: str, today: str, keep_days: int) -> bool:
    """Whether history of `day` is past retention on `today`: more than `keep_days` event days before
    it (0 keeps every day)."""
    if keep_days <= 0:
        return False
    return (date.fromisoformat(today) - date.fromisoformat(day)).days > keep_days


def needs_rotation(file_day: str | None, header_ok: bool, day: str) -> bool:
    """The current file must be set aside before a pass of `day` writes to it: it holds another
    day's rows, or its columns are not today's COLUMNS (FEATURES changed, or not our file)."""
    return not header_ok or (file_day is not None and file_day != day)


def is_number(text: str) -> bool:
    return text[:1] in _NUMBER_START and _NUMBER.fullmatch(text) is not None


def safe_text(text: str) -> str:
    """One line, and never a formula: `=1+2` becomes `'=1+2`; numbers such as -12.5 stay numbers."""
    if "\n" in text or "\r" in text:
        text = _NEWLINES.sub(" ", text)
    if text.startswith(_FORMULA_START) and not is_number(text):
        return "'" + text
    return text


def _quoted(text: str) -> str:
    return '"' + safe_text(text).replace('"', '""') + '"'


def _cell(value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        # Fast path for what Redis holds most: plain decimals such as 12, -12.5 (no regex, no call).
        core = value[1:] if value.startswith(b"-") else value
        if core.replace(b".", b"", 1).isdigit():
            return value.decode("ascii")
        value = value.decode("utf-8", "replace")
    if not value:
        return ""
    return value if is_number(value) else _quoted(value)


def header_line() -> str:
    return ",".join(f'"{name}"' for name in COLUMNS) + "\n"


def has_features(values: Sequence[bytes | str | None]) -> bool:
    """True when the profile holds any feature (values in READ_FIELDS order)."""
    return any(v is not None for v in values[: len(FEATURES)])


def format_row(stamp: str, customer_id: str, values: Sequence[bytes | str | None]) -> str:
    """One CSV line (with its newline): values in READ_FIELDS order, None for a missing field."""
    if len(values) != len(READ_FIELDS):
        raise ValueError(f"expected {len(READ_FIELDS)} values, got {len(values)}")
    n = len(FEATURES)
    try:
        joined = b",".join(values[:n])  # type: ignore[arg-type]  # TypeError if a value is None or str
    except TypeError:
        joined = b""
    if joined and _NUMBER_LIST.fullmatch(joined):  # the usual row: every feature a plain number
        cells = [joined.decode("ascii"), *map(_cell, values[n:])]
    else:
        cells = list(map(_cell, values))
    return ",".join([_quoted(stamp), _quoted(customer_id), *cells]) + "\n"


def stamp_of_line(line: str) -> str | None:
    """The snapshot_at of a data line written by format_row (None for the header or a broken line)."""
    if not line.startswith('"'):
        return None
    stamp = line[1 : line.find('"', 1)]
    try:
        day_of(stamp)
    except ValueError:
        return None
    return stamp


@dataclass
class Checkpoint:
    """What the sidecar records after every cycle: enough to resume after any crash.

    `size` is the current file's length when this checkpoint was saved: bytes past it belong to a
    cycle that never checkpointed, so they are cut off on restart and that cycle runs again.
    """

    day: str | None = None  # day of the rows in the current file (None: no rows yet)
    snapshot_at: str | None = None  # stamp of the newest pass
    done: bool = True  # that pass has covered every customer
    cursor: int = 0  # SSCAN cursor to continue the pass from (SCAN_DONE: the scan is complete)
    pending: list[str] = field(default_factory=list)  # ids SSCAN returned that the pass has yet to read
    rows: int = 0  # rows the pass has written so far
    size: int = 0

    def dumps(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: bytes) -> Checkpoint:
        """Parse a sidecar; ValueError if it is not one this version wrote."""
        try:
            data = orjson.loads(raw)
            cp = cls(**data)
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"unreadable checkpoint: {exc}") from None
        if not (isinstance(cp.cursor, int) and isinstance(cp.size, int) and isinstance(cp.pending, list)):
            raise ValueError("unreadable checkpoint: wrong field types")
        return cp
