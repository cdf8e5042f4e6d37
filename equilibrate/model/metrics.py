"""Model evaluation figures (pure): discrimination, calibration, alert budgets, lead time."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
BUDGETS = (0.05, 0.10, 0.20)


def roc_auc(labels: I64, scores: F64) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else float("nan")


def pr_auc(labels: I64, scores: F64) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels, scores)) if labels.any() else float("nan")


def brier(labels: I64, probs: F64) -> float:
    return float(np.mean((probs - labels) ** 2))


def ks(labels: I64, scores: F64) -> float:
    """Kolmogorov-Smirnov: the largest gap between the score distributions of positives and negatives."""
    order = np.argsort(-scores, kind="stable")
    pos = np.cumsum(labels[order]) / max(1, int(labels.sum()))
    neg = np.cumsum(1 - labels[order]) / max(1, int((1 - labels).sum()))
    return float(np.max(np.abs(pos - neg))) if len(labels) else 0.0


def lift_table(labels: I64, scores: F64, budgets: tuple[float, ...] = BUDGETS) -> list[dict[str, float]]:
    """For alerting the top `budget` share: precision, recall (gain) and lift over the base rate."""
    order = np.argsort(-scores, kind="stable")
    base = labels.mean() if len(labels) else 0.0
    out = []
    for budget in budgets:
        k = max(1, round(len(labels) * budget))
        hits = int(labels[order[:k]].sum())
        precision = hits / k
        out.append(
            {
                "budget": budget,
                "alerts": k,
                "precision": precision,
                "recall": hits / max(1, int(labels.sum())),
                "lift": precision / base if base else 0.0,
            }
        )
    return out


def calibration_bins(labels: I64, probs: F64, bins: int = 10) -> list[dict[str, float]]:
    """Mean predicted vs observed rate per quantile bin of the prediction."""
    if not len(probs):
        return []
    edges = np.unique(np.quantile(probs, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, probs, side="right") - 1, 0, max(0, len(edges) - 2))
    out = []
    for b in np.unique(which).tolist():
        sel = which == b
        out.append(
            {"predicted": float(probs[sel].mean()), "observed": float(labels[sel].mean()), "rows": int(sel.sum())}
        )
    return out


def confusion(labels: I64, probs: F64, threshold: float) -> dict[str, int]:
    flagged = probs >= threshold
    return {
        "true_positive": int((flagged & (labels == 1)).sum()),
        "false_positive": int((flagged & (labels == 0)).sum()),
        "false_negative": int((~flagged & (labels == 1)).sum()),
        "true_negative": int((~flagged & (labels == 0)).sum()),
    }


def threshold_table(
    labels: I64, probs: F64, recalls: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
) -> list[dict[str, float]]:
    """The highest threshold reaching each recall, with its precision and alert share."""
    order = np.argsort(-probs, kind="stable")
    hits = np.cumsum(labels[order])
    total = max(1, int(labels.sum()))
    out = []
    for target in recalls:
        reach = np.flatnonzero(hits >= target * total)
        if not len(reach):
            continue
        k = int(reach[0]) + 1
        out.append(
            {
                "recall": target,
                "threshold": float(probs[order[k - 1]]),
                "precision": float(hits[k - 1] / k),
                "alert_share": k / len(labels),
            }
        )
    return out


def lead_times(customers: npt.NDArray[Any], days: I64, days_to_missed: F64, flagged: npt.NDArray[np.bool_]) -> F64:
    """Days between a customer's first flag and their first missed payment, per customer who missed one.

    Rows are snapshots (customer, day); `days_to_missed` is the days from the snapshot to the next
    missed payment within the horizon (NaN when none). A customer never flagged before the miss
    gets -1 (missed without warning).
    """
    miss_at: dict[Any, int] = {}
    for cust, day, ahead in zip(customers.tolist(), days.tolist(), days_to_missed.tolist(), strict=True):
        if not math.isnan(ahead):
            when = day + int(ahead)
            if cust not in miss_at or when < miss_at[cust]:
                miss_at[cust] = when
    first_flag: dict[Any, int] = {}
    for cust, day, flag in zip(customers.tolist(), days.tolist(), flagged.tolist(), strict=True):
        m = miss_at.get(cust)
        if flag and m is not None and day < m and (cust not in first_flag or day < first_flag[cust]):
            first_flag[cust] = day
    return np.array([m - first_flag[c] if c in first_flag else -1 for c, m in miss_at.items()], dtype=np.float64)


def summary(labels: I64, probs: F64) -> dict[str, Any]:
    return {
        "rows": len(labels),
        "positives": int(labels.sum()),
        "positive_rate": float(labels.mean()) if len(labels) else 0.0,
        "roc_auc": roc_auc(labels, probs),
        "pr_auc": pr_auc(labels, probs),
        "brier": brier(labels, probs),
        "ks": ks(labels, probs),
    }
