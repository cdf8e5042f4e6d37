"""How often customers change level, with and without the levels' release points (hysteresis).

    .venv/bin/python bench/bench_levels.py [--customers 3000] [--days 180] [--seed 11] [--out PATH]

A level change is what the interventions engine acts on: a proposal made, replaced or withdrawn.
This folds `--customers` simulated customers day by day with the feature engine's own code (as
risk/evaluate.py does), scores every customer at the end of every day with the rules, as the risk
engine's daily sweep does, and counts level changes twice: from the score alone (release points
off) and with the shipped rules' release points (a customer keeps their level while the score
clears it). It also grades both against what followed (the simulator's missed payments, weekly,
as risk/evaluate.py grades): HIGH precision and recall, so the price of the calm is visible. The
persona is not read. Writes bench/results/levels.json; about a minute.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from machine_info import cpu_model

from equilibrate.features.compute import compute
from equilibrate.features.state import apply_events, new_records
from equilibrate.risk.evaluate import HORIZON_DAYS, day_events, missed_payment_mask
from equilibrate.risk.hysteresis import hold_levels
from equilibrate.risk.rules import RiskRules, load_rules
from equilibrate.risk.scoring import RULE_LEVELS, score_table
from equilibrate.sources.customers import generate_customers
from equilibrate.sources.simulator import Simulator

RESULTS = Path(__file__).resolve().parent / "results" / "levels.json"
WARMUP_DAYS = 42  # as the evaluation: rolling windows need history before a score means anything


def run(customers: int, days: int, seed: int, rules: RiskRules) -> dict[str, Any]:
    people = generate_customers(customers, seed)
    sim = Simulator(people, seed, datetime(2026, 1, 1, tzinfo=UTC))
    records = new_records(customers)
    epoch_day = int(sim.start.timestamp()) // 86_400
    release = rules.release_points(model=False)
    plain: list[np.ndarray] = []
    held: list[np.ndarray] = []
    missed = np.zeros((customers, days), dtype=np.bool_)
    kept: Sequence[str | None] = [None] * customers
    for batch in sim.days(days):
        apply_events(records, day_events(batch))
        missed[:, batch.day] = missed_payment_mask(batch, customers)
        if batch.day < WARMUP_DAYS:
            continue
        table = score_table(compute(records, np.full(customers, epoch_day + batch.day, dtype=np.int64)), rules)
        levels = [RULE_LEVELS[i] for i in table.level.tolist()]
        kept = hold_levels(levels, kept, table.score.astype(np.float64) * 10.0, release)
        plain.append(np.array(levels))
        held.append(np.array(kept))
    return {
        "without_release": _summary(plain, missed),
        "with_release": _summary(held, missed),
    }


def _summary(levels_by_day: list[np.ndarray], missed: np.ndarray) -> dict[str, Any]:
    stacked = np.stack(levels_by_day)  # (days scored, customers)
    changes = stacked[1:] != stacked[:-1]
    flips = changes[1:] & (stacked[2:] == stacked[:-2])  # a change undone the next day
    customers = stacked.shape[1]
    scored_days = stacked.shape[0]
    high_rows = high_pos = positives = rows = 0
    for n in range(0, scored_days, 7):  # weekly grading, as risk/evaluate.py
        day = WARMUP_DAYS + n
        if day + HORIZON_DAYS >= missed.shape[1]:
            break
        before = missed[:, max(0, day - HORIZON_DAYS + 1) : day + 1].any(axis=1)
        after = missed[:, day + 1 : day + 1 + HORIZON_DAYS].any(axis=1)
        keep = ~before
        high = keep & (stacked[n] == "HIGH")
        rows += int(keep.sum())
        positives += int((keep & after).sum())
        high_rows += int(high.sum())
        high_pos += int((high & after).sum())
    return {
        "level_changes": int(changes.sum()),
        "level_changes_per_1000_customer_days": round(1000 * changes.sum() / (customers * (scored_days - 1)), 2),
        "changes_undone_next_day": int(flips.sum()),
        "customers_who_changed_level": int(changes.any(axis=0).sum()),
        "share_of_days_at": {lv: round(float((stacked == lv).mean()), 4) for lv in RULE_LEVELS},
        "high_precision": round(high_pos / high_rows, 3) if high_rows else None,
        "high_recall": round(high_pos / positives, 3) if positives else None,
        "graded_rows": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=3_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rules = load_rules()
    started = time.perf_counter()
    result = run(args.customers, args.days, args.seed, rules)
    report = {
        "benchmark": "levels",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "setup": {"customers": args.customers, "days": args.days, "seed": args.seed,
                  "scored_daily_from_day": WARMUP_DAYS, "release": rules.level_release.model_dump()},
        **result,
        "wall_s": round(time.perf_counter() - started, 1),
        "machine": {"cpu": cpu_model()},
    }  # fmt: skip
    for name in ("without_release", "with_release"):
        r = result[name]
        print(
            f"{name:<16} level changes {r['level_changes']:>6,} ({r['level_changes_per_1000_customer_days']}"
            f" per 1,000 customer-days), undone the next day {r['changes_undone_next_day']:>6,}; "
            f"HIGH precision {r['high_precision']} recall {r['high_recall']}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wall time {report['wall_s']} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
