"""What every request handler needs (created once per API process, in the app's lifespan) and the
caller's identity: the API key behind the request, checked for the scope the route needs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, TypeVar, TypeVarTuple

import anyio
import anyio.to_thread
import redis
import redis.asyncio as aioredis
from fastapi import Depends, HTTPException, Request, Response, status
from pydantic import BaseModel

from equilibrate.alert.actions import CaseActions
from equilibrate.alert.audit_log import AuditLog
from equilibrate.alert.proposer import Proposer
from equilibrate.api.coalescing import Coalescer
from equilibrate.api.keys import ApiKey, KeyStore
from equilibrate.api.limits import RateLimiter
from equilibrate.api.metrics import RequestMetrics
from equilibrate.api.schemas import Prediction, PredictRequest
from equilibrate.errors import ConfigError
from equilibrate.model import registry
from equilibrate.model.registry import Model
from equilibrate.risk.policy import Policy
from equilibrate.risk.rules import RiskRules
from equilibrate.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
Ts = TypeVarTuple("Ts")
#: Threads a batch's reads and scoring run on, per process (`Services.run`). Few on purpose: the
#: work is CPU-bound under the GIL, and with FastAPI's 40 threads a burst had dozens of handlers
#: taking the GIL from each other (CPU per request doubled under load).
HANDLER_THREADS = 2
DEV_KEY = ApiKey("dev", "development", ("read", "write"), "", "")


class ModelHolder:
    """The registry's current model, followed every RISK_MODEL_CHECK_S (None: the rules score)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model: Model | None = None
        self.checked = float("-inf")
        self.lock = threading.Lock()

    def current(self) -> Model | None:
        now = time.monotonic()
        if now - self.checked < self.settings.risk_model_check_s:
            return self.model
        with self.lock:
            if now - self.checked >= self.settings.risk_model_check_s:
                self.checked = now
                self._refresh()
        return self.model

    def _refresh(self) -> None:
        version = registry.current_version(self.settings.model_registry_dir)
        if version is None or (self.model is not None and self.model.version == version):
            if version is None:
                self.model = None
            return
        try:
            model = registry.load(self.settings.model_registry_dir, version)
        except (ConfigError, OSError, ValueError) as exc:
            log.error(
                "cannot use model %s: %s; keeping %s", version, exc, self.model.version if self.model else "the rules"
            )
            return
        if model.card.get("kind") == "pipeline":
            # One thread per prediction: the API scores a customer or a batch per request, and runs a
            # process per core (API_WORKERS); XGBoost's default team of every core made each small
            # prediction spin up and wait for threads the other workers needed.
            model.booster.set_param({"nthread": 1})
            _ = model.paths  # the TreeSHAP path table, built now rather than by the first request
            self.model = model
            log.info("API scores with model %s", version)


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    aredis: aioredis.Redis  # the hot routes' reads, on the event loop
    keys: KeyStore | None
    rules: RiskRules
    policy: Policy
    models: ModelHolder
    audit_log: AuditLog
    proposer: Proposer
    actions: CaseActions
    by_key: RateLimiter
    by_ip: RateLimiter
    rules_version: str
    metrics: RequestMetrics = field(default_factory=RequestMetrics)
    limiter: anyio.CapacityLimiter | None = None  # made by the first `run`, inside the event loop
    #: /predict's scoring, its calls coalesced (set by the app's lifespan: it needs these services)
    predict_one: Coalescer[PredictRequest, Prediction] = field(init=False)

    async def run(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        """`fn(*args)` on one of HANDLER_THREADS threads, off the event loop."""
        if self.limiter is None:
            self.limiter = anyio.CapacityLimiter(HANDLER_THREADS)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)


# The dependencies are `async def` although they do no I/O: FastAPI runs a plain `def` dependency
# in its threadpool, a trip that cost more than the dependency itself (~0.15 ms each).
async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def caller(request: Request) -> ApiKey:
    """The API key of the request (header `X-API-Key` or `Authorization: Bearer`), or 401."""
    svc: Services = request.app.state.services
    token = request.headers.get("x-api-key", "")
    auth = request.headers.get("authorization", "")
    if not token and auth.lower().startswith("bearer "):
        token = auth[7:]
    if svc.keys is None:  # development mode without a key store
        return DEV_KEY
    key = svc.keys.authenticate(token) if token else None
    if key is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid API key is required (X-API-Key header)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return key


def _require(key: ApiKey, name: str) -> ApiKey:
    if not key.allows(name):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"this API key lacks the {name!r} scope")
    return key


async def require_read(key: Annotated[ApiKey, Depends(caller)]) -> ApiKey:
    return _require(key, "read")


async def require_write(key: Annotated[ApiKey, Depends(caller)]) -> ApiKey:
    return _require(key, "write")


#: The caller's key, checked for a scope: route parameters, or `dependencies=READ`.
Reader = Annotated[ApiKey, Depends(require_read)]
Writer = Annotated[ApiKey, Depends(require_write)]
READ = [Depends(require_read)]


def actor(key: ApiKey) -> str:
    """How the audit log names an API caller."""
    return f"api:{key.name}"


def json_body(model: BaseModel, status_code: int = 200) -> Response:
    """The model as a JSON response, as is. A route returning it skips FastAPI's second validation of
    its own result (`response_model` still documents the route): the hot routes build their models
    from typed values, and the check was a threadpool trip for a `def` route."""
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")
