"""The one settings object of Equilibrate.

Every component reads its configuration from here: environment variables first, then `.env`.
`.env.example` lists every variable with its default. Validation happens when `Settings()` is
built, so a bad value fails at start-up with a message naming the variable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from equilibrate.errors import ConfigError

KafkaClientName = Literal["confluent", "kafka-python"]
EmbeddedMode = Literal["auto", "always", "never"]


class Settings(BaseSettings):
    """Configuration shared by every component (env vars, then `.env`)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- Kafka -------------------------------------------------------------------------------
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_client: KafkaClientName = "confluent"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_partitions: int = Field(default=4, ge=1, le=1024)
    kafka_replication_factor: int = Field(default=1, ge=1, le=16)
    kafka_max_poll_interval_ms: int = Field(default=10_000, ge=1_000, le=3_600_000)
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1_000, le=3_600_000)
    topic_transactions: str = "transactions"
    topic_dlq: str = "transactions.dlq"
    topic_risk_events: str = "risk-events"
    topic_interventions: str = "interventions"

    # --- Ingest (every consumer of `transactions`) ----------------------------------------
    #: Reject events for customers missing from the registry (`eq:customers`) to the DLQ.
    validate_customers: bool = True
    consume_batch: int = Field(default=5_000, ge=1, le=100_000)
    features_batch: int = Field(default=20_000, ge=1, le=200_000)
    features_poll_s: float = Field(default=0.05, gt=0, le=10)
    archive_flush_rows: int = Field(default=100_000, ge=1, le=10_000_000)
    archive_flush_interval_s: float = Field(default=2.0, gt=0, le=3600)

    # --- Risk engine (equilibrate risk) ------------------------------------------------------
    #: Rule weights, thresholds and hardship rules (default: the packaged equilibrate/risk/rules.yaml).
    risk_rules_file: Path | None = None
    #: Actions and message templates per hardship and level (default: the packaged policy_templates.yaml).
    policy_file: Path | None = None
    risk_batch: int = Field(default=20_000, ge=1, le=200_000)
    risk_poll_s: float = Field(default=0.1, gt=0, le=10)
    risk_sweep_interval_s: float = Field(default=5.0, gt=0, le=3600)
    risk_sweep_batch: int = Field(default=5_000, ge=1, le=200_000)
    risk_changes_maxlen: int = Field(default=10_000, ge=100, le=10_000_000)
    #: Where trained models live (`<dir>/<version>/`, and `current`, which the risk engine follows).
    model_registry_dir: Path = Path("model/registry")
    #: How often the risk engine checks `current` for a newly trained model (seconds).
    risk_model_check_s: float = Field(default=5.0, gt=0, le=3600)
    #: `model monitor` drift thresholds: PSI warn / alert, and how many times apart the observed
    #: missed-payment rate and the predicted one may be.
    monitor_psi_warn: float = Field(default=0.1, gt=0, le=10)
    monitor_psi_alert: float = Field(default=0.25, gt=0, le=10)
    monitor_calibration_ratio_max: float = Field(default=2.0, gt=1, le=100)

    # --- Redis -------------------------------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"

    # --- Embedded services -------------------------------------------------------------------
    #: auto: start the embedded broker / redis-server when nothing answers at a loopback address.
    embedded_services: EmbeddedMode = "auto"
    redis_server_bin: str = "redis-server"

    # --- History (equilibrate snapshot) ------------------------------------------------------
    snapshot_interval_s: float = Field(default=900.0, gt=0, le=86400)
    snapshot_batch: int = Field(default=5_000, ge=1, le=100_000)

    # --- Files and ports ---------------------------------------------------------------------
    data_dir: Path = Path("data")
    dashboard_port: int = Field(default=8501, ge=1, le=65535)
    api_port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- Supervisor (`equilibrate up`) -------------------------------------------------------
    up_restart_backoff_max_s: float = Field(default=30.0, gt=0, le=600)
    heartbeat_interval_s: float = Field(default=5.0, gt=0, le=300)

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in {"redis", "rediss", "unix"}:
            raise ValueError(f"expected redis://, rediss:// or unix:// URL, got scheme {parsed.scheme!r}")
        if parsed.scheme != "unix" and not parsed.hostname:
            raise ValueError("the URL has no host")
        return value

    @property
    def bootstrap_host_port(self) -> tuple[str, int]:
        """The first bootstrap server as (host, port)."""
        host, _, port = self.kafka_bootstrap_servers.split(",")[0].strip().rpartition(":")
        return host, int(port)

    @property
    def redis_host_port(self) -> tuple[str, int]:
        parsed = urlparse(self.redis_url)
        return parsed.hostname or "127.0.0.1", parsed.port or 6379

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Logs and tracebacks show settings through repr: never with a password in it.
        yield from self.redacted().items()

    def redacted(self) -> dict[str, object]:
        """Settings as a dict safe to print: secrets masked, passwords removed from URLs."""
        out: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                out[name] = "**********" if value.get_secret_value() else ""
            elif name == "redis_url":
                out[name] = redact_url(str(value))
            else:
                out[name] = value
        return out


def redact_url(url: str) -> str:
    """Hide the password in a URL such as redis://user:secret@host:6379/0."""
    parsed = urlparse(url)
    if parsed.password:
        netloc = parsed.netloc.replace(f":{parsed.password}@", ":****@")
        return parsed._replace(netloc=netloc).geturl()
    return url


def load_settings(**overrides: object) -> Settings:
    """Build and validate the settings, turning pydantic's report into one clear ConfigError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(part) for part in err["loc"]) or "settings"
            problems.append(f"{field.upper()}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
