"""How well the shipped rules see missed payments coming, graded against the simulator's ground truth.

The floors sit a little under what the rules reach (see `equilibrate risk evaluate`), so a change
that makes the engine worse at its one job fails here. The run is deterministic (fixed seed).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from equilibrate.features.state import apply_events, new_records, to_arrays
from equilibrate.risk.evaluate import Evaluation, day_events, evaluate, rules_scorer
from equilibrate.risk.rules import load_rules
from equilibrate.schema import parse_transaction
from equilibrate.sources.customers import generate_customers
from equilibrate.sources.simulator import Simulator


def test_simulated_days_fold_exactly_like_their_json() -> None:
    people = generate_customers(60, seed=3)
    sim = Simulator(people, 3, datetime(2026, 2, 1, tzinfo=UTC))
    direct, wire = new_records(60), new_records(60)
    index = {c.customer_id: i for i, c in enumerate(people)}
    for batch in sim.days(40):
        apply_events(direct, day_events(batch))
        txns = [parse_transaction(raw) for raw in sim.encode(batch)]
        apply_events(wire, to_arrays(txns, [index[t.customer_id] for t in txns]))
    assert direct.tobytes() == wire.tobytes()


def test_high_risk_sees_missed_payments_coming() -> None:
    result: Evaluation = evaluate(rules_scorer(load_rules()), customers=2_000, days=150, seed=11)
    print(result.report())
    assert result.positives >= 200  # enough missed payments for the rates to mean something
    assert result.precision_high >= 0.12  # base rate is ~1.5%: HIGH is at least 8x as likely to miss
    assert result.recall_high >= 0.25
    assert result.precision_high >= 8 * result.base_rate
    rates = {level: pos / rows for level, (rows, pos) in result.by_level.items() if rows}
    assert rates["LOW"] < rates["MEDIUM"] < rates["HIGH"]  # levels are ordered by real risk
    assert result.high_share("income_shock") + result.high_share("silent_drain") >= 0.6
    assert result.low_share("stable") >= 0.85
    assert np.isclose(sum(result.high_share(p) for p in result.high_by_persona), 1.0)
