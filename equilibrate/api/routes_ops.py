"""Operations: liveness, readiness (broker, Redis, model), Prometheus metrics, and live updates (WebSocket)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Annotated, Any, cast

import orjson
import redis
import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, PlainTextResponse

from equilibrate.alert.cases import CHANGES_KEY as CASE_CHANGES_KEY
from equilibrate.api import workers
from equilibrate.api.context import Services, services
from equilibrate.api.metrics import gauge
from equilibrate.kafka.dlq import DLQ_COUNTS_KEY
from equilibrate.model import registry
from equilibrate.risk.keys import CHANGES_KEY as RISK_CHANGES_KEY
from equilibrate.risk.keys import LEVELS, level_index

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])
Svc = Annotated[Services, Depends(services)]
_BROKER_CACHE_S = 5.0
_broker_seen: dict[str, Any] = {"at": float("-inf"), "ok": False, "detail": ""}


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


def _broker(svc: Services) -> tuple[bool, str]:
    now = time.monotonic()
    if now - _broker_seen["at"] > _BROKER_CACHE_S:
        from equilibrate.ops.status import kafka_health

        health = kafka_health(svc.settings)
        _broker_seen.update(
            at=now,
            ok=bool(health.get("ok")),
            detail=str(health.get("error", "")) or "ok",
            lag=sum(int(p["lag"]) for p in health.get("lag", [])),
        )
    return bool(_broker_seen["ok"]), str(_broker_seen["detail"])


@router.get("/ready", responses={503: {"description": "a dependency is down"}})
def ready(svc: Svc) -> JSONResponse:
    """Readiness: the broker, Redis and the model (or the rules) are usable."""
    checks: dict[str, str] = {}
    try:
        svc.redis.ping()
        checks["redis"] = "ok"
    except redis.RedisError as exc:
        checks["redis"] = f"down: {type(exc).__name__}"
    ok, detail = _broker(svc)
    checks["broker"] = "ok" if ok else f"down: {detail}"
    version = registry.current_version(svc.settings.model_registry_dir)
    model = svc.models.current()
    if version is None:
        checks["model"] = f"rules {svc.rules.version} (no trained model)"
    elif model is not None and model.version == version:
        checks["model"] = f"ok: {version}"
    else:
        checks["model"] = f"down: model {version} could not be loaded"
    good = all(v.startswith(("ok", "rules")) for v in checks.values())
    return JSONResponse({"ready": good, "checks": checks}, status_code=200 if good else 503)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(svc: Svc) -> PlainTextResponse:
    """Prometheus text: request counts and latencies, customers by risk level, dead letters, consumer lag."""
    own = svc.metrics
    if svc.settings.api_workers > 1:
        with contextlib.suppress(redis.RedisError):  # else this worker's own counters
            own = workers.host_metrics(svc.redis, svc.metrics)
    lines = list(own.render())
    try:
        with svc.redis.pipeline(transaction=False) as pipe:
            for level in LEVELS:
                pipe.scard(level_index(level))
            pipe.hvals(DLQ_COUNTS_KEY)
            *levels, dlq = pipe.execute()
        by_level: dict[tuple[tuple[str, str], ...], float] = {
            (("level", lv),): float(n) for lv, n in zip(LEVELS, levels, strict=True)
        }
        lines += gauge("equilibrate_customers_by_level", "Scored customers at each risk level.", by_level)
        lines += gauge(
            "equilibrate_dead_letters", "Events sent to the dead-letter topic.", {(): float(sum(int(v) for v in dlq))}
        )
    except redis.RedisError:
        pass
    _broker(svc)
    if "lag" in _broker_seen:
        lines += gauge(
            "equilibrate_consumer_lag",
            "Messages behind, all pipeline consumer groups.",
            {(): float(_broker_seen["lag"])},
        )
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


@router.websocket("/ws/updates")
async def updates(ws: WebSocket) -> None:
    """Risk level changes and intervention steps as they happen (JSON messages with a `type`).

    Authenticate with the `api_key` query parameter or the X-API-Key header (scope read).
    """
    svc: Services = ws.app.state.services
    token = ws.query_params.get("api_key") or ws.headers.get("x-api-key", "")
    if svc.keys is not None:
        key = svc.keys.authenticate(token)
        if key is None or not key.allows("read"):
            await ws.close(code=4401, reason="a valid API key with the read scope is required")
            return
    await ws.accept()
    client = aioredis.Redis.from_url(svc.settings.redis_url)
    positions = {RISK_CHANGES_KEY: "$", CASE_CHANGES_KEY: "$"}
    try:
        while True:
            found = await client.xread(positions, block=1000, count=100)  # type: ignore[arg-type]
            for stream, entries in cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]], found or []):
                name = stream.decode()
                for entry_id, fields in entries:
                    positions[name] = entry_id.decode()
                    await ws.send_text(_message(name, fields))
            if not found:
                await asyncio.sleep(0)
    except WebSocketDisconnect:
        pass
    except redis.RedisError as exc:
        log.warning("live updates stopped: Redis %s", exc)
        await ws.close(code=1011, reason="Redis is not answering")
    finally:
        await client.aclose()


def _message(stream: str, fields: dict[bytes, bytes]) -> str:
    if stream == RISK_CHANGES_KEY:
        return orjson.dumps({"type": "risk_level_changed", **orjson.loads(fields[b"event"])}).decode()
    return orjson.dumps({"type": "case_changed", **{k.decode(): v.decode() for k, v in fields.items()}}).decode()
