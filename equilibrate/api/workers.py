"""Several API processes on one port (API_WORKERS > 1): each worker's request metrics are shared
through Redis so that /metrics, whichever worker answers it, reports the whole host.

Each worker writes its counters every PUBLISH_S into the hash `eq:api:metrics:{host}` (field: its
pid). /metrics adds the other workers' latest counters to its own live ones; a worker silent for
STALE_S (stopped, or replaced by uvicorn after a crash) is left out, as a Prometheus counter reset.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

import orjson
import redis
from starlette.concurrency import run_in_threadpool

from equilibrate.api.metrics import RequestMetrics

log = logging.getLogger(__name__)
PUBLISH_S = 5.0
STALE_S = 30.0


def metrics_key(host: str | None = None) -> str:
    return f"eq:api:metrics:{host or socket.gethostname()}"


def publish(client: redis.Redis, metrics: RequestMetrics, *, pid: int | None = None, now: float | None = None) -> None:
    entry = orjson.dumps({"at": time.time() if now is None else now, "metrics": metrics.snapshot()})
    key = metrics_key()
    with client.pipeline(transaction=False) as pipe:
        pipe.hset(key, str(pid or os.getpid()), entry)
        pipe.expire(key, int(STALE_S * 10))
        pipe.execute()


def host_metrics(
    client: redis.Redis, own: RequestMetrics, *, pid: int | None = None, now: float | None = None
) -> RequestMetrics:
    """This worker's live counters plus every other live worker's latest on this host."""
    me = str(pid or os.getpid()).encode()
    now = time.time() if now is None else now
    total = RequestMetrics()
    total.add(own.snapshot())
    for field, raw in client.hgetall(metrics_key()).items():
        if field == me:
            continue
        entry = orjson.loads(raw)
        if now - float(entry["at"]) <= STALE_S:
            total.add(entry["metrics"])
    return total


async def publish_forever(client: redis.Redis, metrics: RequestMetrics) -> None:
    """The lifespan's background task: publish every PUBLISH_S until cancelled."""
    while True:
        try:
            await run_in_threadpool(publish, client, metrics)
        except redis.RedisError as exc:
            log.warning("could not share this worker's metrics: %s", exc)
        await asyncio.sleep(PUBLISH_S)


def forget(client: redis.Redis, *, pid: int | None = None) -> None:
    """A worker stopping takes its counters out (a counter reset, as its restart would be)."""
    client.hdel(metrics_key(), str(pid or os.getpid()))
