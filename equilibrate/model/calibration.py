"""Probability calibration (isotonic or Platt), stored as plain numbers beside the model (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Calibrator:
    method: str  # "isotonic", "platt" or "none"
    x: list[float]  # isotonic: raw-probability knots; platt: [a, b] of sigmoid(a * logit + b)
    y: list[float]

    def __call__(self, raw: F64) -> F64:
        raw = np.clip(np.asarray(raw, dtype=np.float64), 1e-9, 1 - 1e-9)
        if self.method == "isotonic":
            return np.interp(raw, self.x, self.y)
        if self.method == "platt":
            a, b = self.x
            logit = np.log(raw / (1 - raw))
            out: F64 = 1.0 / (1.0 + np.exp(-(a * logit + b)))
            return out
        return raw

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "x": self.x, "y": self.y}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibrator:
        return cls(str(data["method"]), [float(v) for v in data["x"]], [float(v) for v in data["y"]])


def fit_isotonic(raw: F64, labels: npt.NDArray[np.int64]) -> Calibrator:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, labels)
    return Calibrator("isotonic", [float(v) for v in iso.X_thresholds_], [float(v) for v in iso.y_thresholds_])


def fit_platt(raw: F64, labels: npt.NDArray[np.int64]) -> Calibrator:
    from sklearn.linear_model import LogisticRegression

    raw = np.clip(raw, 1e-9, 1 - 1e-9)
    logit = np.log(raw / (1 - raw)).reshape(-1, 1)
    lr = LogisticRegression(C=1e6).fit(logit, labels)
    return Calibrator("platt", [float(lr.coef_[0, 0]), float(lr.intercept_[0])], [])


def choose(raw: F64, labels: npt.NDArray[np.int64], seed: int = 7) -> tuple[Calibrator, dict[str, float]]:
    """Isotonic or Platt, whichever has the lower Brier score in 2-fold cross-fitting on `raw`
    (the validation set); the winner is then refit on all of it."""
    rng = np.random.default_rng(seed)
    fold = rng.integers(0, 2, len(raw))
    scores: dict[str, float] = {"none": float(np.mean((raw - labels) ** 2))}
    for name, fit in (("isotonic", fit_isotonic), ("platt", fit_platt)):
        errors = []
        for k in (0, 1):
            fit_on, score_on = fold != k, fold == k
            if len(np.unique(labels[fit_on])) < 2 or not score_on.any():
                continue
            calibrated = fit(raw[fit_on], labels[fit_on])(raw[score_on])
            errors.append(np.sum((calibrated - labels[score_on]) ** 2))
        if errors:
            scores[name] = float(np.sum(errors) / len(raw))
    best = min(scores, key=lambda k: scores[k])
    if best == "isotonic":
        return fit_isotonic(raw, labels), scores
    if best == "platt":
        return fit_platt(raw, labels), scores
    return Calibrator("none", [], []), scores
