"""`equilibrate model monitor`: is the live population still the one the model was trained on, and
are its probabilities still right?

- Population stability (PSI) of the score and of the model's most important features: the latest
  snapshot in the customer history (`equilibrate snapshot`) against the training sample kept with
  the model (`reference.parquet`). Bins are the reference's deciles.
- Calibration of live predictions: history rows scored by this model whose 30-day horizon has
  passed (in event time, by the archive's newest event) are joined with the missed payments the
  archive holds, and the mean predicted probability is compared with the observed rate, overall
  and by decile.

Warnings are raised where drift crosses MONITOR_PSI_WARN / MONITOR_PSI_ALERT or the observed rate
differs from the predicted one by more than MONITOR_CALIBRATION_RATIO_MAX times.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from equilibrate.errors import ConfigError
from equilibrate.model import registry
from equilibrate.model.dataset import HORIZON_DAYS, day_number, missed_payments
from equilibrate.model.metrics import calibration_bins
from equilibrate.model.registry import REFERENCE_FILE
from equilibrate.settings import Settings
from equilibrate.storage.archive_store import ArchiveStore

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
SCORE = "score"
TOP_FEATURES = 8
_EPS = 1e-4


def psi(reference: F64, live: F64, bins: int = 10) -> float:
    """Population stability index of `live` against `reference` (deciles of the reference)."""
    reference, live = reference[~np.isnan(reference)], live[~np.isnan(live)]
    if not len(reference) or not len(live):
        return float("nan")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1))[1:-1])
    ref = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1) / len(reference)
    cur = np.bincount(np.searchsorted(edges, live, side="right"), minlength=len(edges) + 1) / len(live)
    ref, cur = np.maximum(ref, _EPS), np.maximum(cur, _EPS)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


@dataclass
class MonitorReport:
    version: str
    live_snapshot: str | None
    live_rows: int
    psi: dict[str, float] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"model {self.version}: live snapshot {self.live_snapshot or '-'} ({self.live_rows} customers)"]
        if self.psi:
            lines.append("  population stability (PSI; < 0.1 stable, 0.1-0.25 drifting, > 0.25 shifted):")
            for name, value in self.psi.items():
                lines.append(f"    {name:<28} {value:7.3f}")
        cal = self.calibration
        if cal.get("rows"):
            lines.append(
                f"  calibration over {cal['rows']} matured predictions: predicted {cal['predicted']:.2%}, "
                f"observed {cal['observed']:.2%}"
            )
        else:
            lines.append("  calibration: no predictions of this model have reached their 30-day horizon yet")
        lines += [f"  WARNING: {w}" for w in self.warnings] or ["  no drift warnings"]
        return "\n".join(lines)


def _history_files(data_dir: Path) -> list[Path]:
    return sorted(data_dir.glob("customer_history-*.csv")) + [
        p for p in [data_dir / "customer_history.csv"] if p.exists()
    ]


def _read_history(files: list[Path], columns: list[str], version: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {c: [] for c in ["snapshot_at", "customer_id", *columns]}
    for path in files:
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row.get("model_version") != version:
                    continue
                for name, values in out.items():
                    values.append(row.get(name, ""))
    return out


def _floats(values: list[str]) -> F64:
    return np.array([float(v) if v not in ("", None) else np.nan for v in values], dtype=np.float64)


def _missed_payment_days(archive: ArchiveStore) -> tuple[dict[str, list[int]], int | None]:
    """Each customer's missed-payment days, and the archive's newest event day (event time's "now")."""
    table = archive.read(["customer_id", "ts", "category", "status"])
    if not table.num_rows:
        return {}, None
    newest = int(pc.max(table.column("ts").cast(pa.int64())).as_py() // 86_400_000)
    gone = table.filter(missed_payments(table))
    days: dict[str, list[int]] = {}
    stamps = gone.column("ts").cast(pa.int64()).to_pylist()
    for cid, ms in zip(gone.column("customer_id").to_pylist(), stamps, strict=True):
        days.setdefault(cid, []).append(int(ms // 86_400_000))
    return days, newest


def monitor(settings: Settings, version: str | None = None) -> MonitorReport:
    from equilibrate.storage.archive import archive_root

    model = registry.load(settings.model_registry_dir, version)
    ref_path = settings.model_registry_dir / model.version / REFERENCE_FILE
    if not ref_path.exists():
        raise ConfigError(f"model {model.version} has no {REFERENCE_FILE}: it was not trained on the pipeline's data")
    reference = pq.read_table(ref_path)
    files = _history_files(settings.data_dir)
    if not files:
        raise ConfigError(f"no customer history in {settings.data_dir}: run `equilibrate snapshot` (part of `up`)")
    importance = model.card.get("importance") or {}
    top = sorted(importance, key=lambda k: -importance[k])[:TOP_FEATURES] or model.features[:TOP_FEATURES]
    history = _read_history(files, [*top, "risk_score"], model.version)
    report = MonitorReport(model.version, None, 0)
    if history["snapshot_at"]:
        latest = max(history["snapshot_at"])
        sel = np.array([s == latest for s in history["snapshot_at"]])
        report.live_snapshot, report.live_rows = latest, int(sel.sum())
        report.psi[SCORE] = psi(reference.column(SCORE).to_numpy() * 100, _floats(history["risk_score"])[sel])
        for name in top:
            report.psi[name] = psi(reference.column(name).to_numpy().astype(np.float64), _floats(history[name])[sel])
    else:
        report.warnings.append(f"no history rows scored by model {model.version} yet")
    for name, value in report.psi.items():
        if value > settings.monitor_psi_alert:
            report.warnings.append(f"{name} has shifted: PSI {value:.3f} > {settings.monitor_psi_alert}")
        elif value > settings.monitor_psi_warn:
            report.warnings.append(f"{name} is drifting: PSI {value:.3f} > {settings.monitor_psi_warn}")
    report.calibration = _live_calibration(settings, history, ArchiveStore(archive_root(settings)))
    cal = report.calibration
    limit = settings.monitor_calibration_ratio_max
    if cal.get("rows", 0) >= 200 and cal["predicted"] > 0:
        ratio = cal["observed"] / cal["predicted"] if cal["observed"] > 0 else 0.0
        if ratio > limit or (ratio < 1 / limit):
            report.warnings.append(
                f"calibration: observed {cal['observed']:.2%} against predicted {cal['predicted']:.2%} "
                f"(more than {limit:g}x apart)"
            )
    return report


def _live_calibration(settings: Settings, history: dict[str, list[Any]], archive: ArchiveStore) -> dict[str, Any]:
    archive.load()
    missed, newest = _missed_payment_days(archive)
    if newest is None or not history["snapshot_at"]:
        return {"rows": 0}
    days = np.array(
        [day_number(datetime.fromisoformat(s.replace("Z", "+00:00")).date()) for s in history["snapshot_at"]]
    )
    matured = days + HORIZON_DAYS <= newest
    if not matured.any():
        return {"rows": 0}
    probs = _floats(history["risk_score"])[matured] / 100
    ids = np.array(history["customer_id"], dtype=object)[matured]
    labels = np.array(
        [
            int(any(d < m <= d + HORIZON_DAYS for m in missed.get(c, [])))
            for c, d in zip(ids, days[matured], strict=True)
        ],
        dtype=np.int64,
    )
    ok = ~np.isnan(probs)
    probs, labels = probs[ok], labels[ok]
    return {
        "rows": len(labels),
        "predicted": float(probs.mean()) if len(probs) else 0.0,
        "observed": float(labels.mean()) if len(labels) else 0.0,
        "by_decile": calibration_bins(labels, probs),
    }
