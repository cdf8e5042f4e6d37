"""A bank's own labelled file (CSV or Parquet) as a numeric matrix, for `model train --data`.

Numeric columns are used as they are (blank = missing, which XGBoost handles); text columns with
up to MAX_LEVELS distinct values are one-hot encoded, and the encoding is kept in the model card
so the same columns can be scored later; id-like text columns with more levels are dropped with a
warning. The label must be binary (0/1, true/false, yes/no).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from equilibrate.errors import ConfigError

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
MAX_LEVELS = 30
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}


@dataclass
class Tabular:
    x: F64
    y: I64
    features: list[str]
    encoding: dict[str, list[str]] = field(default_factory=dict)  # text column -> its one-hot levels
    days: I64 | None = None  # day numbers of the time column, when given
    dropped: list[str] = field(default_factory=list)


def read_table(path: Path) -> pa.Table:
    if not path.exists():
        raise ConfigError(f"no such file: {path}")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(path)
        import pyarrow.csv as pacsv

        return pacsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ConfigError(f"cannot read {path}: {' '.join(str(exc).split())[:300]}") from None


def _label(column: pa.ChunkedArray, name: str) -> I64:
    values = [str(v).strip().lower() if v is not None else "" for v in column.to_pylist()]
    bad = sorted({v for v in values if v not in _TRUE | _FALSE})
    if bad:
        raise ConfigError(f"label column {name!r} must be binary (0/1, true/false, yes/no); found {bad[:5]}")
    return np.array([1 if v in _TRUE else 0 for v in values], dtype=np.int64)


def _days(column: pa.ChunkedArray, name: str) -> I64:
    try:
        out: I64
        if pa.types.is_date(column.type):
            out = column.cast(pa.int32()).to_numpy().astype(np.int64)
            return out
        if pa.types.is_timestamp(column.type):
            out = (column.cast(pa.int64()).to_numpy() // _unit_per_day(column.type)).astype(np.int64)
            return out
        stamps = pc.strptime(column.cast(pa.string()), format="%Y-%m-%d", unit="s")
        out = (stamps.cast(pa.int64()).to_numpy() // 86_400).astype(np.int64)
        return out
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ConfigError(f"time column {name!r} must hold dates (YYYY-MM-DD) or timestamps") from None


def _unit_per_day(t: Any) -> int:
    return {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}[t.unit]


def _encode(table: pa.Table, name: str, levels: list[str] | None) -> tuple[list[str], list[F64], list[str]]:
    """(feature names, columns, levels) for one text column."""
    values = np.array(["" if v is None else str(v) for v in table.column(name).to_pylist()], dtype=object)
    if levels is None:
        uniq, counts = np.unique(values, return_counts=True)
        levels = [str(u) for u in uniq[np.argsort(-counts, kind="stable")]]
    return [f"{name}={lv}" for lv in levels], [(values == lv).astype(np.float64) for lv in levels], levels


def load_tabular(path: Path, label: str, drop: list[str], time_column: str | None = None) -> Tabular:
    table = read_table(path)
    names = table.column_names
    for wanted in [label, *drop, *([time_column] if time_column else [])]:
        if wanted not in names:
            raise ConfigError(f"{path} has no column {wanted!r} (columns: {', '.join(names[:30])})")
    y = _label(table.column(label), label)
    days = _days(table.column(time_column), time_column) if time_column else None
    features: list[str] = []
    columns: list[F64] = []
    encoding: dict[str, list[str]] = {}
    dropped: list[str] = []
    for name in names:
        if name in (label, time_column) or name in drop:
            continue
        column = table.column(name)
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_boolean(column.type):
            features.append(name)
            columns.append(column.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64))
            continue
        if pc.count_distinct(column).as_py() > MAX_LEVELS:
            dropped.append(name)
            log.warning("column %r has more than %d distinct values: left out (an id?)", name, MAX_LEVELS)
            continue
        names_, cols, levels = _encode(table, name, None)
        encoding[name] = levels
        features += names_
        columns += cols
    if not features:
        raise ConfigError(f"{path}: no usable feature columns besides the label")
    x = np.column_stack(columns)
    return Tabular(x, y, features, encoding, days, dropped)
