"""Component heartbeats in Redis, so `status` sees every component however it was launched."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import Any

import orjson
import redis

COMPONENTS_KEY = "eq:components"


class Heartbeat:
    """Records that a component is alive, at most once per interval (wall clock: operational only)."""

    def __init__(self, client: redis.Redis, name: str, interval_s: float = 5.0) -> None:
        self.client = client
        self.name = name
        self.interval_s = interval_s
        self.field = f"{name}@{socket.gethostname()}:{os.getpid()}"
        self.started = time.time()
        self._last = 0.0

    def beat(self, force: bool = False, **info: Any) -> None:
        now = time.time()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        payload = {
            "name": self.name,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": self.started,
            "beat": now,
            "interval": self.interval_s,
            **info,
        }
        try:
            self.client.hset(COMPONENTS_KEY, self.field, orjson.dumps(payload))
        except redis.RedisError:
            self._last = 0.0  # try again next time; a missed beat is not an error

    def clear(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self.client.hdel(COMPONENTS_KEY, self.field)


def read_heartbeats(client: redis.Redis, now: float | None = None) -> list[dict[str, Any]]:
    """Every recorded component with `alive` computed; entries dead for an hour are pruned."""
    now = time.time() if now is None else now
    out = []
    for field, raw in client.hgetall(COMPONENTS_KEY).items():
        entry: dict[str, Any] = orjson.loads(raw)
        age = now - float(entry["beat"])
        if age > 3600:
            client.hdel(COMPONENTS_KEY, field)
            continue
        entry["age_s"] = round(age, 1)
        entry["alive"] = age < 3 * float(entry.get("interval", 5.0))
        out.append(entry)
    return sorted(out, key=lambda e: (e["name"], e["host"], e["pid"]))
