"""How well a scorer sees missed payments coming, measured against the simulator's ground truth.

Everything runs in-process with the pipeline's own code: the simulator's days are folded with the
feature engine's state functions, features are computed as of weekly snapshot days (exactly as
the risk engine's sweep computes them against the watermark) and scored. A customer-snapshot is
positive when a loan or card repayment fails (a missed payment) in the 30 days after it;
customers with a missed payment in the 30 days before are already delinquent and left out at
that date, because the point is to see it coming.

The persona is read here, and only here, to report who the HIGH level holds: it is the answer
the engine is graded against, never an input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from equilibrate.features.compute import compute
from equilibrate.features.state import EventArrays, apply_events, coded_events, new_records
from equilibrate.risk.rules import RiskRules
from equilibrate.risk.scoring import RULE_LEVELS, score_table
from equilibrate.schema import CREDIT_REPAYMENT
from equilibrate.sources.customers import generate_customers
from equilibrate.sources.personas import assign_personas
from equilibrate.sources.simulator import CATEGORIES, DayBatch, Simulator

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
#: Scores features (columns, one row per customer) into level names, one per customer.
Scorer = Callable[[Mapping[str, F64]], list[str]]
HORIZON_DAYS = 30
_REPAYMENT = np.array([c in CREDIT_REPAYMENT for c in CATEGORIES])


def rules_scorer(rules: RiskRules) -> Scorer:
    def score(features: Mapping[str, F64]) -> list[str]:
        return [RULE_LEVELS[i] for i in score_table(features, rules).level.tolist()]

    return score


def missed_payment_mask(batch: DayBatch, customers: int) -> npt.NDArray[np.bool_]:
    """Which customers missed a payment (a failed loan or card repayment) on the batch's day."""
    mask = np.zeros(customers, dtype=np.bool_)
    mask[batch.customer[batch.failed & _REPAYMENT[batch.category]]] = True
    return mask


def day_events(batch: DayBatch) -> EventArrays:
    """A simulated day as the feature engine's event columns (what `to_arrays` makes of its JSON)."""
    return coded_events(
        batch.customer,
        batch.ts_ms,
        batch.amount / 100,
        bal_p=batch.balance,  # pence already
        direction=batch.credit.astype(np.int64),  # Direction: DEBIT, CREDIT
        category=batch.category,
        status=batch.failed.astype(np.int64),  # Status: OK, FAILED
    )


@dataclass
class Evaluation:
    customers: int
    days: int
    snapshots: int
    rows: int = 0  # customer-snapshots scored (already-delinquent ones left out)
    positives: int = 0  # ... followed by a missed payment within 30 days
    by_level: dict[str, tuple[int, int]] = field(default_factory=dict)  # level -> (rows, positives)
    high_by_persona: dict[str, int] = field(default_factory=dict)  # HIGH-or-above rows per persona
    rows_by_persona: dict[str, tuple[int, int]] = field(default_factory=dict)  # persona -> (rows, LOW rows)

    def _high(self) -> tuple[int, int]:
        rows = sum(r for lvl, (r, _) in self.by_level.items() if lvl in ("HIGH", "CRITICAL"))
        pos = sum(p for lvl, (_, p) in self.by_level.items() if lvl in ("HIGH", "CRITICAL"))
        return rows, pos

    @property
    def precision_high(self) -> float:
        rows, pos = self._high()
        return pos / rows if rows else 0.0

    @property
    def recall_high(self) -> float:
        return self._high()[1] / self.positives if self.positives else 0.0

    @property
    def base_rate(self) -> float:
        return self.positives / self.rows if self.rows else 0.0

    def high_share(self, persona: str) -> float:
        """Share of HIGH-or-above rows held by customers of this persona."""
        total = sum(self.high_by_persona.values())
        return self.high_by_persona.get(persona, 0) / total if total else 0.0

    def low_share(self, persona: str) -> float:
        """Share of this persona's rows scored LOW."""
        rows, low = self.rows_by_persona.get(persona, (0, 0))
        return low / rows if rows else 0.0

    def report(self) -> str:
        lines = [
            f"{self.customers} customers, {self.days} days, {self.snapshots} weekly snapshots: "
            f"{self.rows} customer-snapshots, {self.positives} followed by a missed payment within "
            f"{HORIZON_DAYS} days (base rate {self.base_rate:.1%})",
            f"HIGH or above: precision {self.precision_high:.2f}, recall {self.recall_high:.2f} "
            f"(lift {self.precision_high / self.base_rate if self.base_rate else 0:.1f}x)",
            "level      rows  missed  rate",
        ]
        for level, (rows, pos) in self.by_level.items():
            lines.append(f"{level:<8} {rows:>6} {pos:>7} {pos / rows if rows else 0:>5.1%}")
        lines.append("persona        rows   LOW share  share of HIGH")
        for persona, (rows, _low) in self.rows_by_persona.items():
            lines.append(f"{persona:<13} {rows:>6} {self.low_share(persona):>10.1%} {self.high_share(persona):>13.1%}")
        return "\n".join(lines)


def evaluate(
    scorer: Scorer,
    *,
    customers: int = 2_000,
    days: int = 150,
    warmup_days: int = 42,
    every_days: int = 7,
    seed: int = 11,
    start: datetime | None = None,
) -> Evaluation:
    """Simulate `customers` for `days`, snapshot weekly after `warmup_days`, and grade the scorer."""
    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    people = generate_customers(customers, seed)
    truth = assign_personas(people, seed)
    persona = np.array([t.persona for t in truth])
    sim = Simulator(people, seed, start, truth)
    records = new_records(customers)
    missed = np.zeros((customers, days), dtype=np.bool_)
    snap_days = list(range(warmup_days, days - HORIZON_DAYS, every_days))
    snap_levels: dict[int, np.ndarray] = {}
    epoch_day = int(sim.start.timestamp()) // 86_400
    for batch in sim.days(days):
        apply_events(records, day_events(batch))
        missed[:, batch.day] = missed_payment_mask(batch, customers)
        if batch.day in snap_days:
            as_of = np.full(customers, epoch_day + batch.day, dtype=np.int64)
            snap_levels[batch.day] = np.array(scorer(compute(records, as_of)))
    result = Evaluation(customers, days, len(snap_days))
    counts: dict[str, list[int]] = {lvl: [0, 0] for lvl in (*RULE_LEVELS, "CRITICAL")}
    for day, levels in snap_levels.items():
        before = missed[:, max(0, day - HORIZON_DAYS + 1) : day + 1].any(axis=1)
        after = missed[:, day + 1 : day + 1 + HORIZON_DAYS].any(axis=1)
        keep = ~before
        for level, tally in counts.items():
            sel = keep & (levels == level)
            tally[0] += int(sel.sum())
            tally[1] += int((sel & after).sum())
        high = keep & np.isin(levels, ("HIGH", "CRITICAL"))
        for p in np.unique(persona).tolist():
            mine = keep & (persona == p)
            rows, low = result.rows_by_persona.get(p, (0, 0))
            result.rows_by_persona[p] = (rows + int(mine.sum()), low + int((mine & (levels == "LOW")).sum()))
            result.high_by_persona[p] = result.high_by_persona.get(p, 0) + int((high & mine).sum())
        result.rows += int(keep.sum())
        result.positives += int((keep & after).sum())
    result.by_level = {lvl: (c[0], c[1]) for lvl, c in counts.items() if c[0] or lvl != "CRITICAL"}
    return result
