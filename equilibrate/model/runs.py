"""What the `equilibrate model` commands do: build the dataset, train, evaluate (files in, files out)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from equilibrate.errors import ConfigError
from equilibrate.features.compute import FEATURES
from equilibrate.features.table import EVENT_COLUMNS
from equilibrate.model import registry, report
from equilibrate.model.dataset import DAYS_TO_MISSED, LABEL, build, file_hash, write_dataset
from equilibrate.model.metrics import lead_times
from equilibrate.model.split import Split, stratified_split, temporal_split
from equilibrate.model.tabular import load_tabular
from equilibrate.model.train import DEFAULT_PARAMS, Trained, fit
from equilibrate.risk.rules import RiskRules, load_rules
from equilibrate.risk.scoring import score_table
from equilibrate.settings import Settings
from equilibrate.storage.archive_store import ArchiveStore

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
PIPELINE = "pipeline"
TABULAR = "tabular"


def dataset_path(settings: Settings) -> Path:
    return settings.data_dir / "training_data.parquet"


def registry_dir(settings: Settings) -> Path:
    return settings.model_registry_dir


def build_dataset(settings: Settings, out: Path | None = None) -> tuple[Path, int, float]:
    """Point-in-time rows from the archive; returns (path, rows, positive rate)."""
    from equilibrate.storage.archive import archive_root

    archive = ArchiveStore(archive_root(settings))
    archive.load()
    days = archive.dates()
    if not days:
        raise ConfigError(
            f"the archive at {archive_root(settings)} is empty: run the pipeline (`equilibrate up`) first"
        )
    table = build(archive.iter_days(EVENT_COLUMNS), days[0], days[-1])
    path = out or dataset_path(settings)
    write_dataset(table, path)
    labels = table.column(LABEL).to_numpy()
    return path, table.num_rows, float(labels.mean())


def ensure_dataset(settings: Settings) -> Path:
    """The default training set, (re)built first when it is missing or older than the archive."""
    from equilibrate.storage.archive import archive_root

    path = dataset_path(settings)
    manifests = sorted((archive_root(settings) / "_manifests").glob("*.json"))
    newest = manifests[-1].stat().st_mtime if manifests else 0.0
    if not path.exists() or path.stat().st_mtime < newest:
        log.info("building the training set from the archive first")
        build_dataset(settings, path)
    return path


@dataclass
class TrainingRun:
    version: str
    path: Path
    card: dict[str, Any]
    report: Path
    made_current: bool


def _pipeline_arrays(table: pa.Table) -> tuple[F64, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    missing = [f for f in FEATURES if f not in table.column_names]
    if missing or LABEL not in table.column_names:
        raise ConfigError(f"not a training set from `model build-dataset`: missing {missing or [LABEL]}")
    x = np.column_stack([table.column(f).to_numpy().astype(np.float64) for f in FEATURES])
    y = table.column(LABEL).to_numpy().astype(np.int64)
    days = table.column("snapshot_date").cast(pa.int32()).to_numpy().astype(np.int64)
    return x, y, days


def _card(
    kind: str, features: list[str], trained: Trained, split: Split, data: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "kind": kind,
        "features": features,
        "label": "missed payment (failed loan or card repayment) within 30 days" if kind == PIPELINE else data["label"],
        "calibration": trained.calibrator.to_json(),
        "calibration_brier": trained.calibration_scores,
        "params": {**DEFAULT_PARAMS, "rounds": trained.best_rounds},
        "data": data,
        "split": split.describe(),
        "metrics": trained.metrics,
        "training_seconds": round(trained.seconds, 2),
        **extra,
    }


def _importance(model: registry.Model, x: F64) -> dict[str, float]:
    sample = x[np.random.default_rng(7).permutation(len(x))[:5_000]]
    shap = np.abs(model.contributions(sample)).mean(axis=0)
    return {f: round(float(v), 4) for f, v in zip(model.features, shap, strict=True)}


def train_pipeline(settings: Settings, data: Path | None = None, *, make_current: bool = True) -> TrainingRun:
    path = data or dataset_path(settings)
    if not path.exists():
        raise ConfigError(f"no training data at {path}: run `equilibrate model build-dataset` first")
    table = pq.read_table(path)
    x, y, days = _pipeline_arrays(table)
    split = temporal_split(days)
    trained = fit(x, y, split, list(FEATURES))
    sha = file_hash(path)
    data_info = {"source": str(path), "sha256": sha, "rows": len(y), "positive_rate": float(y.mean())}
    rules = load_rules(settings.risk_rules_file)
    reference, importance = _reference(trained, x, split)
    card = _card(PIPELINE, list(FEATURES), trained, split, data_info, levels=rules.model_levels, importance=importance)
    reg = registry_dir(settings)
    version = registry.new_version(reg, sha)
    out = registry.save(reg, version, trained.booster, card, reference)
    md = evaluate_version(settings, version, table=table)
    if make_current:
        registry.set_current(reg, version)
    return TrainingRun(version, out, card, md, make_current)


def _reference(trained: Trained, x: F64, split: Split, rows: int = 5_000) -> tuple[pa.Table, dict[str, float]]:
    """A sample of training rows with their calibrated scores (the drift baseline), and the mean
    |SHAP| of each feature over it (importance)."""
    import xgboost as xgb

    train = x[split.train]
    sample = train[np.random.default_rng(7).permutation(len(train))[:rows]]
    matrix = xgb.DMatrix(sample, feature_names=list(FEATURES))
    scores = trained.calibrator(trained.booster.predict(matrix).astype(np.float64))
    shap = np.abs(trained.booster.predict(matrix, pred_contribs=True)[:, :-1]).mean(axis=0)
    columns = {f: sample[:, j] for j, f in enumerate(FEATURES)} | {"score": scores}
    return pa.table(columns), {f: round(float(v), 4) for f, v in zip(FEATURES, shap, strict=True)}


def evaluate_version(settings: Settings, version: str | None = None, *, table: pa.Table | None = None) -> Path:
    """(Re)write the report of a pipeline model from its training data (hash checked)."""
    reg = registry_dir(settings)
    model = registry.load(reg, version)
    card = model.card
    if card.get("kind") != PIPELINE:
        raise ConfigError(f"model {model.version} was trained on a user file; its report was written at training")
    source = Path(card["data"]["source"])
    if table is None:
        if not source.exists() or file_hash(source) != card["data"]["sha256"]:
            raise ConfigError(f"{source} is missing or no longer the data model {model.version} was trained on")
        table = pq.read_table(source)
    x, y, days = _pipeline_arrays(table)
    split = temporal_split(days)
    probs = model.predict(x[split.test])
    rules = load_rules(settings.risk_rules_file)
    high = rules.model_levels["HIGH"] / 100
    baseline = _rule_scores(table.filter(pa.array(split.test)), rules)
    ahead = table.column(DAYS_TO_MISSED).to_numpy(zero_copy_only=False).astype(np.float64)[split.test]
    ids = np.array(table.column("customer_id").to_pylist(), dtype=object)[split.test]
    lead = lead_times(ids, days[split.test], ahead, probs >= high)
    fig = report.figures(y[split.test], probs, threshold=high, baseline=baseline, lead=lead)
    out = reg / model.version / "report"
    return report.write(
        out,
        model.version,
        y[split.test],
        probs,
        fig=fig,
        card=card,
        lead=lead,
        importance=card.get("importance") or _importance(model, x),
    )


def _rule_scores(table: pa.Table, rules: RiskRules) -> F64:
    feats = {f: table.column(f).to_numpy().astype(np.float64) for f in FEATURES}
    return score_table(feats, rules).score.astype(np.float64)


def train_tabular(
    settings: Settings, path: Path, label: str, drop: list[str], time_column: str | None = None
) -> TrainingRun:
    """Train on a user's labelled file with the same split rules, metrics and report; never made current."""
    started = time.perf_counter()
    data = load_tabular(path, label, drop, time_column)
    split = temporal_split(data.days) if data.days is not None else stratified_split(data.y)
    trained = fit(data.x, data.y, split, data.features)
    sha = file_hash(path)
    info = {"source": str(path), "sha256": sha, "rows": len(data.y), "positive_rate": float(data.y.mean()),
            "label": label, "dropped": [*drop, *data.dropped], "encoding": data.encoding}  # fmt: skip
    card = _card(TABULAR, data.features, trained, split, info)
    reg = registry_dir(settings)
    version = registry.new_version(reg, sha)
    out = registry.save(reg, version, trained.booster, card)
    model = registry.load(reg, version)
    test_y = data.y[split.test]
    threshold = float(np.quantile(trained.test_probs, 0.9)) if len(trained.test_probs) else 0.5
    fig = report.figures(test_y, trained.test_probs, threshold=threshold)
    md = report.write(
        out / "report", version, test_y, trained.test_probs, fig=fig, card=card, importance=_importance(model, data.x)
    )
    log.info("tabular model %s trained and reported in %.1f s", version, time.perf_counter() - started)
    return TrainingRun(version, out, card, md, False)


def wait_for_history(settings: Settings, days: int, poll_s: float = 10.0) -> None:
    """Block until the archive's committed event dates span `days` days (the demo's backfill)."""
    import time

    from equilibrate.storage.archive_store import ArchiveStore

    store = ArchiveStore(settings.data_dir / "archive")
    announced = False
    while True:
        dates = store.dates() if store.root.exists() else []
        if dates and (dates[-1] - dates[0]).days >= days:
            return
        if not announced:
            log.info("waiting for %d days of archived history before training (%d so far)", days,
                     (dates[-1] - dates[0]).days if dates else 0)  # fmt: skip
            announced = True
        time.sleep(poll_s)
