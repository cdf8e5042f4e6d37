"""Drift monitoring: PSI against the training sample, calibration of matured live predictions."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from equilibrate.features.compute import FEATURES
from equilibrate.model import registry
from equilibrate.model.monitor import SCORE, monitor, psi
from equilibrate.storage import history
from tests.model.conftest import Trained


def test_psi_is_zero_for_the_same_population_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, 20_000)
    assert psi(base, rng.normal(0, 1, 20_000)) < 0.01
    assert 0.1 < psi(base, rng.normal(0.5, 1, 20_000)) < psi(base, rng.normal(1.5, 1, 20_000))


def _write_history(
    path: Path, table: pa.Table, scores: np.ndarray, version: str, *, shrink: float = 1.0, stamp: str | None = None
) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.DictWriter(fh, fieldnames=list(history.COLUMNS), extrasaction="ignore")
        out.writeheader()
        dates = table.column("snapshot_date").to_pylist()
        ids = table.column("customer_id").to_pylist()
        cols = {f: table.column(f).to_pylist() for f in FEATURES}
        for i in range(table.num_rows):
            row = {f: cols[f][i] * (shrink if f == "balance_min_30d" else 1.0) for f in FEATURES}
            row |= {"snapshot_at": stamp or f"{dates[i]}T23:59:59Z", "customer_id": ids[i]}
            row |= {"risk_score": round(scores[i] * 100, 2), "model_version": version}
            out.writerow(row)


def test_monitor_reports_stability_and_live_calibration(trained: Trained, tmp_path: Path) -> None:
    settings = trained.settings.model_copy(update={"data_dir": tmp_path / "data"})
    shutil.copytree(trained.settings.data_dir / "archive", settings.data_dir / "archive")
    model = registry.load(settings.model_registry_dir)
    dates = sorted(set(trained.dataset.column("snapshot_date").to_pylist()))
    column = trained.dataset.column("snapshot_date")
    # Earlier history: the later half of the snapshot dates, scored by the model as the engine would;
    # those whose 30-day horizon has passed are graded against the archive's missed payments.
    later = trained.dataset.filter(pc.greater_equal(column, pa.scalar(dates[len(dates) // 2], pa.date32())))
    x = np.column_stack([later.column(f).to_numpy() for f in FEATURES])
    _write_history(settings.data_dir / "customer_history-2026-05-20.csv", later, model.predict(x), model.version)
    # The latest snapshot: a population like the training one (rows of the training period).
    train_rows = trained.dataset.filter(pc.less(column, pa.scalar(dates[6], pa.date32())))
    xt = np.column_stack([train_rows.column(f).to_numpy() for f in FEATURES])
    live = settings.data_dir / "customer_history.csv"
    last_day = f"{trained.archive.dates()[-1]}T23:59:59Z"
    _write_history(live, train_rows, model.predict(xt), model.version, stamp=last_day)

    report = monitor(settings)
    assert report.live_rows == train_rows.num_rows and report.live_snapshot == last_day
    assert set(report.psi) >= {SCORE} and len(report.psi) > 3
    assert all(v < 0.1 for v in report.psi.values()), report.psi
    cal = report.calibration
    assert cal["rows"] > 5000 and 0.3 < cal["observed"] / cal["predicted"] < 3, cal
    assert not report.warnings, report.warnings

    # A population whose lowest balances collapse: the monitor says so.
    _write_history(live, train_rows, model.predict(xt), model.version, shrink=-3.0, stamp=last_day)
    shifted = monitor(settings)
    assert any("balance_min_30d" in w and "shifted" in w for w in shifted.warnings), shifted.warnings
    assert "balance_min_30d" in shifted.render()
