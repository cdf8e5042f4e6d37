"""Point-in-time training data from the raw archive (`equilibrate model build-dataset`).

The archive is folded one event date at a time with the feature engine's own code. At the end of
every snapshot day (weekly) each customer's features are computed as they stood then, from the
events of that day and before only, exactly as the risk engine's sweep computes them against the
watermark. A row is labelled 1 when a missed payment (a failed loan or card repayment) follows
within the next 30 days. Customers with a missed payment in the 30 days up to the snapshot are
already delinquent and left out at that date: the point is to see it coming. Snapshot days whose
30-day horizon runs past the end of the archive are left out (their labels are not known yet).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from equilibrate.errors import EquilibrateError
from equilibrate.features.compute import FEATURES, compute
from equilibrate.features.state import Records, apply_events, new_records
from equilibrate.features.table import table_events
from equilibrate.schema import CREDIT_REPAYMENT, Status

log = logging.getLogger(__name__)

LABEL = "label"
#: Days from the snapshot to the next missed payment within the horizon (null when none): label
#: information for lead-time figures, never a model input.
DAYS_TO_MISSED = "days_to_missed"
HORIZON_DAYS = 30
SNAPSHOT_EVERY_DAYS = 7
MIN_HISTORY_DAYS = 28  # the first snapshot waits until the 7-vs-28-day windows can be filled
ID_COLUMNS = ("snapshot_date", "customer_id")
_EPOCH = date(1970, 1, 1)


class DatasetError(EquilibrateError):
    """The archive cannot give a training set (too short, no events)."""


def day_number(d: date) -> int:
    return (d - _EPOCH).days


def day_date(n: int) -> date:
    return _EPOCH + timedelta(days=n)


def missed_payments(table: pa.Table) -> pa.ChunkedArray:
    """Which archived rows are missed payments: a failed repayment of the bank's loan or card."""
    repayment = pc.is_in(table.column("category"), value_set=pa.array([c.value for c in CREDIT_REPAYMENT]))
    return pc.and_(pc.equal(table.column("status"), Status.FAILED.value), repayment)


@dataclass
class _Snapshot:
    day: int
    rows: npt.NDArray[np.int64]  # customer positions with history at the snapshot
    features: dict[str, npt.NDArray[np.float64]]


@dataclass
class PointInTime:
    """Folds event dates in order and keeps weekly snapshots and each customer's missed-payment days."""

    index: dict[str, int] = field(default_factory=dict)
    records: Records = field(default_factory=lambda: new_records(1024))
    missed: list[tuple[int, int]] = field(default_factory=list)  # (customer position, day)
    snapshots: list[_Snapshot] = field(default_factory=list)
    events: int = 0

    def add(self, table: pa.Table) -> None:
        """Fold one event date's rows (the archive's columns EVENT_COLUMNS)."""
        if not table.num_rows:
            return
        events, _added = table_events(table, self.index)
        if len(self.index) > len(self.records):
            grown = new_records(max(len(self.index), 2 * len(self.records)))
            grown[: len(self.records)] = self.records
            self.records = grown
        apply_events(self.records[: len(self.index)], events)
        mask = np.asarray(missed_payments(table).to_numpy(zero_copy_only=False), dtype=np.bool_)
        self.missed.extend(zip(events.cust[mask].tolist(), events.day[mask].tolist(), strict=True))
        self.events += table.num_rows

    def snapshot(self, day: int) -> None:
        """Everyone's features as of the end of `day` (only events folded so far count)."""
        n = len(self.index)
        records = self.records[:n]
        seen = (records["last_ms"] >= 0) & (records["first_day"].astype(np.int64) <= day)
        rows = np.flatnonzero(seen)
        if not len(rows):
            return
        feats = compute(records[rows], np.full(len(rows), day, dtype=np.int64))
        self.snapshots.append(_Snapshot(day, rows, feats))

    def table(self) -> pa.Table:
        """Every snapshot row with its label, delinquent-at-snapshot rows left out."""
        ids = np.array(list(self.index), dtype=object)
        missed_by: dict[int, list[int]] = {}
        for cust, day in self.missed:
            missed_by.setdefault(cust, []).append(day)
        parts = []
        for snap in self.snapshots:
            before = np.zeros(len(snap.rows), dtype=np.bool_)
            ahead = np.full(len(snap.rows), np.nan)
            for i, cust in enumerate(snap.rows.tolist()):
                days = missed_by.get(cust)
                if days:
                    before[i] = any(snap.day - HORIZON_DAYS < d <= snap.day for d in days)
                    coming = [d - snap.day for d in days if snap.day < d <= snap.day + HORIZON_DAYS]
                    if coming:
                        ahead[i] = min(coming)
            after = ~np.isnan(ahead)
            keep = ~before
            columns: dict[str, object] = {
                "snapshot_date": pa.array([day_date(snap.day)] * int(keep.sum()), pa.date32()),
                "customer_id": pa.array(ids[snap.rows[keep]].tolist(), pa.string()),
            }
            for name in FEATURES:
                columns[name] = pa.array(snap.features[name][keep], pa.float64())
            columns[LABEL] = pa.array(after[keep].astype(np.int8), pa.int8())
            columns[DAYS_TO_MISSED] = pa.array(ahead[keep], pa.float64(), from_pandas=True)  # NaN -> null
            parts.append(pa.table(columns))
        if not parts:
            raise DatasetError("no snapshot rows: the archive is too short for a snapshot and its 30-day horizon")
        return pa.concat_tables(parts)


def snapshot_days(first: int, last: int) -> list[int]:
    """Weekly snapshot days with enough history before and a full label horizon after."""
    return list(range(first + MIN_HISTORY_DAYS, last - HORIZON_DAYS + 1, SNAPSHOT_EVERY_DAYS))


def build(days: Iterable[tuple[date, pa.Table]], first: date, last: date) -> pa.Table:
    """The point-in-time table from event dates in order (`ArchiveStore.iter_days(EVENT_COLUMNS)`)."""
    wanted = snapshot_days(day_number(first), day_number(last))
    if not wanted:
        raise DatasetError(
            f"the archive covers {first}..{last}: a training set needs at least "
            f"{MIN_HISTORY_DAYS + HORIZON_DAYS + 1} days of events"
        )
    pit = PointInTime()
    pending = list(wanted)
    for day, table in days:
        n = day_number(day)
        while pending and pending[0] < n:  # snapshot days without events of their own
            pit.snapshot(pending.pop(0))
        pit.add(table)
        if pending and pending[0] == n:
            pit.snapshot(pending.pop(0))
    for day_n in pending:
        pit.snapshot(day_n)
    log.info("folded %d archived events into %d weekly snapshots", pit.events, len(pit.snapshots))
    return pit.table()


def write_dataset(table: pa.Table, path: Path) -> str:
    """Write the table (Parquet) and return the content hash recorded with every model trained on it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return file_hash(path)


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
