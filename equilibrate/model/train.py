"""Training: XGBoost on a split that respects time, calibrated on the validation set.

Early stopping and calibration use the validation part only; the test part is touched once, for
the figures in the model card. No resampling: the class balance is reported as it is, and the
calibrated probability is an honest estimate of the missed-payment rate.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from equilibrate.model import metrics
from equilibrate.model.calibration import Calibrator, choose
from equilibrate.model.split import Split

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": ["aucpr", "logloss"],
    "tree_method": "hist",
    "max_depth": 4,
    "eta": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 5,
    "lambda": 1.0,
    "nthread": 2,
    "seed": 7,
}
ROUNDS = 800
EARLY_STOPPING = 50


@dataclass
class Trained:
    booster: Any
    calibrator: Calibrator
    calibration_scores: dict[str, float]
    best_rounds: int
    seconds: float
    metrics: dict[str, dict[str, Any]]  # part -> summary figures (calibrated probabilities)
    test_probs: F64
    valid_probs: F64


def fit(x: F64, y: I64, split: Split, features: list[str], params: dict[str, Any] | None = None) -> Trained:
    import xgboost as xgb

    started = time.perf_counter()
    p = {**DEFAULT_PARAMS, **(params or {})}
    dtrain = xgb.DMatrix(x[split.train], label=y[split.train], feature_names=features)
    dvalid = xgb.DMatrix(x[split.valid], label=y[split.valid], feature_names=features)
    booster = xgb.train(
        p,
        dtrain,
        num_boost_round=ROUNDS,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=EARLY_STOPPING,
        verbose_eval=False,
    )
    best = int(booster.best_iteration) + 1
    booster = booster[:best]  # keep exactly the rounds early stopping chose

    def raw(mask: npt.NDArray[np.bool_]) -> F64:
        out: F64 = booster.predict(xgb.DMatrix(x[mask], feature_names=features)).astype(np.float64)
        return out

    valid_raw = raw(split.valid)
    calibrator, scores = choose(valid_raw, y[split.valid])
    figures = {}
    probs: dict[str, F64] = {}
    for name, mask in (("train", split.train), ("validation", split.valid), ("test", split.test)):
        probs[name] = calibrator(raw(mask))
        figures[name] = metrics.summary(y[mask], probs[name])
    seconds = time.perf_counter() - started
    log.info(
        "trained %d rounds in %.1f s; test ROC-AUC %.3f PR-AUC %.3f (calibration: %s)",
        best,
        seconds,
        figures["test"]["roc_auc"],
        figures["test"]["pr_auc"],
        calibrator.method,
    )
    return Trained(booster, calibrator, scores, best, seconds, figures, probs["test"], probs["validation"])
