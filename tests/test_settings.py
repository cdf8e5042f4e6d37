from __future__ import annotations

import pytest

from equilibrate.errors import ConfigError
from equilibrate.settings import Settings, load_settings, redact_url


def test_defaults_point_at_local_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    s = Settings(_env_file=None)
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert s.redis_host_port == ("127.0.0.1", 6379)
    assert s.kafka_client == "confluent"
    assert s.kafka_max_poll_interval_ms <= 10_000


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost", "KAFKA_BOOTSTRAP_SERVERS"),
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost:99999", "KAFKA_BOOTSTRAP_SERVERS"),
        ("REDIS_URL", "http://localhost:6379", "REDIS_URL"),
        ("KAFKA_PARTITIONS", "0", "KAFKA_PARTITIONS"),
        ("KAFKA_CLIENT", "librdkafka", "KAFKA_CLIENT"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert named in str(info.value)
    assert "\n" not in str(info.value)


def test_secrets_are_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://app:s3cret@redis.internal:6380/2")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "hunter2")
    s = load_settings()
    shown = repr(s.redacted()) + repr(s)
    assert "s3cret" not in shown
    assert "hunter2" not in shown
    assert s.redis_host_port == ("redis.internal", 6380)
    assert redact_url("redis://localhost:6379/0") == "redis://localhost:6379/0"
