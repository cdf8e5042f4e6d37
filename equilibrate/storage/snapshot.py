"""`equilibrate snapshot`: every customer's features, score, level and hardship into a daily CSV.

Every SNAPSHOT_INTERVAL_S a pass walks `eq:customers` with SSCAN and appends one row per customer
that has features, all stamped with the watermark the pass began at (event time). A pass is cut
into cycles of at most SNAPSHOT_BATCH customers (one SSCAN, one pipelined HMGET, one append), so
100k customers cost Redis twenty short reads instead of one long one, and a stop signal is seen
between any two of them. A pass whose watermark has not moved since the last one is skipped: it
would repeat the same rows under the same stamp.

Order of a cycle: append the rows and flush, then save the checkpoint (history.Checkpoint). After a
crash, bytes past the checkpoint are cut off and the pass resumes from the saved cursor, so a
restart writes no row twice and leaves no pass half done. The end of a pass fsyncs both files.

When a pass ends it is also indexed (storage/snapshot_index.py: its counts per level and hardship,
its scores sorted by customer), so the console draws levels over time and one customer's score
history without reading every customer's rows.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

import pyarrow as pa
import redis

from equilibrate.features.store import profile_key, watermark_ms
from equilibrate.ops.heartbeat import Heartbeat
from equilibrate.ops.stopping import StopFlag
from equilibrate.settings import Settings
from equilibrate.storage import history, snapshot_index
from equilibrate.storage.customer_registry import KNOWN_CUSTOMERS_KEY
from equilibrate.storage.redis_client import connect, wait_for_redis

log = logging.getLogger(__name__)
RETRY_SKIPPED_S = 10.0  # a pass skipped for want of new data is tried again this soon

TAIL_CHUNK = 64 * 1024
T = TypeVar("T")


class HistoryWriter:
    """The current CSV and its sidecar checkpoint: append, checkpoint, rotate by event day."""

    def __init__(self, data_dir: Path, *, retention_days: int = 0) -> None:
        self.data_dir = data_dir
        self.retention_days = retention_days
        self.path = history.current_path(data_dir)
        self.state_file = history.state_path(data_dir)
        self.cp = history.Checkpoint()
        self.header_ok = True  # the current file is absent, empty, or starts with today's COLUMNS
        self.pass_start: int | None = None  # where this pass's rows begin (None after a restart)
        self._fh: BinaryIO | None = None

    def recover(self) -> history.Checkpoint:
        """Reconcile the file with its checkpoint after a stop or a crash."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pass_start = None
        if not self.path.exists():
            self.cp = history.Checkpoint()
            self.header_ok = True
            return self.cp
        size = self.path.stat().st_size
        cp = self._load_checkpoint()
        if cp is not None and 0 < cp.size <= size:
            if size > cp.size:
                log.info("%s: cutting %d bytes written after the last checkpoint", self.path, size - cp.size)
                os.truncate(self.path, cp.size)
            self.cp = cp
        else:
            self.cp = self._checkpoint_from_file()
        with self.path.open("rb") as fh:
            first = fh.readline()
        self.header_ok = not first or first.decode("utf-8", "replace") == history.header_line()
        return self.cp

    def _load_checkpoint(self) -> history.Checkpoint | None:
        try:
            return history.Checkpoint.loads(self.state_file.read_bytes())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            log.warning("%s: %s; the current file's day is taken from its last row", self.state_file, exc)
            return None

    def _checkpoint_from_file(self) -> history.Checkpoint:
        """No usable sidecar (deleted, or older than the file): the last complete row tells the day."""
        complete, line = _last_line(self.path)
        if complete < self.path.stat().st_size:
            os.truncate(self.path, complete)  # a row cut short by a crash
        stamp = history.stamp_of_line(line)
        day = history.day_of(stamp) if stamp else None
        log.info("%s: day %s taken from its last row", self.path, day)
        return history.Checkpoint(day=day, snapshot_at=stamp, size=complete)

    def begin(self, stamp: str) -> Path | None:
        """Start a pass stamped `stamp`; returns where the previous day went if the file rotated."""
        day = history.day_of(stamp)
        rotated = None
        if self.path.exists() and history.needs_rotation(self.cp.day, self.header_ok, day):
            rotated = self._rotate(self.cp.day or day)
            self.prune(day)
        fh = self._open()
        if fh.tell() == 0:
            fh.write(history.header_line().encode())
        self.header_ok = True
        self.cp = history.Checkpoint(day=day, snapshot_at=stamp, done=False)
        self.append([], 0, [])
        self.pass_start = self.cp.size
        return rotated

    def _rotate(self, day: str) -> Path:
        self.close()
        part = 0
        while (target := history.rotated_path(self.data_dir, day, part)).exists():
            part += 1
        self.path.replace(target)
        log.info("history of %s closed: %s", day, target)
        return target

    def prune(self, today: str) -> int:
        """Delete finished days past retention (their CSVs and index); returns how many days went."""
        if self.retention_days <= 0:
            return 0
        gone: set[str] = set()
        for path in self.data_dir.glob(f"{history.ROTATED_PREFIX}*.csv"):
            day = history.rotated_day(path.name)
            if day is not None and history.expired(day, today, self.retention_days):
                path.unlink(missing_ok=True)
                gone.add(day)
        root = snapshot_index.index_root(self.data_dir)
        for folder in root.iterdir() if root.is_dir() else ():
            try:
                old = history.expired(history.day_of(folder.name), today, self.retention_days)
            except ValueError:
                continue  # not a day's folder
            if old and folder.is_dir():
                shutil.rmtree(folder)
                gone.add(folder.name)
        if gone:
            log.info(
                "history: deleted %d day(s) older than %d days (HISTORY_RETENTION_DAYS): %s to %s",
                len(gone), self.retention_days, min(gone), max(gone),
            )  # fmt: skip
        return len(gone)

    def _open(self) -> BinaryIO:
        if self._fh is None:
            self._fh = self.path.open("ab")
        return self._fh

    def append(self, lines: Sequence[str], cursor: int, pending: list[str]) -> None:
        """Append one cycle's rows, then checkpoint the pass's position after them."""
        fh = self._open()
        if lines:
            fh.write("".join(lines).encode())
        fh.flush()
        self.cp.cursor, self.cp.pending, self.cp.size = cursor, pending, fh.tell()
        self.cp.rows += len(lines)
        self._save(sync=False)

    def finish(self) -> None:
        """The pass has covered every customer: make it durable, then index it (snapshot_index)."""
        fh = self._open()
        fh.flush()
        os.fsync(fh.fileno())
        if self.cp.snapshot_at is not None:
            # Before the checkpoint says done: a crash in between indexes the pass again on restart.
            try:
                snapshot_index.write_pass(self.data_dir, self.path, self.cp.snapshot_at, self.pass_start)
            except pa.ArrowException:  # the CSV is the record; a pass the index lacks is a gap in charts
                log.exception("%s: the pass at %s could not be indexed", self.path, self.cp.snapshot_at)
        self.cp.done, self.cp.cursor, self.cp.pending, self.cp.size = True, 0, [], fh.tell()
        self._save(sync=True)
        self.close()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _save(self, *, sync: bool) -> None:
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        with tmp.open("wb") as fh:
            fh.write(self.cp.dumps())
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        tmp.replace(self.state_file)


def _last_line(path: Path) -> tuple[int, str]:
    """(length of the file up to its last newline, the last complete line), reading from the end."""
    with path.open("rb") as fh:
        pos = fh.seek(0, os.SEEK_END)
        buf = b""
        while pos > 0:
            step = min(TAIL_CHUNK, pos)
            pos -= step
            fh.seek(pos)
            buf = fh.read(step) + buf
            end = buf.rfind(b"\n")
            if end == -1:
                continue
            start = buf.rfind(b"\n", 0, end)
            if start != -1 or pos == 0:
                return pos + end + 1, buf[start + 1 : end].decode("utf-8", "replace")
    return 0, ""


@dataclass(frozen=True)
class PassReport:
    line: str  # the one-line summary `--once` prints
    complete: bool  # False when a stop signal ended the pass early (the next run resumes it)


class Snapshotter:
    """The snapshot component: passes over every customer, cut into bounded cycles."""

    def __init__(self, settings: Settings, stop: StopFlag, *, give_up_after: float | None = None) -> None:
        self.settings = settings
        self.stop = stop
        self.batch = settings.snapshot_batch
        self.give_up_after = give_up_after  # how long to wait for Redis to come back (None: forever)
        self.redis: redis.Redis = connect(settings)
        self.writer = HistoryWriter(settings.data_dir, retention_days=settings.history_retention_days)
        self.heartbeat = Heartbeat(self.redis, "snapshot", settings.heartbeat_interval_s)
        self.seen: set[str] = set()  # ids this pass has read (SSCAN may return an id twice)
        self.rows = 0
        self.passes = 0
        self._pass_started = time.monotonic()

    def _with_redis(self, call: Callable[[], T]) -> T:
        while True:
            try:
                return call()
            except (redis.ConnectionError, redis.TimeoutError):
                wait_for_redis(self.redis, give_up_after=self.give_up_after)

    @property
    def in_pass(self) -> bool:
        return not self.writer.cp.done

    def recover(self) -> None:
        cp = self.writer.recover()
        if self.in_pass:
            log.info("resuming the pass at %s (%d rows already written)", cp.snapshot_at, cp.rows)

    def begin(self) -> str | None:
        """Start a pass at the current watermark; returns why not when there is nothing to do."""
        wm = self._with_redis(lambda: watermark_ms(self.redis))
        if wm is None:
            return "no stream watermark yet (the feature engine has processed no events)"
        stamp = history.snapshot_at(wm)
        if stamp == self.writer.cp.snapshot_at:
            return f"nothing new since {stamp} (the watermark has not moved)"
        self.writer.begin(stamp)
        self.seen.clear()
        self._pass_started = time.monotonic()
        return None

    def cycle(self) -> int:
        """One bounded step of the pass: read at most `batch` customers, append their rows."""
        cp = self.writer.cp
        stamp = cp.snapshot_at
        if stamp is None or cp.done:
            raise RuntimeError("cycle() called with no pass in progress")
        pending, cursor = list(cp.pending), cp.cursor
        if len(pending) < self.batch and cursor != history.SCAN_DONE:
            start = cursor
            cursor, found = self._with_redis(lambda: self._scan(start))
            pending += [cid for cid in found if cid not in self.seen]
        ids = [cid for cid in dict.fromkeys(pending[: self.batch]) if cid not in self.seen]
        rest = pending[self.batch :]
        lines = []
        for cid, values in zip(ids, self._with_redis(lambda: self.read(ids)), strict=True):
            if history.has_features(values):
                lines.append(history.format_row(stamp, cid, values))
        self.seen.update(ids)
        self.writer.append(lines, cursor, rest)
        self.rows += len(lines)
        if cursor == history.SCAN_DONE and not rest:
            self._finish()
        return len(ids)

    def _scan(self, cursor: int) -> tuple[int, list[str]]:
        nxt, found = self.redis.sscan(KNOWN_CUSTOMERS_KEY, cursor, count=self.batch)
        ids = [x.decode() if isinstance(x, bytes) else str(x) for x in found]
        return (history.SCAN_DONE if int(nxt) == 0 else int(nxt)), ids

    def read(self, ids: Sequence[str]) -> list[list[bytes | None]]:
        """The READ_FIELDS of each customer, in one pipelined round trip."""
        if not ids:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for cid in ids:
                pipe.hmget(profile_key(cid), history.READ_FIELDS)
            rows: list[list[bytes | None]] = pipe.execute()
        return rows

    def _finish(self) -> None:
        self.writer.finish()
        self.passes += 1
        cp = self.writer.cp
        log.info(
            "snapshot at %s: %d rows in %.1fs -> %s",
            cp.snapshot_at,
            cp.rows,
            time.monotonic() - self._pass_started,
            self.writer.path,
        )

    def _beat(self) -> None:
        cp = self.writer.cp
        self.heartbeat.beat(rows=self.rows, passes=self.passes, snapshot_at=cp.snapshot_at, in_pass=self.in_pass)

    def run_once(self) -> PassReport:
        """One full pass (or the end of an interrupted one), then stop."""
        try:
            self.recover()
            if not self.in_pass:
                reason = self.begin()
                if reason is not None:
                    return PassReport(f"snapshot: {reason}; nothing written to {self.writer.path}", True)
            while self.in_pass and not self.stop:
                self.cycle()
                self._beat()
            cp = self.writer.cp
            if self.in_pass:
                return PassReport(
                    f"snapshot: stopped after {cp.rows} customers at {cp.snapshot_at}; the next run resumes", False
                )
            return PassReport(f"snapshot: {cp.rows} customers at {cp.snapshot_at} -> {self.writer.path}", True)
        finally:
            self.writer.close()
            self.heartbeat.clear()

    def run(self) -> None:
        """A pass every SNAPSHOT_INTERVAL_S (wall clock), cycle after cycle, until stopped."""
        self.recover()
        interval = self.settings.snapshot_interval_s
        next_pass = time.monotonic() + (interval if self.in_pass else 0.0)
        quiet_reason: str | None = None
        try:
            while not self.stop:
                if not self.in_pass and time.monotonic() >= next_pass:
                    next_pass = time.monotonic() + interval
                    reason = self.begin()
                    if reason is not None:
                        # nothing to snapshot yet (no watermark, or none since the last pass):
                        # look again soon rather than a whole interval later
                        next_pass = time.monotonic() + min(interval, RETRY_SKIPPED_S)
                        if reason != quiet_reason:
                            log.info("no snapshot: %s", reason)
                    quiet_reason = reason
                if self.in_pass:
                    self.cycle()
                else:
                    wait = min(next_pass - time.monotonic(), self.settings.heartbeat_interval_s)
                    self.stop.wait(max(0.0, wait))
                self._beat()
        finally:
            self.writer.close()
            self.heartbeat.clear()


def run(args: argparse.Namespace, settings: Settings) -> int:
    stop = StopFlag().install()
    if args.once:
        report = Snapshotter(settings, stop, give_up_after=60.0).run_once()
        print(report.line)
        return 0 if report.complete else 130
    Snapshotter(settings, stop).run()
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "snapshot", help="snapshot every customer's features and risk into data/customer_history.csv (daily files)"
    )
    p.add_argument("--once", action="store_true", help="one full pass, print a summary and exit (for cron and tests)")
    p.set_defaults(func=run)
