"""The intervention audit log's rows and hash chain (pure: no files; `audit_log` does the I/O).

One row per decision and action about a customer contact (CONC 7, Consumer Duty): what was
proposed, approved, sent, delivered, blocked or overridden, by whom, with what text and why. The
log is a CSV that compliance reviewers open in a spreadsheet, so it is written for one:

* one row is one physical line: inside a text cell a backslash is written `\\\\`, a line feed `\\n`,
  a carriage return `\\r` and any other control character but tab `\\xHH`;
* a text cell a spreadsheet would run as a formula (starting with = + - @ tab or CR and not a
  number), or one starting with an apostrophe, gets a leading apostrophe: `=1+2` is written `'=1+2`;
* text cells are quoted (CSV style, `"` doubled), numbers bare, an empty value is an empty cell.

Both escapes are part of the cell text, so `decode_cell` undoes them exactly: a message with
commas, quotes, line breaks, any script and a leading `=` reads back as sent.

Hash rule (a reviewer can recompute it with any CSV reader and any SHA-256 tool):

    cells    = the row's 24 cells as a CSV reader returns them (quotes removed, escapes kept)
    row_hash = sha256("\\x1f".join(cells[:-1]).encode("utf-8")).hexdigest()

`cells[:-1]` is every column but `row_hash` itself, `prev_hash` (the 23rd) included, so each row
commits to the row before it; the first row of the whole log has `prev_hash` = 64 zeros. U+001F
cannot occur inside a cell (control characters are escaped), so the join is unambiguous. Verify
walks the rows in chain order (rotated monthly files oldest first, then the current one) and names
the first row whose header, shape, content or link is wrong.

What a chain cannot show on its own: rows cut from the very end. `audit verify` prints the last
row's hash; recording it elsewhere (a report, a ticket) anchors everything before it.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime

from equilibrate.errors import EquilibrateError
from equilibrate.storage.history import is_number

#: Column order is part of the hash rule: append new columns only with a new file format.
COLUMNS: tuple[str, ...] = (
    "event_id",
    "recorded_at",
    "customer_id",
    "actor",
    "action",
    "case_id",
    "channel",
    "template_id",
    "template_version",
    "approval_ref",
    "language",
    "message",
    "risk_score",
    "risk_level",
    "hardship_type",
    "model_version",
    "reasons",
    "policy_checks",
    "policy_result",
    "delivery_status",
    "override_reason",
    "detail",
    "prev_hash",
    "row_hash",
)
EVENT_ID, RECORDED_AT, CUSTOMER_ID = 0, 1, 2
PREV_HASH, ROW_HASH = len(COLUMNS) - 2, len(COLUMNS) - 1
GENESIS_HASH = "0" * 64
SEPARATOR = "\x1f"

#: Kinds of event the engine, the console and the API record (others are accepted: see `_ACTION`).
ACTIONS: tuple[str, ...] = (
    "proposed",
    "approved",
    "rejected",
    "sent",
    "delivered",
    "failed",
    "blocked",
    "outcome",
    "override",
)

_ACTION = re.compile(r"[a-z][a-z0-9_]*")
_HASH = re.compile(r"[0-9a-f]{64}")
_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
# OWASP's formula starters (as in equilibrate.storage.history), plus the apostrophe so the escape is reversible.
_ESCAPE_START = ("=", "+", "-", "@", "\t", "\r", "'")
_CONTROL = re.compile(r"[\\\x00-\x08\x0a-\x1f\x7f]")
_UNESCAPE = re.compile(r"\\(\\|n|r|x[0-9a-f]{2})")
_CONTROL_NAMES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r"}
_NUMERIC = frozenset({"risk_score"})
_QUOTED = tuple(name not in _NUMERIC for name in COLUMNS)


class AuditError(EquilibrateError):
    """The audit log cannot be written or read as asked (the message names the file and why)."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """The business content of one row; the log adds event_id (unless given), recorded_at and the hashes."""

    customer_id: str
    action: str
    actor: str = "system"  # operator id, or `system` for the engine
    case_id: str = ""
    channel: str = ""
    template_id: str = ""
    template_version: str = ""
    approval_ref: str = ""
    language: str = ""
    message: str = ""  # the text exactly as sent
    risk_score: float | None = None
    risk_level: str = ""
    hardship_type: str = ""
    model_version: str = ""
    reasons: str = ""  # "; "-joined, as the risk engine writes them
    policy_checks: str = ""  # see format_checks
    policy_result: str = ""
    delivery_status: str = ""
    override_reason: str = ""
    detail: str = ""
    event_id: str = ""  # empty: the log assigns a fresh one

    def __post_init__(self) -> None:
        if not self.customer_id:
            raise AuditError("an audit record needs a customer_id")
        if not self.actor:
            raise AuditError("an audit record needs an actor (operator id or `system`)")
        if not _ACTION.fullmatch(self.action):
            raise AuditError(f"audit action must be a lower-case word such as `sent`, got {self.action!r}")
        if self.risk_score is not None and not math.isfinite(self.risk_score):
            raise AuditError(f"risk_score must be a finite number, got {self.risk_score!r}")


_TEXT_FIELDS = tuple(f.name for f in fields(AuditRecord) if f.name not in {"risk_score", "event_id"})


@dataclass(frozen=True, slots=True)
class AuditRow:
    """A row as written: its record, when, and its place in the chain."""

    record: AuditRecord
    event_id: str
    recorded_at: str
    prev_hash: str
    row_hash: str
    cells: tuple[str, ...]

    def line(self) -> str:
        return format_line(self.cells)


def format_checks(checks: Iterable[tuple[str, str]]) -> str:
    """Contact-policy checks as one compact cell: `consent:ok;quiet_hours:blocked(07:12 Europe/London)`."""
    return ";".join(f"{name}:{result}" for name, result in checks)


def recorded_at_text(moment: datetime) -> str:
    """ISO 8601 UTC to the millisecond, e.g. 2024-05-01T12:34:56.789Z (sorts as text)."""
    if moment.tzinfo is None:
        raise AuditError("recorded_at needs a timezone-aware datetime")
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def month_of(recorded_at: str) -> str:
    """YYYY-MM of a recorded_at cell; AuditError if it is not one."""
    month = recorded_at[:7]
    if not _MONTH.fullmatch(month):
        raise AuditError(f"recorded_at {recorded_at!r} is not an ISO 8601 timestamp")
    return month


def _control_name(match: re.Match[str]) -> str:
    char = match.group()
    return _CONTROL_NAMES.get(char) or f"\\x{ord(char):02x}"


def _control_char(match: re.Match[str]) -> str:
    code = match.group(1)
    if code == "\\":
        return "\\"
    if code == "n":
        return "\n"
    if code == "r":
        return "\r"
    return chr(int(code[1:], 16))


def encode_cell(text: str) -> str:
    """The cell text for a value: control characters escaped, formulas defused (see the module doc)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise AuditError(f"text is not valid Unicode: {text[:40]!r}") from None
    text = _CONTROL.sub(_control_name, text)
    if text.startswith(_ESCAPE_START) and not is_number(text):
        return "'" + text
    return text


def decode_cell(cell: str) -> str:
    """The value a cell holds: the exact inverse of encode_cell."""
    if cell.startswith("'"):
        cell = cell[1:]
    return _UNESCAPE.sub(_control_char, cell) if "\\" in cell else cell


def compute_hash(cells: Sequence[str]) -> str:
    """row_hash for a row's cells; `cells` may hold the row_hash cell too (it is left out)."""
    content = cells[:ROW_HASH]
    return hashlib.sha256(SEPARATOR.join(content).encode("utf-8", "surrogateescape")).hexdigest()


def _quote(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"'


def format_line(cells: Sequence[str]) -> str:
    """One CSV line with its newline: text quoted, a number in a numeric column bare, empty cells empty."""
    return (
        ",".join(
            _quote(cell) if cell and (quoted or not is_number(cell)) else cell
            for cell, quoted in zip(cells, _QUOTED, strict=True)
        )
        + "\n"
    )


def header_line() -> str:
    return format_line(COLUMNS)


def build_row(record: AuditRecord, *, recorded_at: str, prev_hash: str) -> AuditRow:
    """The row that follows `prev_hash` in the chain (a fresh event id unless the record has one)."""
    event_id = record.event_id or uuid.uuid4().hex
    values = {name: getattr(record, name) for name in _TEXT_FIELDS}
    values["risk_score"] = "" if record.risk_score is None else repr(float(record.risk_score))
    values.update(event_id=event_id, recorded_at=recorded_at)
    cells = [encode_cell(values[name]) for name in COLUMNS[:PREV_HASH]]
    cells.append(prev_hash)
    row_hash = compute_hash(cells)
    cells.append(row_hash)
    return AuditRow(record, event_id, recorded_at, prev_hash, row_hash, tuple(cells))


def chain_rows(records: Iterable[AuditRecord], *, recorded_at: str, prev_hash: str) -> list[AuditRow]:
    """Rows for `records` in order, each linked to the one before, the first to `prev_hash`."""
    rows = []
    for record in records:
        row = build_row(record, recorded_at=recorded_at, prev_hash=prev_hash)
        rows.append(row)
        prev_hash = row.row_hash
    return rows


def row_from_cells(cells: Sequence[str]) -> AuditRow:
    """Read a well-formed row back (hashes not checked: that is verify's job)."""
    if len(cells) != len(COLUMNS):
        raise AuditError(f"{len(cells)} columns, expected {len(COLUMNS)}")
    values = dict(zip(COLUMNS, map(decode_cell, cells), strict=True))
    score = values.pop("risk_score")
    try:
        risk_score = float(score) if score else None
    except ValueError:
        raise AuditError(f"risk_score {score!r} is not a number") from None
    text = {name: values[name] for name in _TEXT_FIELDS}
    record = AuditRecord(**text, risk_score=risk_score, event_id=values["event_id"])
    return AuditRow(record, values["event_id"], values["recorded_at"], cells[PREV_HASH], cells[ROW_HASH], tuple(cells))


def parse_cells(text: str) -> tuple[str, ...]:
    """The cells of one CSV line (without its newline); ValueError if it is not one CSV record."""
    try:
        return tuple(next(csv.reader([text], strict=True), []))
    except csv.Error as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class ParsedRow:
    """One physical line of a log file. Line 1 of every file is its header."""

    source: str  # the file's name
    line: int  # 1-based
    raw: bytes  # as read, newline included when there was one
    cells: tuple[str, ...] | None  # None: not a CSV record (see error)
    error: str = ""

    @property
    def terminated(self) -> bool:
        return self.raw.endswith(b"\n")

    @property
    def event_id(self) -> str:
        return self.cells[EVENT_ID] if self.cells and len(self.cells) == len(COLUMNS) else "?"


def parse_row(source: str, line: int, raw: bytes) -> ParsedRow:
    """Parse one line; bytes that are not UTF-8 are kept (surrogate-escaped) so they change the hash."""
    text = raw.decode("utf-8", "surrogateescape").removesuffix("\n")
    try:
        return ParsedRow(source, line, raw, parse_cells(text))
    except ValueError as exc:
        return ParsedRow(source, line, raw, None, str(exc))


@dataclass(frozen=True, slots=True)
class Break:
    """The first row that does not verify, and why."""

    source: str
    line: int
    event_id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source} line {self.line} (event {self.event_id}): {self.reason}"


@dataclass(frozen=True, slots=True)
class Verification:
    rows: int  # data rows read (headers excluded)
    verified: int  # data rows before the first break (all of them when ok)
    files: int
    first: tuple[str, str] | None  # (event_id, recorded_at) of the first row
    last: tuple[str, str] | None  # ... and of the last verified row
    last_hash: str  # row_hash of the last verified row (GENESIS_HASH for an empty log)
    broken: Break | None

    @property
    def ok(self) -> bool:
        return self.broken is None

    def summary(self) -> str:
        """One line for an operator or a reviewer."""
        if self.broken is not None:
            return f"audit log BROKEN at {self.broken}; {self.verified} row(s) before it verified"
        files = f"{self.files} file" if self.files == 1 else f"{self.files} files"
        text = f"audit log OK: {self.rows} rows in {files}, chain intact"
        if self.first and self.last:
            text += (
                f" (first {self.first[0]} at {self.first[1]}, last {self.last[0]} at {self.last[1]},"
                f" last hash {self.last_hash})"
            )
        return text


class ChainVerifier:
    """Feed it every line of every file in chain order; it keeps the first break and counts the rest.

    It keeps accepting lines after a break so an export can still copy well-formed rows.
    """

    def __init__(self, prev_hash: str = GENESIS_HASH) -> None:
        self.prev_hash = prev_hash
        self.rows = 0
        self.verified = 0
        self.sources: list[str] = []
        self.first: tuple[str, str] | None = None
        self.last: tuple[str, str] | None = None
        self.last_hash = prev_hash
        self.broken: Break | None = None
        self._prev_at: tuple[str, int] | None = None

    def _fail(self, row: ParsedRow, reason: str, event_id: str | None = None) -> None:
        if self.broken is None:
            self.broken = Break(row.source, row.line, row.event_id if event_id is None else event_id, reason)

    def feed(self, row: ParsedRow) -> bool:
        """Check one line; True when it is a data row with the right columns (whether or not it verifies)."""
        if not self.sources or self.sources[-1] != row.source:
            self.sources.append(row.source)
        header_gone = row.line == 1 and row.event_id not in {"?", COLUMNS[EVENT_ID]}  # a data row on line 1
        if not row.terminated:
            self._fail(row, "incomplete last line (no newline at the end of the file): an interrupted write")
        if row.line == 1 and row.cells != COLUMNS:
            self._fail(row, f"header missing or changed (expected the {len(COLUMNS)} audit columns)", "-")
        if row.line == 1 and not header_gone:
            return False
        return self._data_row(row)

    def _data_row(self, row: ParsedRow) -> bool:
        self.rows += 1
        cells = row.cells
        if cells is None:
            self._fail(row, f"not a CSV record ({row.error})")
            return False
        if len(cells) != len(COLUMNS):
            self._fail(row, f"{len(cells)} columns, expected {len(COLUMNS)} (a column missing or added)")
            return False
        if cells[ROW_HASH] != compute_hash(cells):
            self._fail(row, "content changed: row_hash does not match the row's cells")
        elif cells[PREV_HASH] != self.prev_hash:
            after = f"{self._prev_at[0]} line {self._prev_at[1]}" if self._prev_at else "the start of the log"
            self._fail(row, f"chain link broken: prev_hash is not the row_hash of the row before ({after})")
        self.prev_hash = cells[ROW_HASH]
        self._prev_at = (row.source, row.line)
        if self.broken is None:
            self.verified += 1
            self.last = (cells[EVENT_ID], cells[RECORDED_AT])
            self.first = self.first or self.last
            self.last_hash = cells[ROW_HASH]
        return True

    def result(self) -> Verification:
        return Verification(
            self.rows, self.verified, len(self.sources), self.first, self.last, self.last_hash, self.broken
        )


def verify_rows(rows: Iterable[ParsedRow], prev_hash: str = GENESIS_HASH) -> Verification:
    """Check a whole log's lines in chain order; the result names the first broken row."""
    verifier = ChainVerifier(prev_hash)
    for row in rows:
        verifier.feed(row)
        if verifier.broken is not None:
            break
    return verifier.result()


def is_hash(text: str) -> bool:
    return _HASH.fullmatch(text) is not None
