"""The evaluation report of a model version: figures, plots (PNG), summary JSON and Markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from equilibrate.model import metrics

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def figures(
    labels: I64,
    probs: F64,
    *,
    threshold: float,
    baseline: F64 | None = None,
    baseline_name: str = "rule score",
    lead: F64 | None = None,
) -> dict[str, Any]:
    """Every figure of the report for one test set."""
    out: dict[str, Any] = {
        "summary": metrics.summary(labels, probs),
        "lift": metrics.lift_table(labels, probs),
        "calibration": metrics.calibration_bins(labels, probs),
        "threshold": threshold,
        "confusion": metrics.confusion(labels, probs, threshold),
        "thresholds_for_recall": metrics.threshold_table(labels, probs),
    }
    if baseline is not None:
        out["baseline"] = {
            "name": baseline_name,
            "roc_auc": metrics.roc_auc(labels, baseline),
            "pr_auc": metrics.pr_auc(labels, baseline),
        }
    if lead is not None:
        warned = lead[lead >= 0]
        out["lead_time"] = {
            "customers_who_missed": len(lead),
            "flagged_before": len(warned),
            "median_days": float(np.median(warned)) if len(warned) else None,
            "share_flagged_14_days_ahead": float((lead >= 14).mean()) if len(lead) else None,
        }
    return out


def _plots(
    out: Path, labels: I64, probs: F64, fig: dict[str, Any], *, lead: F64 | None, importance: dict[str, float]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    def save(name: str) -> None:
        plt.tight_layout()
        plt.savefig(out / name, dpi=110)
        plt.close()

    if len(np.unique(labels)) == 2:
        fpr, tpr, _ = roc_curve(labels, probs)
        plt.figure(figsize=(5, 4))
        plt.plot(fpr, tpr, label=f"model (AUC {fig['summary']['roc_auc']:.3f})")
        plt.plot([0, 1], [0, 1], "--", color="grey")
        plt.xlabel("false positive rate")
        plt.ylabel("true positive rate")
        plt.title("ROC")
        plt.legend()
        save("roc.png")
        precision, recall, _ = precision_recall_curve(labels, probs)
        plt.figure(figsize=(5, 4))
        plt.plot(recall, precision, label=f"model (PR-AUC {fig['summary']['pr_auc']:.3f})")
        plt.axhline(labels.mean(), linestyle="--", color="grey", label="base rate")
        plt.xlabel("recall")
        plt.ylabel("precision")
        plt.title("Precision-recall")
        plt.legend()
        save("pr.png")
    cal = fig["calibration"]
    plt.figure(figsize=(5, 4))
    top = max([c["predicted"] for c in cal] + [c["observed"] for c in cal] + [0.01])
    plt.plot([0, top], [0, top], "--", color="grey")
    plt.plot([c["predicted"] for c in cal], [c["observed"] for c in cal], "o-")
    plt.xlabel("predicted probability")
    plt.ylabel("observed rate")
    plt.title("Calibration (test)")
    save("calibration.png")
    if lead is not None and len(lead):
        plt.figure(figsize=(5, 4))
        plt.hist(lead[lead >= 0], bins=range(0, 92, 7))
        plt.xlabel("days flagged HIGH before the first missed payment")
        plt.ylabel("customers")
        plt.title(f"Lead time ({int((lead < 0).sum())} missed without a flag)")
        save("lead_time.png")
    if importance:
        names = sorted(importance, key=lambda k: importance[k])[-15:]
        plt.figure(figsize=(6, 5))
        plt.barh(names, [importance[n] for n in names])
        plt.xlabel("mean |SHAP| (log-odds)")
        plt.title("Feature importance")
        save("importance.png")


def write(
    out: Path,
    version: str,
    labels: I64,
    probs: F64,
    *,
    fig: dict[str, Any],
    card: dict[str, Any],
    lead: F64 | None = None,
    importance: dict[str, float] | None = None,
) -> Path:
    """Write plots, summary.json and report.md under `out`; return the Markdown path."""
    out.mkdir(parents=True, exist_ok=True)
    _plots(out, labels, probs, fig, lead=lead, importance=importance or {})
    (out / "summary.json").write_bytes(
        orjson.dumps({"version": version, **fig}, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
    md = out / "report.md"
    md.write_text(_markdown(version, fig, card, importance or {}), encoding="utf-8")
    return md


def _markdown(version: str, fig: dict[str, Any], card: dict[str, Any], importance: dict[str, float]) -> str:
    s = fig["summary"]
    lines = [
        f"# Model {version}",
        "",
        f"Data: {card.get('data', {}).get('source', '?')} (sha256 {str(card.get('data', {}).get('sha256', ''))[:12]}), "
        f"split {card.get('split', '?')}.",
        f"Class balance: train {card['metrics']['train']['positive_rate']:.2%}, "
        f"validation {card['metrics']['validation']['positive_rate']:.2%}, test {s['positive_rate']:.2%} positive "
        f"({s['positives']} of {s['rows']} test rows). Calibration: {card['calibration']['method']}.",
        "",
        "## Test set",
        "",
        "| | ROC-AUC | PR-AUC | Brier | KS |",
        "|---|---|---|---|---|",
        f"| model | {s['roc_auc']:.3f} | {s['pr_auc']:.3f} | {s['brier']:.4f} | {s['ks']:.3f} |",
    ]
    if "baseline" in fig:
        b = fig["baseline"]
        lines.append(f"| {b['name']} | {b['roc_auc']:.3f} | {b['pr_auc']:.3f} | | |")
    lines += [
        "",
        "## Alert budgets (lift and gains)",
        "",
        "| alert the top | precision | recall | lift |",
        "|---|---|---|---|",
    ]
    for row in fig["lift"]:
        lines.append(f"| {row['budget']:.0%} | {row['precision']:.3f} | {row['recall']:.3f} | {row['lift']:.1f}x |")
    c = fig["confusion"]
    lines += [
        "",
        f"## At the HIGH threshold ({fig['threshold']:.2f})",
        "",
        f"True positives {c['true_positive']}, false positives {c['false_positive']}, "
        f"false negatives {c['false_negative']}, true negatives {c['true_negative']}.",
        "",
        "| recall | threshold | precision | share alerted |",
        "|---|---|---|---|",
    ]
    for row in fig["thresholds_for_recall"]:
        lines.append(
            f"| {row['recall']:.0%} | {row['threshold']:.4f} | {row['precision']:.3f} | {row['alert_share']:.1%} |"
        )
    if "lead_time" in fig:
        lt = fig["lead_time"]
        median = "-" if lt["median_days"] is None else f"{lt['median_days']:.0f} days"
        share = "-" if lt["share_flagged_14_days_ahead"] is None else f"{lt['share_flagged_14_days_ahead']:.0%}"
        lines += [
            "",
            "## Lead time",
            "",
            f"Of {lt['customers_who_missed']} customers who missed a payment in the test period, "
            f"{lt['flagged_before']} were flagged HIGH before it: median lead {median}; "
            f"{share} were flagged at least 14 days ahead.",
        ]
    if importance:
        lines += ["", "## Most important features (mean |SHAP|)", ""]
        for name in sorted(importance, key=lambda k: -importance[k])[:10]:
            lines.append(f"- {name}: {importance[name]:.3f}")
    lines += ["", "Plots: roc.png, pr.png, calibration.png, lead_time.png, importance.png", ""]
    return "\n".join(lines)
