"""The API application: `create_app(settings)` builds it; clients are made in its lifespan, not at import.

Every response is JSON with no stack trace; a request body over API_MAX_BODY_BYTES is refused with
413, a caller over its rate with 429 and Retry-After; each request is counted and timed for /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import redis
import redis.asyncio as aioredis
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from equilibrate.alert.actions import CaseActions
from equilibrate.alert.audit_log import AuditLog
from equilibrate.alert.proposer import Proposer
from equilibrate.api import routes_customers, routes_interventions, routes_ops, routes_scoring, workers
from equilibrate.api.coalescing import Coalescer
from equilibrate.api.context import ModelHolder, Services
from equilibrate.api.keys import KeyStore
from equilibrate.api.limits import RateLimiter, retry_after_header
from equilibrate.api.scoring import score_each
from equilibrate.errors import ConfigError
from equilibrate.risk.policy import load_policy
from equilibrate.risk.rules import load_rules
from equilibrate.settings import Settings, load_settings
from equilibrate.storage.redis_client import connect

log = logging.getLogger(__name__)
PREFIX = "/api/v1"
#: Routes every caller may reach without a key and outside the rate limits (probes, scrapers, docs).
OPEN_PATHS = frozenset({f"{PREFIX}/health", f"{PREFIX}/ready", f"{PREFIX}/metrics", "/docs", "/redoc", "/openapi.json"})


def check_config(settings: Settings) -> KeyStore | None:
    """The key store the settings ask for; in production, refuse what would leave the API open."""
    keys = KeyStore.load(settings.api_keys_file) if settings.api_keys_file else None
    if settings.api_mode == "production":
        problems = []
        if keys is None or not len(keys):
            problems.append("API_KEYS_FILE with at least one key")
        if settings.api_debug:
            problems.append("API_DEBUG=false")
        if "*" in cors_origins(settings):
            problems.append('API_CORS_ORIGINS without "*"')
        if problems:
            raise ConfigError("API_MODE=production needs " + ", ".join(problems))
    return keys


def cors_origins(settings: Settings) -> list[str]:
    return [o.strip() for o in settings.api_cors_origins.split(",") if o.strip()]


class Guard:
    """Size and rate limits before a request reaches its handler; every request counted and timed.

    A plain ASGI middleware (Starlette's BaseHTTPMiddleware costs about a millisecond a request).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        svc: Services = scope["app"].state.services
        refused = _refuse(scope, svc)
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        if refused is not None:
            await refused(scope, receive, sending)
        else:
            await self.app(scope, receive, sending)
        route = str(getattr(scope.get("route"), "path", "unmatched"))
        if route.startswith("/") and not route.startswith(PREFIX) and scope["path"].startswith(PREFIX):
            route = PREFIX + route  # a router's route knows its path without the prefix it was included at
        svc.metrics.observe(scope["method"], route, status[0], time.perf_counter() - started)


def create_app(settings: Settings) -> FastAPI:
    keys = check_config(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = connect(settings, check=False)
        policy = load_policy(settings.policy_file)
        rules = load_rules(settings.risk_rules_file)
        async_client = aioredis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=3, socket_timeout=30, health_check_interval=30,
            # once more on a new connection when Redis dropped the pooled one (a restart): a client
            # made from a URL otherwise has no retry, and every open connection failed one request
            retry=AsyncRetry(ExponentialBackoff(cap=0.5, base=0.05), 1),
        )  # fmt: skip
        svc = Services(
            settings=settings,
            redis=client,
            aredis=async_client,
            keys=keys,
            rules=rules,
            policy=policy,
            models=ModelHolder(settings),
            audit_log=AuditLog(settings.data_dir),
            proposer=Proposer(client, settings, policy),
            actions=CaseActions(client),
            by_key=RateLimiter(settings.api_rate_per_key, settings.api_rate_burst),
            by_ip=RateLimiter(settings.api_rate_per_ip, settings.api_rate_burst),
            rules_version=rules.version,
        )
        svc.predict_one = Coalescer(functools.partial(score_each, svc), on_pass=svc.metrics.observe_pass)
        # the model now, not in the first request (importing XGBoost and loading it take about a second)
        await anyio.to_thread.run_sync(svc.models.current)
        # Everything loaded so far (FastAPI, NumPy, XGBoost, the model: ~180,000 objects) lives as long
        # as the process, so the garbage collector stops scanning it: a full collection took 65 ms,
        # and the objects a batch of 1,000 makes set one off every fifth batch.
        gc.collect()
        gc.freeze()
        app.state.services = svc
        mode = "keys required" if keys is not None else "development: no key store, every caller may read and write"
        log.info("API %s on /api/v1 (%s)", settings.api_mode, mode)
        sharing = None
        if settings.api_workers > 1:
            sharing = asyncio.create_task(workers.publish_forever(client, svc.metrics))
        try:
            yield
        finally:
            gc.unfreeze()  # the process goes on (tests, an embedded app): its objects are collectable again
            if sharing is not None:
                sharing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sharing
                with contextlib.suppress(redis.RedisError):
                    workers.forget(client)
            client.close()
            await async_client.aclose()

    app = FastAPI(
        title="Equilibrate API",
        version="1",
        description="Risk scores, explanations, the risk queue and interventions for bank systems.",
        lifespan=lifespan,
        debug=settings.api_debug,
    )
    for router in (routes_scoring.router, routes_customers.router, routes_interventions.router, routes_ops.router):
        app.include_router(router, prefix=PREFIX)
    origins = cors_origins(settings)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type", "Idempotency-Key"],
        )

    app.add_middleware(Guard)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")} for e in exc.errors()
        ]
        return JSONResponse({"error": "the request is not valid", "detail": errors}, status_code=422)

    @app.exception_handler(redis.RedisError)
    async def redis_down(_request: Request, exc: redis.RedisError) -> JSONResponse:
        log.warning("Redis did not answer: %s", exc)
        return JSONResponse({"error": "Redis is not answering; try again shortly"}, status_code=503,
                            headers={"Retry-After": "5"})  # fmt: skip

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        ref = uuid.uuid4().hex[:12]
        log.exception("request %s %s failed (ref %s)", request.method, request.url.path, ref)
        return JSONResponse({"error": "internal error", "ref": ref}, status_code=500)

    return app


def worker_app() -> FastAPI:
    """The app of one of API_WORKERS processes: uvicorn imports it by name in each worker, which
    reads the settings from the environment (and .env) as the command did."""
    from equilibrate.logs import configure

    settings = load_settings()
    configure(settings.log_level, component="api")
    return create_app(settings)


def _refuse(scope: Scope, svc: Services) -> Response | None:
    """A 413 or 429 answer for a request that must not reach its handler, or None."""
    headers = Headers(scope=scope)
    length = headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > svc.settings.api_max_body_bytes):
        return JSONResponse({"error": f"request body over {svc.settings.api_max_body_bytes} bytes"}, status_code=413)
    if scope["path"] in OPEN_PATHS:
        return None
    client = scope.get("client")
    waits = [svc.by_ip.take(client[0] if client else "unknown")]
    token = headers.get("x-api-key") or headers.get("authorization", "")
    if token:
        waits.append(svc.by_key.take(hashlib.sha256(token.encode()).hexdigest()[:16]))
    wait = max(waits)
    if wait > 0:
        extra: dict[str, Any] = {"Retry-After": retry_after_header(wait)}
        return JSONResponse({"error": "rate limit exceeded"}, status_code=429, headers=extra)
    return None
