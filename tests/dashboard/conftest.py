"""The console tests' bank (tests/bank.py), one per module, with the console's environment set."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import streamlit as st

from equilibrate.kafka.topics import ensure_topics, pipeline_topics
from equilibrate.settings import Settings
from tests.bank import fill
from tests.conftest import Services, make_settings, settings_env

APP = Path(__file__).parents[2] / "equilibrate" / "dashboard" / "app.py"


@dataclass(frozen=True)
class Bank:
    settings: Settings
    redis: redis.Redis
    cases: list[str]


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
