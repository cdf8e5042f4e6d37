"""The NumPy TreeSHAP path table gives XGBoost's own `pred_contribs`: on small models trained here
(repeated features on a path, missing values, rows exactly at a threshold) and on the pipeline's model."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import orjson
import pytest
import xgboost as xgb

from equilibrate.features.compute import FEATURES
from equilibrate.model import registry, treeshap
from tests.model.conftest import Trained

F64 = npt.NDArray[np.float64]


def _booster(depth: int, rounds: int = 30, seed: int = 3) -> tuple[xgb.Booster, F64]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2_000, 6))
    x[:, 5] = rng.integers(0, 4, 2_000)  # few distinct values: the same feature split twice on a path
    x[rng.random(x.shape) < 0.08] = np.nan  # missing values learn a default branch
    logit = np.nan_to_num(x[:, 0]) * 1.5 - np.nan_to_num(x[:, 1]) + (np.nan_to_num(x[:, 5]) == 2) * 2.0
    y = (rng.random(2_000) < 1 / (1 + np.exp(-logit))).astype(int)
    params = {"objective": "binary:logistic", "max_depth": depth, "eta": 0.3, "seed": seed, "nthread": 1}
    return xgb.train(params, xgb.DMatrix(x, label=y), rounds), x


def _table(booster: xgb.Booster) -> treeshap.PathTable | None:
    return treeshap.build(orjson.loads(bytes(booster.save_raw("json"))))


def _rows(x: F64, table: treeshap.PathTable) -> F64:
    rows = x[:300].copy()
    rows[0, table.split_feature[:6, 0]] = table.threshold[:6, 0]  # exactly at a split: goes right
    rows[1, :] = np.nan  # every value missing: every default branch
    return rows


@pytest.mark.parametrize("depth", [1, 3, 6])
def test_the_path_table_gives_xgboosts_shap_values(depth: int) -> None:
    booster, x = _booster(depth)
    table = _table(booster)
    assert table is not None
    rows = _rows(x, table)
    expected = booster.predict(xgb.DMatrix(rows, missing=np.nan), pred_contribs=True)
    ours = table.contributions(rows)
    assert ours.shape == expected.shape
    assert np.allclose(ours, expected, atol=2e-5, rtol=1e-5)
    margin = booster.predict(xgb.DMatrix(rows, missing=np.nan), output_margin=True)
    assert np.allclose(ours.sum(axis=1), margin, atol=2e-5)
    if depth >= 3:
        repeated = [len(set(f.tolist())) < len(f) for f in table.split_feature[~table.padding.any(axis=1)]]
        assert any(repeated), "the test model should test one feature twice on some path"


def test_trees_deeper_than_the_table_takes_are_left_to_xgboost() -> None:
    booster, _ = _booster(treeshap.MAX_DEPTH + 2, rounds=3)
    assert _table(booster) is None


def test_the_pipeline_model_scores_alike_in_small_and_large_batches(trained: Trained) -> None:
    model = registry.load(trained.settings.model_registry_dir)
    x = np.column_stack([trained.dataset.column(f).to_numpy() for f in FEATURES])[:400]
    assert model.paths is not None and len(x) > registry.SMALL_BATCH
    big_probs, big_shap = model.score(x)  # XGBoost's TreeSHAP
    small = [model.score(x[i : i + 8]) for i in range(0, 64, 8)]  # the path table
    small_probs = np.concatenate([p for p, _ in small])
    small_shap = np.concatenate([s for _, s in small])
    assert np.allclose(small_shap, big_shap[:64], atol=2e-5)
    assert np.allclose(small_probs, big_probs[:64], atol=1e-6, rtol=0)
    assert np.allclose(small_probs, model.predict(x[:64]), atol=1e-6, rtol=0)
