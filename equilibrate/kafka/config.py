"""Client configuration derived from Settings, with security options passed through."""

from __future__ import annotations

from typing import Any

from equilibrate.settings import Settings


def security_options(settings: Settings) -> dict[str, Any]:
    """librdkafka-style security keys; empty for PLAINTEXT."""
    opts: dict[str, Any] = {}
    if settings.kafka_security_protocol != "PLAINTEXT":
        opts["security.protocol"] = settings.kafka_security_protocol
    if settings.kafka_sasl_mechanism:
        opts["sasl.mechanism"] = settings.kafka_sasl_mechanism
    if settings.kafka_sasl_username:
        opts["sasl.username"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password is not None:
        opts["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_ssl_cafile is not None:
        opts["ssl.ca.location"] = str(settings.kafka_ssl_cafile)
    return opts


def kafka_python_security(settings: Settings) -> dict[str, Any]:
    """The same security options in kafka-python's keyword names."""
    opts: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_sasl_mechanism:
        opts["sasl_mechanism"] = settings.kafka_sasl_mechanism
    if settings.kafka_sasl_username:
        opts["sasl_plain_username"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password is not None:
        opts["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_ssl_cafile is not None:
        opts["ssl_cafile"] = str(settings.kafka_ssl_cafile)
    return opts


def group_timeouts(settings: Settings) -> tuple[int, int, int]:
    """(max.poll.interval, session timeout, heartbeat interval) in ms.

    Tansu completes a group's first join only after the rebalance timeout, so these are kept
    short (~10 s) for consumers that start in seconds; session timeout must not exceed it.
    """
    poll = settings.kafka_max_poll_interval_ms
    session = min(settings.kafka_session_timeout_ms, poll)
    heartbeat = max(500, session // 4)
    return poll, session, heartbeat
