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
from equilibrate.risk.policy_words import CHANNELS

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
    #: How often the risk engine records customers per level for the console's trend (seconds).
    risk_trend_interval_s: float = Field(default=30.0, gt=0, le=3600)
    #: Where trained models live (`<dir>/<version>/`, and `current`, which the risk engine follows).
    model_registry_dir: Path = Path("model/registry")
    #: How often the risk engine checks `current` for a newly trained model (seconds).
    risk_model_check_s: float = Field(default=5.0, gt=0, le=3600)
    #: `model monitor` drift thresholds: PSI warn / alert, and how many times apart the observed
    #: missed-payment rate and the predicted one may be.
    monitor_psi_warn: float = Field(default=0.1, gt=0, le=10)
    monitor_psi_alert: float = Field(default=0.25, gt=0, le=10)
    monitor_calibration_ratio_max: float = Field(default=2.0, gt=1, le=100)

    # --- Delivery channels (equilibrate interventions) ---------------------------------------
    #: smtp://[user:pass@]host:port[?starttls=true] or smtps://...; unset = no email channel.
    smtp_url: str | None = None
    smtp_from: str = "Equilibrate <support@bank.example>"
    #: Appended to every email; the opt-out line is mandatory, so it cannot be empty.
    email_opt_out_text: str = Field(
        default="You can stop these emails at any time: reply STOP or change your contact preferences in the app.",
        min_length=10,
    )
    #: Gateways receiving signed JSON POSTs; unset = no SMS / in-app push channel.
    sms_webhook_url: str | None = None
    app_webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=120)
    delivery_attempts: int = Field(default=3, ge=1, le=20)
    voice_engine: Literal["auto", "gtts", "espeak"] = "auto"
    #: `up` with the simulator and none of SMTP_URL / SMS_WEBHOOK_URL / APP_WEBHOOK_URL set starts a
    #: local demo gateway (`equilibrate demo-gateway`) and points the channels at it (auto); never: don't.
    demo_gateway: Literal["auto", "never"] = "auto"
    #: The demo gateway's ports (`up` takes free ones when these are busy).
    demo_gateway_smtp_port: int = Field(default=2525, ge=1, le=65535)
    demo_gateway_http_port: int = Field(default=8025, ge=1, le=65535)

    # --- Contact policy (equilibrate interventions) ------------------------------------------
    #: Quiet hours in the customer's local time (HH:MM): no contact from quiet_start until quiet_end.
    contact_quiet_start: str = "21:00"
    contact_quiet_end: str = "08:00"
    #: Rolling-window caps: messages per channel, messages in total, voice call attempts.
    contact_cap_per_channel: int = Field(default=1, ge=0, le=100)
    contact_cap_total: int = Field(default=3, ge=0, le=100)
    contact_cap_calls: int = Field(default=7, ge=0, le=100)
    contact_window_days: int = Field(default=7, ge=1, le=90)
    #: This many consecutive interventions without a response suppress contact for contact_suppression_days.
    contact_suppress_after_no_response: int = Field(default=3, ge=1, le=20)
    contact_suppression_days: int = Field(default=30, ge=1, le=365)

    # --- Intervention engine (equilibrate interventions) -------------------------------------
    #: Let low-touch channels go without an operator's approval (off: every message is approved).
    auto_intervene: bool = False
    #: The lowest risk score (0-100) at which AUTO_INTERVENE sends without an approval.
    auto_intervene_min_score: float = Field(default=60.0, ge=0, le=100)
    #: Channels AUTO_INTERVENE may use (comma-separated); sms and voice need an approval unless listed.
    auto_intervene_channels: str = "app,email"
    #: Days after delivery without a recorded response before a case closes as no_response.
    intervention_response_days: int = Field(default=14, ge=1, le=90)
    #: Failed sends are retried this many times (after the channel's own attempts), waiting
    #: delivery_retry_s, then twice that, and so on (wall-clock seconds: a gateway outage is real time).
    delivery_retries: int = Field(default=3, ge=0, le=20)
    delivery_retry_s: float = Field(default=60.0, gt=0, le=86_400)
    #: This engine's name in the outbox consumer group: a restarted engine resumes its own unfinished
    #: sends at once. Empty: the host name. Give each engine on one host its own name.
    interventions_consumer: str = ""
    #: Sends another engine took and has not finished after this long are taken over (seconds).
    outbox_claim_idle_s: float = Field(default=120.0, gt=0, le=86_400)

    # --- Operations console (equilibrate dashboard) -----------------------------------------
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(default=8501, ge=1, le=65535)
    #: How often the live pages refresh (seconds; each page has a toggle to pause it).
    dashboard_refresh_s: float = Field(default=10.0, ge=1, le=3600)
    #: The console's colour theme: light or dark (charts follow it).
    dashboard_theme: Literal["light", "dark"] = "light"

    # --- REST / WebSocket API (equilibrate api) -----------------------------------------------
    api_host: str = "127.0.0.1"
    #: development: keys optional (without a key store every caller may read and write);
    #: production: a key store is required, debug off and CORS without "*", or the API refuses to start.
    api_mode: Literal["development", "production"] = "development"
    #: The hashed API key store (JSON; `equilibrate api keys add NAME --scopes read,write`).
    api_keys_file: Path | None = None
    #: Origins allowed to call the API from a browser, comma-separated ("" = none).
    api_cors_origins: str = ""
    #: Requests per second (and burst) per API key, and per client address.
    api_rate_per_key: float = Field(default=200.0, gt=0, le=100_000)
    api_rate_per_ip: float = Field(default=100.0, gt=0, le=100_000)
    api_rate_burst: int = Field(default=400, ge=1, le=1_000_000)
    #: Customers in one POST /predict/batch.
    api_max_batch: int = Field(default=1_000, ge=1, le=100_000)
    #: Largest request body accepted (bytes).
    api_max_body_bytes: int = Field(default=1_048_576, ge=1_024, le=100_000_000)
    #: How long an Idempotency-Key's response is kept for replays (seconds).
    api_idempotency_ttl_s: int = Field(default=86_400, ge=60, le=2_592_000)
    #: Debug responses (never in production).
    api_debug: bool = False
    #: API processes on API_PORT, each with its own SO_REUSEPORT socket (the kernel spreads
    #: connections evenly; see api/serving.py). With more than one, /metrics adds up this host's
    #: workers (through Redis) and each worker enforces the rate limits on the connections it serves.
    api_workers: int = Field(default=1, ge=1, le=64)

    # --- The bank's identity in messages (policy template placeholders) ----------------------
    bank_name: str = Field(default="Equilibrate Bank", min_length=1, max_length=20)
    bank_helpline: str = Field(default="0800 000 0000", min_length=1, max_length=14)
    bank_app_link: str = Field(default="bank.example/app", min_length=1, max_length=30)
    bank_opening_hours: str = Field(default="8am to 8pm, Mon to Sat", min_length=1, max_length=32)

    # --- Redis -------------------------------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"

    # --- Embedded services -------------------------------------------------------------------
    #: auto: start the embedded broker / redis-server when nothing answers at a loopback address.
    embedded_services: EmbeddedMode = "auto"
    redis_server_bin: str = "redis-server"

    # --- History (equilibrate snapshot) ------------------------------------------------------
    snapshot_interval_s: float = Field(default=900.0, gt=0, le=86400)
    snapshot_batch: int = Field(default=5_000, ge=1, le=100_000)
    #: Finished history days (CSV and index) more than this many event days old are deleted when a
    #: day closes; 0 keeps every day. Your retention policy decides (about 9.6M rows a day at 100k).
    history_retention_days: int = Field(default=0, ge=0, le=36_500)

    # --- Files and ports ---------------------------------------------------------------------
    data_dir: Path = Path("data")
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

    @field_validator("smtp_url")
    @classmethod
    def _check_smtp_url(cls, value: str | None) -> str | None:
        if not value:  # `NAME=` in .env means unset
            return None
        parsed = urlparse(value)
        if parsed.scheme not in {"smtp", "smtps"}:
            raise ValueError(f"expected smtp:// or smtps:// URL, got scheme {parsed.scheme!r}")
        if not parsed.hostname:
            raise ValueError("the URL has no host")
        _ = parsed.port  # raises ValueError on a malformed port
        return value

    @field_validator("sms_webhook_url", "app_webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: str | None) -> str | None:
        if not value:  # `NAME=` in .env means unset
            return None
        parsed = urlparse(value)
        if parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise ValueError(f"expected an http:// or https:// URL with a host, got {redact_url(value)!r}")
        return value

    @field_validator("auto_intervene_channels")
    @classmethod
    def _check_channels(cls, value: str) -> str:
        names = [part.strip() for part in value.split(",") if part.strip()]
        unknown = [name for name in names if name not in CHANNELS]
        if unknown:
            raise ValueError(f"unknown channel(s) {', '.join(unknown)} (known: {', '.join(CHANNELS)})")
        return ",".join(names)

    @property
    def auto_channels(self) -> frozenset[str]:
        return frozenset(part for part in self.auto_intervene_channels.split(",") if part)

    @field_validator("contact_quiet_start", "contact_quiet_end")
    @classmethod
    def _check_hh_mm(cls, value: str) -> str:
        hours, sep, minutes = value.partition(":")
        if not (sep and len(hours) == len(minutes) == 2 and hours.isdigit() and minutes.isdigit()):
            raise ValueError(f"expected a time as HH:MM, got {value!r}")
        if int(hours) > 23 or int(minutes) > 59:
            raise ValueError(f"expected a time between 00:00 and 23:59, got {value!r}")
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
            elif name in _URL_FIELDS and value is not None:
                out[name] = redact_url(str(value))
            else:
                out[name] = value
        return out


#: Settings holding URLs that may carry a password (user:pass@host).
_URL_FIELDS = frozenset({"redis_url", "smtp_url", "sms_webhook_url", "app_webhook_url"})


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
