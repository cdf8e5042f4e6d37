"""The raw archive on disk: Parquet partitioned by event date, committed through manifests.

Layout under the archive root:

    date=2026-03-01/part-00000042.parquet   rows of flush 42 whose event date is 2026-03-01
    _manifests/00000042.json                 the commit record of flush 42

A flush writes its part files (fsync, atomic rename), then its manifest (fsync, atomic rename):
the manifest's rename is the commit point. Each manifest holds the cumulative next offset of every
source partition, so on start the archive seeks to exactly where its durable data ends, and part
files of a flush whose manifest never landed (a crash in between) are deleted. Nothing is lost and
nothing is written twice, whatever moment the process dies at.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from equilibrate.schema import Txn

log = logging.getLogger(__name__)

MANIFEST_DIR = "_manifests"
KEEP_MANIFESTS = 20

#: Threads reading one customer's rows from the day files.
READERS = 4
#: Rows per Parquet row group: small enough that one customer's rows are a few groups of a large part.
ROW_GROUP_ROWS = 4_096

ARCHIVE_SCHEMA = pa.schema(
    [
        ("txn_id", pa.string()),
        ("customer_id", pa.string()),
        ("ts", pa.timestamp("ms", tz="UTC")),
        ("amount", pa.float64()),
        ("direction", pa.string()),
        ("category", pa.string()),
        ("channel", pa.string()),
        ("merchant", pa.string()),
        ("balance_after", pa.float64()),
        ("currency", pa.string()),
        ("status", pa.string()),
        ("schema_version", pa.int16()),
        ("source_partition", pa.int32()),
        ("source_offset", pa.int64()),
    ]
)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _durable_replace(tmp: Path, final: Path) -> None:
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    tmp.replace(final)
    _fsync_dir(final.parent)


@dataclass
class ArchiveState:
    """What the durable archive covers: the last committed flush and next offset per partition."""

    seq: int = 0
    offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> next offset
    rows: int = 0

    def next_offset(self, topic: str, partition: int) -> int | None:
        return self.offsets.get(f"{topic}:{partition}")


@dataclass(slots=True)
class PendingRow:
    txn: Txn
    partition: int
    offset: int


class ArchiveStore:
    """Appends committed flushes to the archive and reads them back. One writer per root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifests = root / MANIFEST_DIR
        self.state = ArchiveState()

    # -- recovery ------------------------------------------------------------------------------
    def load(self) -> ArchiveState:
        """Read the last manifest without touching any file: safe beside a running writer."""
        names = sorted(self.manifests.glob("*.json")) if self.manifests.exists() else []
        if names:
            data = orjson.loads(names[-1].read_bytes())
            self.state = ArchiveState(int(data["seq"]), dict(data["offsets"]), int(data["rows"]))
        return self.state

    def recover(self) -> ArchiveState:
        """As the (single) writer starts: load, then delete what a crashed flush left behind."""
        self.manifests.mkdir(parents=True, exist_ok=True, mode=0o700)
        for tmp in self.root.rglob("*.tmp"):
            tmp.unlink()
        self.load()
        removed = 0
        for part in self.root.glob("date=*/part-*.parquet"):
            if _seq_of(part) > self.state.seq:
                part.unlink()
                removed += 1
        if removed:
            log.warning("removed %d part file(s) of a flush that never committed", removed)
        return self.state

    # -- writing -------------------------------------------------------------------------------
    def commit(self, rows: Sequence[PendingRow], offsets: dict[str, int]) -> int:
        """Write one flush durably: part files per event date, then the manifest. Returns its seq."""
        seq = self.state.seq + 1
        by_date: dict[date, list[PendingRow]] = defaultdict(list)
        for row in rows:
            by_date[row.txn.ts.date()].append(row)
        files = []
        for day, day_rows in sorted(by_date.items()):
            folder = self.root / f"date={day.isoformat()}"
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            final = folder / f"part-{seq:08d}.parquet"
            tmp = final.with_suffix(".tmp")
            # Sorted by customer (then time) in small row groups: a reader after one customer (the
            # console, the API) skips every row group whose customer_id range cannot hold them.
            table = _to_table(day_rows).sort_by([("customer_id", "ascending"), ("ts", "ascending")])
            pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS)
            _durable_replace(tmp, final)
            files.append({"path": str(final.relative_to(self.root)), "rows": len(day_rows)})
        merged = {**self.state.offsets, **offsets}
        total = self.state.rows + len(rows)
        manifest = {
            "seq": seq,
            "files": files,
            "offsets": merged,
            "rows": total,
            "written_at": datetime.now(UTC).isoformat(),
        }
        final = self.manifests / f"{seq:08d}.json"
        tmp = final.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(manifest))
        _durable_replace(tmp, final)
        self.state = ArchiveState(seq, merged, total)
        self._prune_manifests()
        return seq

    def _prune_manifests(self) -> None:
        names = sorted(self.manifests.glob("*.json"))
        for old in names[:-KEEP_MANIFESTS]:
            old.unlink()

    # -- reading -------------------------------------------------------------------------------
    def committed_files(self) -> list[Path]:
        """Part files covered by the last manifest, ordered by event date then flush."""
        limit = self.state.seq if self.state.seq else self.load().seq
        files = [p for p in self.root.glob("date=*/part-*.parquet") if _seq_of(p) <= limit]
        return sorted(files, key=lambda p: (p.parent.name, _seq_of(p)))

    def dates(self) -> list[date]:
        return sorted({date.fromisoformat(p.parent.name.removeprefix("date=")) for p in self.committed_files()})

    def read(self, columns: Sequence[str] | None = None, day: date | None = None) -> pa.Table:
        files = [p for p in self.committed_files() if day is None or p.parent.name == f"date={day.isoformat()}"]
        if not files:
            return ARCHIVE_SCHEMA.empty_table() if columns is None else ARCHIVE_SCHEMA.empty_table().select(columns)
        return pa.concat_tables(pq.read_table(p, columns=list(columns) if columns else None) for p in files)

    def iter_days(self, columns: Sequence[str] | None = None) -> Iterator[tuple[date, pa.Table]]:
        """One event date at a time, so a rebuild of a large archive stays within memory."""
        for day in self.dates():
            yield day, self.read(columns, day)

    def customer_rows(self, customer_id: str, days: int, columns: Sequence[str]) -> pa.Table:
        """One customer's rows of the last `days` archived event dates (the console, the API)."""
        files = self.committed_files()
        if not files:
            return ARCHIVE_SCHEMA.empty_table().select(list(columns))
        dated = [(date.fromisoformat(p.parent.name.removeprefix("date=")), p) for p in files]
        since = max(d for d, _ in dated) - timedelta(days=days)
        wanted = [p for d, p in dated if d > since]

        def read(part: Path) -> pa.Table:
            return pq.read_table(part, columns=list(columns), filters=[("customer_id", "=", customer_id)])

        with ThreadPoolExecutor(max_workers=READERS) as pool:  # pyarrow reads without the GIL
            parts = [t for t in pool.map(read, wanted) if t.num_rows]
        if not parts:
            return ARCHIVE_SCHEMA.empty_table().select(list(columns))
        return pa.concat_tables(parts).sort_by("ts")

    def recent_txn_ids(self, limit: int) -> list[str]:
        """The txn ids of the newest flushes, to re-arm duplicate detection after a restart."""
        ids: list[str] = []
        for part in sorted(self.committed_files(), key=_seq_of, reverse=True):
            ids.extend(pq.read_table(part, columns=["txn_id"]).column(0).to_pylist())
            if len(ids) >= limit:
                break
        return ids[:limit]


def _seq_of(part: Path) -> int:
    return int(part.stem.removeprefix("part-"))


def _to_table(rows: Sequence[PendingRow]) -> pa.Table:
    cols: dict[str, list[object]] = {name: [] for name in ARCHIVE_SCHEMA.names}
    for row in rows:
        t = row.txn
        cols["txn_id"].append(t.txn_id)
        cols["customer_id"].append(t.customer_id)
        cols["ts"].append(t.ts)
        cols["amount"].append(t.amount)
        cols["direction"].append(t.direction.value)
        cols["category"].append(t.category.value)
        cols["channel"].append(t.channel.value)
        cols["merchant"].append(t.merchant)
        cols["balance_after"].append(t.balance_after)
        cols["currency"].append(t.currency)
        cols["status"].append(t.status.value)
        cols["schema_version"].append(t.schema_version)
        cols["source_partition"].append(row.partition)
        cols["source_offset"].append(row.offset)
    return pa.table(cols, schema=ARCHIVE_SCHEMA)
