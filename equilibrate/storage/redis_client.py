"""Redis connections: created by the component that uses them, never at import time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from equilibrate.errors import ServiceUnavailableError
from equilibrate.settings import Settings, redact_url

log = logging.getLogger(__name__)
T = TypeVar("T")


def connect(settings: Settings, *, check: bool = True) -> redis.Redis:
    """A client for REDIS_URL (password, ACL user and rediss:// TLS come through the URL)."""
    client: redis.Redis = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=3, socket_timeout=30, health_check_interval=30
    )
    if check:
        try:
            client.ping()
        except redis.AuthenticationError:
            raise ServiceUnavailableError(
                f"Redis at {redact_url(settings.redis_url)} refused the credentials in REDIS_URL"
            ) from None
        except redis.ConnectionError as exc:
            raise ServiceUnavailableError(
                f"Redis does not answer at {redact_url(settings.redis_url)} ({exc}): "
                "run `equilibrate redis` or set REDIS_URL"
            ) from None
    return client


def wait_for_redis(
    client: redis.Redis,
    *,
    max_backoff: float = 10.0,
    give_up_after: float | None = None,
    stopping: Callable[[], bool] | None = None,
) -> None:
    """Block until Redis answers, backing off; log once when it goes away and once when it is back.

    `stopping`: the component was asked to stop; waiting ends with ServiceUnavailableError."""
    delay, start, warned = 0.2, time.monotonic(), False
    while True:
        try:
            client.ping()
            if warned:
                log.info("Redis is back")
            return
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if not warned:
                log.warning("Redis unavailable (%s); retrying with backoff", exc)
                warned = True
            if give_up_after is not None and time.monotonic() - start > give_up_after:
                raise ServiceUnavailableError(f"Redis did not come back within {give_up_after:.0f}s") from None
            if stopping is not None and stopping():
                raise ServiceUnavailableError("stopping while Redis is unreachable") from None
            time.sleep(delay)
            delay = min(max_backoff, delay * 2)


def with_redis(client: redis.Redis, call: Callable[[], T], *, stopping: Callable[[], bool] | None = None) -> T:
    """`call()`, waiting for Redis and trying again for as long as it is unreachable (or until `stopping`)."""
    while True:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError):
            wait_for_redis(client, stopping=stopping)
