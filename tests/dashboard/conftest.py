"""A small bank in the session's real Redis, built by the pipeline's own code, for the console tests.

The simulator's customers are registered (attributes and indices), their transactions written to a
Parquet archive, the feature engine rebuilds their profiles from it, the risk engine scores them,
and the intervention engine's proposer opens cases for the riskiest: every page has real data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import streamlit as st

from equilibrate.alert.proposer import Proposer, event_from_profile
from equilibrate.dashboard import queries
from equilibrate.features.rebuild import rebuild
from equilibrate.kafka.topics import ensure_topics, pipeline_topics
from equilibrate.ops.stopping import StopFlag
from equilibrate.risk.engine import RiskEngine
from equilibrate.risk.policy import load_policy
from equilibrate.settings import Settings
from equilibrate.sources.customers import generate_customers
from equilibrate.sources.direct_archive import simulate_into_archive
from equilibrate.storage.customer_registry import register
from tests.conftest import Services, make_settings, settings_env

CUSTOMERS, DAYS, SEED = 400, 120, 7
START = datetime(2026, 1, 5, tzinfo=UTC)
APP = Path(__file__).parents[2] / "equilibrate" / "dashboard" / "app.py"


@dataclass(frozen=True)
class Bank:
    settings: Settings
    redis: redis.Redis
    cases: list[str]


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


@pytest.fixture(scope="module")
def bank(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bank]:
    """One bank per test module (built in a few seconds); tests that act on cases use different ones."""
    settings = make_settings(services, tmp_path_factory.mktemp("console") / "data")
    ensure_topics(settings, pipeline_topics(settings))
    client = redis.Redis.from_url(settings.redis_url)
    client.flushdb()
    cases = fill(settings, client)
    with pytest.MonkeyPatch.context() as env:
        for name, value in settings_env(settings).items():
            env.setenv(name, value)
        st.cache_resource.clear()  # the console caches its settings and client per process
        st.cache_data.clear()
        yield Bank(settings, client, cases)
    st.cache_resource.clear()
    st.cache_data.clear()
    client.close()
