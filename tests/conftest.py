"""Session-wide real services: one Tansu broker and one redis-server on free ports.

Both are started with the project's own launch code. Every test gets unique topic names, a
unique consumer-group prefix and its own Redis database, so tests never see each other's data.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from equilibrate.kafka.broker import start_broker
from equilibrate.kafka.topics import ensure_topics, pipeline_topics
from equilibrate.ops.child import stop
from equilibrate.ops.net import free_port
from equilibrate.settings import Settings
from equilibrate.storage.redis_server import start_redis

REDIS_DATABASES = 512
_db_counter = itertools.count(1)


@dataclass(frozen=True)
class Services:
    bootstrap: str
    redis_host: str
    redis_port: int
    data_dir: Path


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("services")
    kafka_port, redis_port = free_port(), free_port()
    broker = start_broker("127.0.0.1", kafka_port, quiet=True)
    redis_proc = start_redis("127.0.0.1", redis_port, root / "redis", databases=REDIS_DATABASES)
    try:
        yield Services(f"127.0.0.1:{kafka_port}", "127.0.0.1", redis_port, root)
    finally:
        for proc in (redis_proc, broker):
            stop(proc)


def make_settings(services: Services, data_dir: Path, **overrides: object) -> Settings:
    """Settings isolated for one test: fresh topics, own Redis db, own data dir."""
    suffix = uuid.uuid4().hex[:8]
    db = next(_db_counter) % REDIS_DATABASES
    values: dict[str, object] = {
        "kafka_bootstrap_servers": services.bootstrap,
        "redis_url": f"redis://{services.redis_host}:{services.redis_port}/{db}",
        "data_dir": data_dir,
        "model_registry_dir": data_dir / "model-registry",
        "topic_transactions": f"transactions-{suffix}",
        "topic_dlq": f"transactions.dlq-{suffix}",
        "topic_risk_events": f"risk-events-{suffix}",
        "topic_interventions": f"interventions-{suffix}",
        "kafka_partitions": 4,
        "embedded_services": "never",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture
def settings(services: Services, tmp_path: Path) -> Iterator[Settings]:
    """Per-test settings on the session's services, topics created, Redis db flushed."""
    s = make_settings(services, tmp_path / "data")
    ensure_topics(s, pipeline_topics(s))
    client = redis.Redis.from_url(s.redis_url)
    client.flushdb()
    client.close()
    yield s


@pytest.fixture
def redis_client(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url)
    yield client
    client.close()


@pytest.fixture(params=["confluent", "kafka-python"])
def both_clients(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The same test once per supported Kafka client."""
    return settings.model_copy(update={"kafka_client": request.param})


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `equilibrate` entry point as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "equilibrate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd,
        check=False,
    )


def settings_env(s: Settings) -> dict[str, str]:
    """The environment variables that reproduce `s` in a child process."""
    env = {}
    for name, value in s.model_dump(mode="json").items():
        if value is not None:
            env[name.upper()] = str(value)
    return env
