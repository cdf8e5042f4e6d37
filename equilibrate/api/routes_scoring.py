"""Scoring: /predict, /predict/batch, /explain/{id}: the risk engine's own code, vectorised."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any, cast

import numpy as np
import orjson
from fastapi import APIRouter, Depends, HTTPException, status

from equilibrate.api.context import READ, Services, services
from equilibrate.api.schemas import BatchRequest, BatchResponse, CustomerId, Prediction, PredictRequest
from equilibrate.features import store as feature_store
from equilibrate.features.compute import FEATURES
from equilibrate.risk.assess import assess
from equilibrate.risk.keys import reasons_key
from equilibrate.storage.customer_registry import profile_key

router = APIRouter(tags=["scoring"])
Svc = Annotated[Services, Depends(services)]


def _live_features(svc: Services, customer_ids: Sequence[str]) -> list[dict[str, float]]:
    with svc.redis.pipeline(transaction=False) as pipe:
        for cid in customer_ids:
            pipe.hmget(profile_key(cid), list(FEATURES))
        rows = pipe.execute()
    out = []
    for cid, values in zip(customer_ids, rows, strict=True):
        if all(v is None for v in values):
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"no live features for customer {cid} (not seen by the feature engine)"
            )
        out.append({f: float(v) if v not in (None, b"") else 0.0 for f, v in zip(FEATURES, values, strict=True)})
    return out


def score(svc: Services, items: Sequence[PredictRequest]) -> list[Prediction]:
    """Every item at once: live features read in one pipeline, one assess() over the batch."""
    live_ids = [i.customer_id for i in items if i.features is None and i.customer_id is not None]
    live = dict(zip(live_ids, _live_features(svc, live_ids), strict=True)) if live_ids else {}
    rows = [i.features if i.features is not None else live[cast(str, i.customer_id)] for i in items]
    columns = {f: np.fromiter((r[f] for r in rows), dtype=np.float64, count=len(rows)) for f in FEATURES}
    mark = feature_store.watermark_ms(svc.redis)
    as_of = np.full(len(rows), mark if mark is not None else int(time.time() * 1000), dtype=np.int64)
    ids = [i.customer_id or "" for i in items]
    a = assess(ids, columns, as_of, svc.rules, svc.policy, model=svc.models.current())
    return [
        Prediction(
            customer_id=items[n].customer_id,
            risk_score=a.scores_rounded[n],
            risk_level=a.levels[n],
            rule_score=int(a.rules.score[n]),
            hardship_type=a.hardship_type(n),
            reasons=[r for r in a.reasons_text(n).split("; ") if r],
            recommended_action=a.actions[n],
            model_version=a.model_version,
        )
        for n in range(len(a))
    ]


@router.post("/predict", response_model=Prediction, dependencies=READ)
def predict(body: PredictRequest, svc: Svc) -> Prediction:
    """Score one customer from a feature payload, or by id from the live features in Redis."""
    return score(svc, [body])[0]


@router.post("/predict/batch", response_model=BatchResponse, dependencies=READ)
def predict_batch(body: BatchRequest, svc: Svc) -> BatchResponse:
    """Up to API_MAX_BATCH customers in one call, scored together."""
    if len(body.items) > svc.settings.api_max_batch:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"at most {svc.settings.api_max_batch} items per batch, got {len(body.items)}",
        )
    predictions = score(svc, body.items)
    return BatchResponse(predictions=predictions, model_version=predictions[0].model_version)


@router.get("/explain/{customer_id}", dependencies=READ)
def explain(customer_id: CustomerId, svc: Svc) -> dict[str, Any]:
    """Everything behind the customer's latest score: rule points, hardship rules fired, SHAP reason codes."""
    raw = svc.redis.get(reasons_key(customer_id))
    if raw is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"customer {customer_id} has not been scored")
    explained: dict[str, Any] = orjson.loads(cast(bytes, raw))
    return explained
