"""The intervention audit log on disk: append under a lock, rotate by month, read in chain order.

    <data_dir>/intervention_log.csv               the current month's rows
    <data_dir>/intervention_log-YYYY-MM.csv       a finished month (named by its first row's month;
    <data_dir>/intervention_log-YYYY-MM.N.csv      `.N` only if that name is taken)
    <data_dir>/intervention_log.lock              flock(2) target held by every append
    <data_dir>/intervention_log.torn              interrupted writes set aside (appended, never read back)

Several processes append at once (the console, the engine, the API). Each append takes an exclusive
flock on the lock file, reads the last row's hash from the current file's tail, writes all its rows
with one os.write on an O_APPEND descriptor, fsyncs, and only then releases the lock, so the chain
never forks and lines never interleave. recorded_at is stamped under the lock, so file order is
time order (on one host).

Rotation happens inside an append: when the new row's month is later than the month of the current
file's first row, the file is renamed to its month's name and a new file starts with a header; its
first row links to the last hash of the renamed file (after a crash between the two steps, the next
append finds no current rows and links to the newest rotated file instead).

A torn last line (power lost mid-write, a full disk; the file does not end with a newline) is dealt
with by the next append, under the lock: if the line is in fact a whole row whose row_hash matches
its cells (only its newline is missing, e.g. after an editor saved the file), the newline is added
and the row kept; otherwise its bytes are appended to `intervention_log.torn` with the file, line
and offset they came from, and the file is cut back to its last complete line. A complete row is
never removed; `audit verify` reports a torn line until then. This module only touches files.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from equilibrate.alert.audit import (
    COLUMNS,
    EVENT_ID,
    GENESIS_HASH,
    RECORDED_AT,
    ROW_HASH,
    AuditError,
    AuditRecord,
    AuditRow,
    ParsedRow,
    Verification,
    chain_rows,
    compute_hash,
    header_line,
    is_hash,
    month_of,
    parse_cells,
    parse_row,
    recorded_at_text,
    row_from_cells,
    verify_rows,
)

log = logging.getLogger(__name__)

CURRENT_NAME = "intervention_log.csv"
LOCK_NAME = "intervention_log.lock"
TORN_NAME = "intervention_log.torn"
_ROTATED = re.compile(r"intervention_log-(\d{4}-\d{2})(?:\.(\d+))?\.csv")
_CHUNK = 64 * 1024
_HEADER = header_line().encode("utf-8")
_STOPPED = "appends stopped: run `equilibrate audit verify`"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def rotated_path(data_dir: Path, month: str, part: int = 0) -> Path:
    suffix = f".{part}" if part else ""
    return data_dir / f"intervention_log-{month}{suffix}.csv"


class AuditLog:
    """Append-only, hash-chained, monthly-rotated CSV of every contact decision and action."""

    def __init__(self, data_dir: Path, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self.data_dir = data_dir
        self.clock = clock

    @property
    def path(self) -> Path:
        return self.data_dir / CURRENT_NAME

    @property
    def torn_path(self) -> Path:
        return self.data_dir / TORN_NAME

    # --- writing -------------------------------------------------------------------------------

    def append(self, record: AuditRecord) -> AuditRow:
        """Record one event durably (fsynced) and return the row as written, hashes included."""
        return self.append_many([record])[0]

    def append_many(self, records: Sequence[AuditRecord]) -> list[AuditRow]:
        """Record several events in one write (one lock, one fsync), in order, sharing one recorded_at."""
        if not records:
            return []
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _locked(self.data_dir / LOCK_NAME, fcntl.LOCK_EX):
            return self._append_locked(records)

    def append_queued(self, take: Callable[[], Sequence[AuditRecord]], done: Callable[[], None]) -> list[AuditRow]:
        """Move records from a durable queue into the log, all under the lock.

        `take` reads the queue's records (each with its event_id); those whose event ids already end
        the log are skipped: an earlier writer appended them and died before `done` removed them from
        the queue (only queue writers append, under this lock, so such rows are always the last ones).
        The rest are appended and fsynced, then `done` removes them all from the queue.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _locked(self.data_dir / LOCK_NAME, fcntl.LOCK_EX):
            records = list(take())
            if not records:
                done()  # whatever was taken and set aside
                return []
            if any(not record.event_id for record in records):
                raise AuditError("queued audit records need their event_id (it is how a replay is recognised)")
            written = self._last_event_ids(len(records))
            fresh = [record for record in records if record.event_id not in written]
            if len(fresh) < len(records):
                log.info("audit log: %d queued row(s) were already written; not writing them twice",
                         len(records) - len(fresh))  # fmt: skip
            rows = self._append_locked(fresh) if fresh else []
            done()
            return rows

    def _last_event_ids(self, count: int) -> set[str]:
        """The event ids of the current file's last `count` complete rows."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return set()
        try:
            end = os.fstat(fd).st_size
            if end and os.pread(fd, 1, end - 1) != b"\n":
                end = _line_start(fd, end - 1)  # a torn last line is no row
            found: set[str] = set()
            while end > 0 and len(found) < count:
                start = _line_start(fd, end - 1)
                cells = _cells(os.pread(fd, end - start, start))
                if start == 0 or cells is None or len(cells) != len(COLUMNS):
                    break  # the header (or something verify will report)
                found.add(cells[EVENT_ID])
                end = start
            return found
        finally:
            os.close(fd)

    def _append_locked(self, records: Sequence[AuditRecord]) -> list[AuditRow]:
        stamp = recorded_at_text(self.clock())
        path = self.path
        fd = _open_current(path)
        try:
            size = self._repair_tail(fd, path)
            first = _first_row(fd, size, path)
            if first is None:
                prev_hash = self._previous_file_hash()
            else:
                prev_hash = _last_hash(fd, size, path)
                try:
                    file_month = month_of(first[RECORDED_AT])
                except AuditError as exc:
                    raise AuditError(f"{path} line 2: {exc}; {_STOPPED}") from None
                if month_of(stamp) > file_month:
                    os.close(fd)
                    fd = -1
                    self._rotate(path, file_month)
                    fd = _open_current(path)
                    size = 0
            rows = chain_rows(records, recorded_at=stamp, prev_hash=prev_hash)
            data = b"".join(row.line().encode("utf-8") for row in rows)
            _write_all(fd, _HEADER + data if size == 0 else data, size, path)
            os.fsync(fd)
        finally:
            if fd >= 0:
                os.close(fd)
        if size == 0:
            _fsync_dir(self.data_dir)
        return rows

    def _repair_tail(self, fd: int, path: Path) -> int:
        """Deal with a last line that has no newline (see the module doc); returns the file's size."""
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return size
        start = _line_start(fd, size - 1)
        fragment = os.pread(fd, size - start, start)
        line = _count_newlines(fd, start) + 1
        if start > 0 and _is_whole_row(fragment):
            _write_all(fd, b"\n", size, path)
            os.fsync(fd)
            log.warning("%s line %d had no newline; added it (the row is complete and kept)", path, line)
            return size + 1
        note = f"# {recorded_at_text(_utc_now())} {path.name} line {line} offset {start}: {len(fragment)} bytes\n"
        torn = os.open(self.torn_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            _write_all(torn, note.encode("utf-8") + fragment + b"\n", os.fstat(torn).st_size, self.torn_path)
            os.fsync(torn)
        finally:
            os.close(torn)
        os.ftruncate(fd, start)
        os.fsync(fd)
        log.warning(
            "%s line %d: an interrupted write (%d bytes, no newline) was moved to %s",
            path,
            line,
            len(fragment),
            self.torn_path,
        )
        return start

    def _rotate(self, path: Path, month: str) -> None:
        part = 0
        while (target := rotated_path(self.data_dir, month, part)).exists():
            part += 1
        os.rename(path, target)
        _fsync_dir(self.data_dir)
        log.info("audit log: %s rotated to %s", path, target.name)

    def _previous_file_hash(self) -> str:
        """Where a new current file's chain starts: the newest rotated file's last row, or genesis."""
        rotated = self.rotated_files()
        if not rotated:
            return GENESIS_HASH
        newest = rotated[-1]
        fd = os.open(newest, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size == 0 or os.pread(fd, 1, size - 1) != b"\n":
                raise AuditError(f"{newest} does not end with a complete line; {_STOPPED}")
            if _first_row(fd, size, newest) is None:
                raise AuditError(f"{newest} holds no rows; {_STOPPED}")
            return _last_hash(fd, size, newest)
        finally:
            os.close(fd)

    # --- reading -------------------------------------------------------------------------------

    def rotated_files(self) -> list[Path]:
        """Finished months, oldest first."""
        found = []
        for path in self.data_dir.glob("intervention_log-*.csv"):
            match = _ROTATED.fullmatch(path.name)
            if match:
                found.append((match.group(1), int(match.group(2) or 0), path))
        return [path for _, _, path in sorted(found)]

    def files(self) -> list[Path]:
        """Every file of the log in chain order: rotated months oldest first, then the current one."""
        current = [self.path] if self.path.exists() else []
        return [*self.rotated_files(), *current]

    def lines(self) -> Iterator[ParsedRow]:
        """Every physical line of every file, headers included, in chain order.

        The files are opened and their sizes taken under a shared lock, then read without it: a
        consistent snapshot (whole rows only, rotation cannot move a file away) that never holds up
        a writer for longer than a few opens.
        """
        with ExitStack() as stack:
            snapshot = []
            with _locked(self.data_dir / LOCK_NAME, fcntl.LOCK_SH, create=False):
                for path in self.files():
                    handle = stack.enter_context(path.open("rb"))
                    snapshot.append((path.name, handle, os.fstat(handle.fileno()).st_size))
            for name, handle, size in snapshot:
                number = 0
                while handle.tell() < size and (raw := handle.readline(size - handle.tell())):
                    number += 1
                    yield parse_row(name, number, raw)

    def rows(self) -> Iterator[AuditRow]:
        """The data rows read back (values unescaped); AuditError names a line that is not a row."""
        for parsed in self.lines():
            if parsed.line == 1 and parsed.cells == COLUMNS:
                continue
            if parsed.cells is None:
                raise AuditError(f"{parsed.source} line {parsed.line}: not a CSV record ({parsed.error})")
            try:
                yield row_from_cells(parsed.cells)
            except AuditError as exc:
                raise AuditError(f"{parsed.source} line {parsed.line}: {exc}") from None

    def verify(self) -> Verification:
        return verify_rows(self.lines())


@contextmanager
def _locked(lock_path: Path, operation: int, *, create: bool = True) -> Iterator[None]:
    """flock the lock file. A fresh descriptor per call, so it excludes even threads of this process.

    Readers (create=False) go without the lock when there is no lock file (no writer ever ran here)
    or it cannot be opened (a read-only copy of the log).
    """
    try:
        flags = os.O_RDWR | os.O_CREAT if create else os.O_RDONLY
        fd = os.open(lock_path, flags | os.O_CLOEXEC, 0o600)
    except OSError:
        if create:
            raise
        yield
        return
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)  # releases the lock


def _open_current(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes, size_before: int, path: Path) -> None:
    """One os.write in practice; a short write (disk full) is finished or, failing that, undone."""
    view = memoryview(data)
    written = 0
    try:
        while written < len(data):
            n = os.write(fd, view[written:])
            if n <= 0:
                raise OSError(0, "no progress writing")
            written += n
    except OSError as exc:
        if written:
            try:
                os.ftruncate(fd, size_before)
            except OSError:
                log.exception("%s: could not undo a partial write; the next append sets it aside", path)
        raise AuditError(f"could not append to {path}: {exc.strerror or exc}") from None


def _line_start(fd: int, end: int) -> int:
    """Offset just after the last newline before `end` (0 if there is none)."""
    while end > 0:
        start = max(0, end - _CHUNK)
        at = os.pread(fd, end - start, start).rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0


def _read_line(fd: int, offset: int, size: int) -> bytes:
    """The line starting at `offset`, newline included (what is there if the file ends first)."""
    parts = []
    while offset < size:
        chunk = os.pread(fd, min(_CHUNK, size - offset), offset)
        if not chunk:
            break
        at = chunk.find(b"\n")
        if at >= 0:
            parts.append(chunk[: at + 1])
            break
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)


def _count_newlines(fd: int, end: int) -> int:
    count, offset = 0, 0
    while offset < end:
        chunk = os.pread(fd, min(16 * _CHUNK, end - offset), offset)
        if not chunk:
            break
        count += chunk.count(b"\n")
        offset += len(chunk)
    return count


def _cells(raw: bytes) -> tuple[str, ...] | None:
    try:
        return parse_cells(raw.decode("utf-8", "surrogateescape").removesuffix("\n"))
    except ValueError:
        return None


def _is_whole_row(raw: bytes) -> bool:
    cells = _cells(raw)
    return cells is not None and len(cells) == len(COLUMNS) and cells[ROW_HASH] == compute_hash(cells)


def _first_row(fd: int, size: int, path: Path) -> tuple[str, ...] | None:
    """The first data row's cells (None if there is none yet); AuditError if line 1 is not our header."""
    if size == 0:
        return None
    header = _read_line(fd, 0, size)
    if header != _HEADER:
        raise AuditError(f"{path} line 1 is not the audit log header; {_STOPPED}")
    if len(header) == size:
        return None
    cells = _cells(_read_line(fd, len(header), size))
    if cells is None or len(cells) != len(COLUMNS):
        raise AuditError(f"{path} line 2 is not an audit row; {_STOPPED}")
    return cells


def _last_hash(fd: int, size: int, path: Path) -> str:
    """row_hash of the last complete line (the file ends with a newline and holds a data row)."""
    start = _line_start(fd, size - 1)
    cells = _cells(os.pread(fd, size - start, start))
    if cells is None or len(cells) != len(COLUMNS) or not is_hash(cells[ROW_HASH]):
        raise AuditError(f"the last row of {path} is not an audit row; {_STOPPED}")
    return cells[ROW_HASH]
