"""Temporal split, training quality against the rules, the registry, reports, and a bank's own file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from equilibrate.errors import ConfigError
from equilibrate.features.compute import FEATURES
from equilibrate.model import registry, runs
from equilibrate.model.split import SplitError, stratified_split, temporal_split
from tests.conftest import run_cli, settings_env
from tests.model.conftest import Trained


def test_the_temporal_split_keeps_a_label_horizon_between_parts() -> None:
    days = np.repeat(np.arange(20_000, 20_180, 7), 10)
    split = temporal_split(days, gap_days=30)
    train, valid, test = days[split.train], days[split.valid], days[split.test]
    assert train.max() + 30 <= valid.min() and valid.max() + 30 <= test.min()
    assert not (split.train & split.valid).any() and not (split.valid & split.test).any()
    assert len(train) > len(test) > 0 and len(valid) > 0
    with pytest.raises(SplitError, match="longer history"):
        temporal_split(np.repeat(np.arange(20_000, 20_060, 7), 10))


def test_the_stratified_split_keeps_the_positive_rate() -> None:
    labels = (np.arange(10_000) % 10 == 0).astype(np.int64)
    split = stratified_split(labels)
    for part in (split.train, split.valid, split.test):
        assert labels[part].mean() == pytest.approx(0.1, abs=0.002)
    assert (split.train.astype(int) + split.valid + split.test == 1).all()


def test_the_model_beats_the_rules_on_held_out_later_dates(trained: Trained) -> None:
    card, reg = trained.run.card, trained.settings.model_registry_dir
    summary = orjson.loads((reg / trained.run.version / "report" / "summary.json").read_bytes())
    assert card["split"].startswith("temporal")
    assert card["metrics"]["test"]["roc_auc"] >= 0.85
    assert summary["summary"]["pr_auc"] > summary["baseline"]["pr_auc"]  # the rule score, same rows
    assert card["training_seconds"] < 120
    for name in ("roc.png", "pr.png", "calibration.png", "lead_time.png", "importance.png", "report.md"):
        assert (reg / trained.run.version / "report" / name).stat().st_size > 1000, name
    assert summary["lead_time"]["customers_who_missed"] > 10
    assert [row["budget"] for row in summary["lift"]] == [0.05, 0.1, 0.2]


def test_the_registry_round_trip_gives_the_same_predictions(trained: Trained) -> None:
    reg = trained.settings.model_registry_dir
    assert registry.current_version(reg) == trained.run.version
    model = registry.load(reg)
    card = orjson.loads(registry.card_path(reg, model.version).read_bytes())
    assert model.features == list(FEATURES) == card["features"]
    assert card["data"]["sha256"] and card["params"]["rounds"] >= 1
    x = np.column_stack([trained.dataset.column(f).to_numpy() for f in FEATURES])[:500]
    again = registry.load(reg, model.version)
    assert np.array_equal(model.predict(x), again.predict(x))
    assert ((model.predict(x) >= 0) & (model.predict(x) <= 1)).all()
    # scoring takes the probability from the SHAP values' sum: the same as predicting, to float32 rounding
    probs, shap = model.score(x)
    assert np.allclose(probs, model.predict(x), atol=1e-6, rtol=0)
    assert np.array_equal(shap, model.contributions(x))
    with pytest.raises(ConfigError, match="no model"):
        registry.set_current(reg, "xgb-missing")
    assert registry.current_version(reg) == trained.run.version


def test_shap_reasons_are_tree_shap_of_the_features_scored(trained: Trained) -> None:
    import shap  # the reference implementation

    model = registry.load(trained.settings.model_registry_dir)
    x = np.column_stack([trained.dataset.column(f).to_numpy() for f in FEATURES])[:200]
    ours = model.contributions(x)
    reference = shap.TreeExplainer(model.booster).shap_values(x)
    assert np.allclose(ours, reference, atol=1e-4)
    # contributions plus the bias give the model's own margin: they explain this very score
    import xgboost as xgb

    margin = model.booster.predict(xgb.DMatrix(x, feature_names=model.features), output_margin=True)
    full = model.booster.predict(xgb.DMatrix(x, feature_names=model.features), pred_contribs=True)
    assert np.allclose(full.sum(axis=1), margin, atol=1e-4)


def test_a_bank_can_train_on_its_own_labelled_file(trained: Trained, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 3_000
    util = rng.uniform(0, 1.2, n)
    late = rng.poisson(0.4, n)
    region = rng.choice(["north", "south", "east"], n)
    risk = 1 / (1 + np.exp(-(-3 + 2.5 * util + 0.8 * late + (region == "north") * 0.7)))
    default = (rng.random(n) < risk).astype(int)
    lines = ["account_id,utilisation,late_payments,region,defaulted"]
    lines += [f"A{i:06d},{util[i]:.3f},{late[i]},{region[i]},{'yes' if default[i] else 'no'}" for i in range(n)]
    path = tmp_path / "book.csv"
    path.write_text("\n".join(lines) + "\n")

    run = runs.train_tabular(trained.settings, path, "defaulted", ["account_id"])
    assert not run.made_current
    assert registry.current_version(trained.settings.model_registry_dir) == trained.run.version
    assert run.card["features"] == [
        "utilisation",
        "late_payments",
        "region=south",
        "region=north",
        "region=east",
    ] or set(run.card["features"]) == {"utilisation", "late_payments", "region=north", "region=south", "region=east"}
    assert run.card["split"].startswith("stratified")
    assert run.card["metrics"]["test"]["roc_auc"] > 0.7
    assert run.report.exists()

    env = settings_env(trained.settings)
    bad = run_cli("model", "train", "--data", str(path), "--label", "region", env=env)
    assert bad.returncode == 2 and "must be binary" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli("model", "train", "--data", str(path), "--label", "nope", env=env)
    assert missing.returncode == 2 and "no column 'nope'" in missing.stderr


def test_commands_say_what_is_missing(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "data"), "MODEL_REGISTRY_DIR": str(tmp_path / "registry")}
    empty = run_cli("model", "build-dataset", env=env, cwd=tmp_path)
    assert empty.returncode == 2 and "archive" in empty.stderr and len(empty.stderr.strip().splitlines()) == 1
    untrained = run_cli("model", "train", env=env, cwd=tmp_path)  # builds the dataset first: no archive
    assert untrained.returncode == 2 and "archive" in untrained.stderr and "Traceback" not in untrained.stderr
    no_data = run_cli("model", "train", "--dataset", str(tmp_path / "none.parquet"), env=env, cwd=tmp_path)
    assert no_data.returncode == 2 and "build-dataset" in no_data.stderr
    listed = run_cli("model", "list", env=env, cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout == ""
