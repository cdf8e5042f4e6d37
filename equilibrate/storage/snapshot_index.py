"""What each snapshot pass leaves beside the history CSV so the console never scans it.

    <data_dir>/customer_history_index/YYYY-MM-DD/levels.jsonl            one line per pass: its counts
    <data_dir>/customer_history_index/YYYY-MM-DD/scores-HHMMSS.arrow     the pass's score per customer

Written by `equilibrate snapshot` (storage/snapshot.py) when a pass ends, from the rows that pass
appended to the CSV (read back with the same column types the console used to read), so a chart
drawn from the index is the chart the CSV would give:
- levels.jsonl: `{"snapshot_at", "customers", "levels": {level: n}, "hardships": {type: n}}`, the
  portfolio's "levels over time" reads a few kilobytes a day instead of every customer's rows;
- scores-*.arrow: customer_id, risk_score, risk_level sorted by customer_id, one uncompressed Arrow
  IPC record batch (the stamp in its schema metadata). A reader memory-maps it and binary-searches
  the ids: one customer's row of a pass costs ~20 id comparisons and a few pages, whatever the
  number of customers (~0.25 ms a file; Parquet's footer and row-group decode cost ~2.4 ms at 1M,
  too much for the 672 passes of a week at the default interval). ~23 MB a pass at 1M customers,
  about 7% of the pass's CSV rows.

A pass that ends twice (a crash between the index and the checkpoint) rewrites the same Parquet
file and appends its counts again: readers keep the last line of a stamp. Days are event days (the
stamp's), like the CSV's. The snapshot component deletes days past HISTORY_RETENTION_DAYS (off by
default); the console reads the newest days only.

Used as a library; `python -m equilibrate.storage.snapshot_index DATA_DIR` (re)builds the index of
every pass in the history files (after an upgrade, for the passes written before it; a pass
indexed twice is harmless). Stop `equilibrate snapshot` while it runs.
"""

from __future__ import annotations

import argparse
import bisect
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from equilibrate.storage import history

log = logging.getLogger(__name__)

INDEX_DIR = "customer_history_index"
LEVELS_NAME = "levels.jsonl"
SCORES_PREFIX = "scores-"
#: Columns of one customer's score history (all text but the score, as the console reads the CSV).
SCORE_COLUMNS: tuple[str, ...] = ("snapshot_at", "customer_id", "risk_score", "risk_level")
#: What a pass is read back with: the score columns and the hardship type (counted per pass).
INDEXED_COLUMNS: tuple[str, ...] = (*SCORE_COLUMNS, "hardship_type")
#: What a score file holds (the stamp is its schema metadata).
FILE_COLUMNS: tuple[str, ...] = ("customer_id", "risk_score", "risk_level")
TAIL_CHUNK = 1 << 20
#: Bytes of CSV per batch when `build` streams a history file.
BUILD_BLOCK = 1 << 24


def index_root(data_dir: Path) -> Path:
    return data_dir / INDEX_DIR


def day_dir(data_dir: Path, stamp: str) -> Path:
    return index_root(data_dir) / history.day_of(stamp)


def scores_path(data_dir: Path, stamp: str) -> Path:
    return day_dir(data_dir, stamp) / f"{SCORES_PREFIX}{stamp[11:19].replace(':', '')}.arrow"


def read_csv_columns(source: Path | Any, columns: Sequence[str], *, named: bool = False) -> pa.Table:
    """Columns of a history CSV (text, but risk_score) as the console has always read them.

    `source` is a path or a binary file positioned at a row start; `named` when it has no header
    line there (the columns are then history.COLUMNS).
    """
    read = pacsv.ReadOptions(column_names=list(history.COLUMNS)) if named else pacsv.ReadOptions()
    convert = pacsv.ConvertOptions(
        include_columns=list(columns),
        strings_can_be_null=False,
        column_types={c: pa.string() for c in columns if c != "risk_score"},
    )
    return pacsv.read_csv(source, read_options=read, convert_options=convert)


def pass_start(path: Path, stamp: str) -> int:
    """Where the rows stamped `stamp` begin at the end of `path` (read backwards: one pass's bytes)."""
    mark = f'"{stamp}"'.encode()
    with path.open("rb") as fh:
        pos = fh.seek(0, os.SEEK_END)
        carry = b""  # the earliest line seen so far, maybe cut at `pos`
        while pos > 0:
            step = min(TAIL_CHUNK, pos)
            pos -= step
            fh.seek(pos)
            buf = fh.read(step) + carry
            lines = buf.split(b"\n")
            next_start = pos + len(buf) + 1  # where the line after lines[k] starts
            for k in range(len(lines) - 1, -1 if pos == 0 else 0, -1):
                line = lines[k]
                if line and not line.startswith(mark):
                    return next_start
                next_start -= len(line) + 1
            carry = lines[0]
    return 0


def write_pass(data_dir: Path, csv_path: Path, stamp: str, start: int | None = None) -> dict[str, Any]:
    """Index the pass stamped `stamp`: its rows are the end of `csv_path` from byte `start`.

    Returns the counts line written. `start` None: found by reading the file backwards.
    """
    if start is None:
        start = pass_start(csv_path, stamp)
    with csv_path.open("rb") as fh:
        header = fh.readline()
        fh.seek(max(start, len(header)))
        table = read_csv_columns(fh, INDEXED_COLUMNS, named=True)
    return _write(data_dir, stamp, table.filter(pc.equal(table.column("snapshot_at"), stamp)))


def _write(data_dir: Path, stamp: str, table: pa.Table) -> dict[str, Any]:
    counts = {
        "snapshot_at": stamp,
        "customers": table.num_rows,
        "levels": _counts(table, "risk_level"),
        "hardships": _counts(table, "hardship_type"),
    }
    scores = table.select(list(FILE_COLUMNS)).sort_by("customer_id").combine_chunks()
    scores = pa.table(
        [
            scores.column("customer_id"),
            scores.column("risk_score").cast(pa.float64()),
            pc.dictionary_encode(scores.column("risk_level")),
        ],
        names=list(FILE_COLUMNS),
    ).replace_schema_metadata({"snapshot_at": stamp})
    folder = day_dir(data_dir, stamp)
    folder.mkdir(parents=True, exist_ok=True)
    final = scores_path(data_dir, stamp)
    tmp = final.with_name(final.name + ".tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, scores.schema) as writer:
        if scores.num_rows:
            writer.write_table(scores, max_chunksize=scores.num_rows)  # one batch: one sorted run of ids
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    tmp.replace(final)
    with (folder / LEVELS_NAME).open("ab") as f:
        f.write(orjson.dumps(counts) + b"\n")
        f.flush()
        os.fsync(f.fileno())
    return counts


def _counts(table: pa.Table, column: str) -> dict[str, int]:
    grouped = table.group_by(column).aggregate([(column, "count")])
    return dict(zip(grouped.column(column).to_pylist(), grouped.column(f"{column}_count").to_pylist(), strict=True))


def build(data_dir: Path) -> int:
    """Index every pass of every history file (after an upgrade: the passes written before it).

    Streams each file once; a pass's rows are contiguous, so at most one pass is held at a time.
    Returns the passes indexed.
    """
    rotated = sorted(data_dir.glob(f"{history.ROTATED_PREFIX}*.csv"))
    current = history.current_path(data_dir)
    done = 0
    for path in [*rotated, *([current] if current.exists() else [])]:
        convert = pacsv.ConvertOptions(
            include_columns=list(INDEXED_COLUMNS),
            strings_can_be_null=False,
            column_types={c: pa.string() for c in INDEXED_COLUMNS if c != "risk_score"},
        )
        held: list[pa.Table] = []
        read = pacsv.ReadOptions(block_size=BUILD_BLOCK)
        for batch in pacsv.open_csv(path, read_options=read, convert_options=convert):
            table = pa.Table.from_batches([batch])
            stamps = table.column("snapshot_at")
            for stamp in pc.unique(stamps).to_pylist():
                rows = table.filter(pc.equal(stamps, stamp))
                if held and held[0].column("snapshot_at")[0].as_py() != stamp:
                    _write(data_dir, held[0].column("snapshot_at")[0].as_py(), _concat(held))
                    done, held = done + 1, []
                held.append(rows)
        if held:
            _write(data_dir, held[0].column("snapshot_at")[0].as_py(), _concat(held))
            done += 1
    return done


def _concat(tables: Sequence[pa.Table]) -> pa.Table:
    return pa.concat_tables(tables, promote_options="permissive")


# -- reading (the console) ----------------------------------------------------------------------
def days(data_dir: Path) -> list[str]:
    """The event days the index holds, oldest first."""
    root = index_root(data_dir)
    if not root.exists():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _is_day(p.name))


def _is_day(name: str) -> bool:
    try:
        return history.day_of(name) == name
    except ValueError:
        return False


def level_counts(data_dir: Path, wanted: Sequence[str]) -> list[dict[str, Any]]:
    """The counts lines of the passes of `wanted` days, one per stamp (the last written), by stamp."""
    by_stamp: dict[str, dict[str, Any]] = {}
    for day in wanted:
        path = index_root(data_dir) / day / LEVELS_NAME
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            continue
        for line in raw.splitlines():
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a line cut by a crash: the pass's next finish wrote it again
            by_stamp[str(entry["snapshot_at"])] = entry
    return [by_stamp[s] for s in sorted(by_stamp)]


def customer_scores(data_dir: Path, customer_id: str, wanted: Sequence[str]) -> pa.Table:
    """One customer's rows (SCORE_COLUMNS) from the score files of `wanted` days, by stamp."""
    rows: list[tuple[str, float | None, str]] = []
    for day in wanted:
        for path in sorted((index_root(data_dir) / day).glob(f"{SCORES_PREFIX}*.arrow")):
            found = _customer_row(path, customer_id)
            if found is not None:
                rows.append(found)
    rows.sort(key=lambda r: r[0])
    stamps, scores, levels = zip(*rows, strict=True) if rows else ((), (), ())
    return pa.table(
        {
            "snapshot_at": pa.array(stamps, pa.string()),
            "customer_id": pa.array([customer_id] * len(rows), pa.string()),
            "risk_score": pa.array(scores, pa.float64()),
            "risk_level": pa.array(levels, pa.string()),
        }
    )


class _Ids:
    """A sorted string column as a sequence bisect can search (one value converted per probe)."""

    def __init__(self, column: pa.Array) -> None:
        self.column = column

    def __len__(self) -> int:
        return len(self.column)

    def __getitem__(self, i: int) -> str:
        return str(self.column[i].as_py())


def _customer_row(path: Path, customer_id: str) -> tuple[str, float | None, str] | None:
    """(stamp, score, level) of `customer_id` in one score file: a binary search of its mapped ids."""
    try:
        with pa.memory_map(str(path)) as source:
            reader = pa.ipc.open_file(source)
            if not reader.num_record_batches:
                return None
            stamp = (reader.schema.metadata or {}).get(b"snapshot_at", b"").decode()
            batch = reader.get_batch(0)
            ids = batch.column(0)
            i = bisect.bisect_left(_Ids(ids), customer_id)
            if i == len(ids) or ids[i].as_py() != customer_id:
                return None
            score = batch.column(1)[i].as_py()
            level = batch.column(2)[i].as_py()
            return stamp, score, "" if level is None else str(level)
    except (OSError, pa.ArrowInvalid):
        return None  # being replaced, or cut short: the next read has it


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="index every pass of the customer history files")
    parser.add_argument("data_dir", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    log.info("indexed %d pass(es)", build(args.data_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
