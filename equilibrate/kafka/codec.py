"""Events on the wire: JSON (orjson), every event carrying `schema_version`, keyed by customer id."""

from __future__ import annotations

import base64
from typing import Any

import orjson

DLQ_SCHEMA_VERSION = 1


def encode(event: dict[str, Any]) -> bytes:
    if "schema_version" not in event:
        raise ValueError("every event carries a schema_version")
    return orjson.dumps(event)


def decode(raw: bytes) -> Any:
    return orjson.loads(raw)


def customer_key(customer_id: str) -> bytes:
    return customer_id.encode()


def dlq_envelope(
    *,
    reason: str,
    detail: str,
    original: bytes | None,
    source_topic: str,
    partition: int,
    offset: int,
    component: str,
    event_time: str | None = None,
) -> bytes:
    """A dead-letter record: why it was rejected, where it came from, and the original bytes."""
    return orjson.dumps(
        {
            "schema_version": DLQ_SCHEMA_VERSION,
            "reason": reason,
            "detail": detail[:500],
            "source_topic": source_topic,
            "partition": partition,
            "offset": offset,
            "component": component,
            "event_time": event_time,
            "original_b64": base64.b64encode(original or b"").decode(),
        }
    )
