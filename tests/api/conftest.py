"""The API on the test session's real Redis, holding a small bank built by the pipeline's code."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from equilibrate.api.app import create_app
from equilibrate.api.keys import KeyStore
from equilibrate.kafka.topics import ensure_topics, pipeline_topics
from equilibrate.settings import Settings
from tests.bank import fill
from tests.conftest import Services, make_settings


@dataclass(frozen=True)
class Api:
    settings: Settings
    redis: redis.Redis
    cases: list[str]
    reader: str  # an API key with the read scope
    writer: str  # read and write
    keys_file: Path

    def client(self, **overrides: object) -> TestClient:
        return TestClient(create_app(self.settings.model_copy(update=overrides)), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def api(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("api")
    keys_file = root / "api_keys.json"
    store = KeyStore()
    reader, _ = store.add("crm", ["read"])
    writer, _ = store.add("collections", ["read", "write"])
    store.save(keys_file)
    settings = make_settings(services, root / "data", api_keys_file=keys_file, api_mode="production")
    ensure_topics(settings, pipeline_topics(settings))
    client = redis.Redis.from_url(settings.redis_url)
    client.flushdb()
    cases = fill(settings, client)
    yield Api(settings, client, cases, reader, writer, keys_file)
    client.close()


@pytest.fixture(scope="module")
def http(api: Api) -> Iterator[TestClient]:
    with api.client() as client:
        yield client
