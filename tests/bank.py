"""A small bank in the session's real Redis, built by the pipeline's own code (console and API tests).

The simulator's customers are registered (attributes and indices), their transactions written to a
Parquet archive, the feature engine rebuilds their profiles from it, the risk engine scores them,
and the intervention engine's proposer opens cases for the riskiest.
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis

from equilibrate.alert.proposer import Proposer, event_from_profile
from equilibrate.dashboard import queries
from equilibrate.features.rebuild import rebuild
from equilibrate.ops.stopping import StopFlag
from equilibrate.risk.engine import RiskEngine
from equilibrate.risk.policy import load_policy
from equilibrate.settings import Settings
from equilibrate.sources.customers import generate_customers
from equilibrate.sources.direct_archive import simulate_into_archive
from equilibrate.storage.customer_registry import register

CUSTOMERS, DAYS, SEED = 400, 120, 7
START = datetime(2026, 1, 5, tzinfo=UTC)


def fill(settings: Settings, client: redis.Redis, customers: int = CUSTOMERS, days: int = DAYS) -> list[str]:
    """Register, archive, rebuild, score and propose; returns the case ids opened."""
    register(client, (c.as_row() for c in generate_customers(customers, SEED)))
    archive = simulate_into_archive(settings.data_dir / "archive", customers, days, seed=SEED, start=START)
    rebuild(client, archive, settings.topic_transactions)
    engine = RiskEngine(settings, StopFlag())
    engine.rescore_all()
    engine.trend_point(force=True)
    engine.producer.close()
    proposer = Proposer(client, settings, load_policy())
    top = queries.queue_page(client, queries.QueueFilter(levels=("HIGH", "MEDIUM")), 1, 10)
    cases = []
    for row in top.rows:
        detail = queries.customer_detail(client, row["customer_id"])
        assert detail is not None
        case = proposer.propose(event_from_profile(row["customer_id"], detail.profile, START), force=True)
        if case is not None and case["state"] == "proposed" and case.get("channel"):
            cases.append(case["case_id"])
    return cases
