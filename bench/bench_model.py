"""Benchmark: a training run on 5,000 customers x 180 days (issue 6: under 2 minutes).

Simulates the bank straight into a raw archive (as `equilibrate archive` would store it), then
times the two steps `equilibrate model train` runs: the point-in-time training set from the
archive, and training (XGBoost, calibration, registry, evaluation report). Writes
bench/results/model.json with the model's test figures.

    .venv/bin/python bench/bench_model.py [--customers 5000] [--days 180]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from equilibrate.model import runs
from equilibrate.settings import Settings
from equilibrate.sources.direct_archive import simulate_into_archive

TARGET_SECONDS = 120.0
RESULTS = Path(__file__).parent / "results" / "model.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = Settings(_env_file=None, data_dir=root / "data", model_registry_dir=root / "registry")
        t0 = time.perf_counter()
        archive = simulate_into_archive(
            root / "data" / "archive", args.customers, args.days, seed=7, start=datetime(2026, 1, 1, tzinfo=UTC)
        )
        simulate_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        _path, rows, rate = runs.build_dataset(settings)
        dataset_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        run = runs.train_pipeline(settings)
        train_s = time.perf_counter() - t2
        summary = json.loads((run.path / "report" / "summary.json").read_text())
        events = archive.load().rows
    total = dataset_s + train_s
    result = {
        "benchmark": "model",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "customers": args.customers,
        "days": args.days,
        "archived_events": events,
        "simulate_into_archive_s": round(simulate_s, 1),
        "build_dataset_s": round(dataset_s, 1),
        "dataset_rows": rows,
        "positive_rate": round(rate, 4),
        "train_calibrate_register_report_s": round(train_s, 1),
        "training_run_s": round(total, 1),
        "target_s": TARGET_SECONDS,
        "test": {k: summary["summary"][k] for k in ("rows", "positives", "roc_auc", "pr_auc", "brier", "ks")},
        "rule_score_on_test": summary.get("baseline"),
        "lead_time": summary.get("lead_time"),
        "split": run.card["split"],
        "rounds": run.card["params"]["rounds"],
        "calibration": run.card["calibration"]["method"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    verdict = "OK" if total < TARGET_SECONDS else "FAIL"
    print(
        f"{verdict}: training run on {args.customers:,} customers x {args.days} days ({events:,} events): "
        f"{total:.1f} s (dataset {dataset_s:.1f} s, train+report {train_s:.1f} s); target < {TARGET_SECONDS:.0f} s"
    )
    print(f"test ROC-AUC {result['test']['roc_auc']:.3f}, PR-AUC {result['test']['pr_auc']:.3f}; wrote {args.out}")
    return 0 if total < TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
