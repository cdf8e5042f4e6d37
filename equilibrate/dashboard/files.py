"""What the console reads from files: the history snapshots, the archive, the audit log, the model.

Each reader bounds its work (the newest N history days, the last N days of the archive) so a page
stays fast however long the system has run; history charts read the snapshotter's per-pass index
(storage/snapshot_index.py), never every customer's rows, so they stay fast however many customers.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from equilibrate.alert.audit import COLUMNS
from equilibrate.alert.audit_log import AuditLog
from equilibrate.model import registry
from equilibrate.storage import history, snapshot_index
from equilibrate.storage.archive_store import ArchiveStore
from equilibrate.storage.history import CURRENT_NAME, ROTATED_PREFIX

#: The newest history files a page reads (a file is one event day of snapshots; keep pages fast).
HISTORY_FILES = 7
#: The simulator's ground truth: shown on the portfolio page as "simulated", never read by the pipeline.
GROUND_TRUTH_NAME = "ground_truth.csv"


def history_files(data_dir: Path, limit: int = HISTORY_FILES) -> list[Path]:
    """The newest `limit` history files, oldest first (rotated days, then the current one)."""
    rotated = sorted(data_dir.glob(f"{ROTATED_PREFIX}*.csv"))
    current = data_dir / CURRENT_NAME
    files = [*rotated, *([current] if current.exists() else [])]
    return files[-limit:]


def _read_history(files: Sequence[Path], columns: Sequence[str]) -> pa.Table:
    tables = []
    convert = pacsv.ConvertOptions(
        include_columns=list(columns),
        strings_can_be_null=False,
        column_types={c: pa.string() for c in columns if c != "risk_score"},
    )
    for path in files:
        try:
            tables.append(pacsv.read_csv(path, convert_options=convert))
        except (pa.ArrowInvalid, OSError, KeyError):
            continue  # a file being rotated, or one without those columns: the next refresh has it
    if not tables:
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    return pa.concat_tables(tables, promote_options="permissive")


def _window(data_dir: Path, limit: int) -> tuple[list[str], list[Path]]:
    """The newest `limit` days: the indexed ones, and history files of days before the index began.

    Passes are indexed as they end (storage/snapshot_index.py); files written before that are read
    whole, as they always were, until they leave the window. With no index at all, every one of the
    newest `limit` files is.
    """
    indexed = snapshot_index.days(data_dir)
    files = history_files(data_dir, limit)
    if not indexed:
        return [], files
    legacy = [(day, f) for f in files if (day := history.rotated_day(f.name)) is not None and day < indexed[0]]
    keep = sorted({*indexed, *(day for day, _ in legacy)})[-limit:]
    return [d for d in indexed if d in keep], [f for day, f in legacy if day in keep]


def levels_over_time(data_dir: Path, limit: int = HISTORY_FILES) -> pd.DataFrame:
    """Customers per risk level at each snapshot (event time): the passes' counts, not their rows."""
    days, legacy = _window(data_dir, limit)
    rows = [
        {"snapshot_at": entry["snapshot_at"], "risk_level": level, "customers": int(n)}
        for entry in snapshot_index.level_counts(data_dir, days)
        for level, n in entry["levels"].items()
    ]
    frames = [pd.DataFrame(rows, columns=["snapshot_at", "risk_level", "customers"])]
    if legacy:
        table = _read_history(legacy, ("snapshot_at", "risk_level"))
        if table.num_rows:
            counts = table.group_by(["snapshot_at", "risk_level"]).aggregate([("risk_level", "count")]).to_pandas()
            frames.insert(0, counts.rename(columns={"risk_level_count": "customers"}))
    counts = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if counts.empty:
        return pd.DataFrame(columns=["snapshot_at", "risk_level", "customers"])
    counts["customers"] = counts["customers"].astype("int64")
    counts["snapshot_at"] = pd.to_datetime(counts["snapshot_at"], utc=True)
    return counts.sort_values("snapshot_at", kind="stable")


def score_history(data_dir: Path, customer_id: str, limit: int = HISTORY_FILES) -> pd.DataFrame:
    """One customer's score at each snapshot: a row group of each pass's score file, not every row."""
    days, legacy = _window(data_dir, limit)
    columns = ("snapshot_at", "customer_id", "risk_score", "risk_level")
    parts = [snapshot_index.customer_scores(data_dir, customer_id, days)] if days else []
    if legacy:
        table = _read_history(legacy, columns)
        parts.insert(0, table.filter(pc.equal(table.column("customer_id"), customer_id)))
    parts = [t for t in parts if t.num_rows]
    if not parts:
        return pd.DataFrame(columns=["snapshot_at", "risk_score", "risk_level"])
    mine = pa.concat_tables(parts, promote_options="permissive").to_pandas()
    mine["snapshot_at"] = pd.to_datetime(mine["snapshot_at"], utc=True)
    return mine.drop(columns=["customer_id"]).sort_values("snapshot_at")


TRANSACTION_COLUMNS = ("txn_id", "ts", "amount", "direction", "category", "channel", "merchant", "balance_after",
                       "status")  # fmt: skip


def customer_transactions(archive_root: Path, customer_id: str, days: int = 90) -> pd.DataFrame:
    """The customer's archived transactions of the last `days` event days, oldest first."""
    if not archive_root.exists():
        return pd.DataFrame(columns=list(TRANSACTION_COLUMNS))
    return ArchiveStore(archive_root).customer_rows(customer_id, days, TRANSACTION_COLUMNS).to_pandas()


def personas(data_dir: Path) -> dict[str, int] | None:
    """Customers per simulated persona, when the data comes from the simulator (None otherwise)."""
    path = data_dir / GROUND_TRUTH_NAME
    if not path.exists():
        return None
    counts: dict[str, int] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            counts[row["persona"]] = counts.get(row["persona"], 0) + 1
    return counts


def audit_frame(data_dir: Path) -> pd.DataFrame:
    """Every audit row (values as written, hashes included), oldest first."""
    rows = [
        asdict(r.record) | {"recorded_at": r.recorded_at, "prev_hash": r.prev_hash, "row_hash": r.row_hash}
        for r in AuditLog(data_dir).rows()
    ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


@dataclass
class ModelInfo:
    version: str
    card: dict[str, Any]
    report_dir: Path
    plots: list[Path]


def model_info(registry_dir: Path) -> ModelInfo | None:
    version = registry.current_version(registry_dir)
    if version is None:
        return None
    card_file = registry.card_path(registry_dir, version)
    card = orjson.loads(card_file.read_bytes()) if card_file.exists() else {}
    report = card_file.parent / "report"
    plots = sorted(report.glob("*.png")) if report.exists() else []
    return ModelInfo(version, card, report, plots)


def event_time_text(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
