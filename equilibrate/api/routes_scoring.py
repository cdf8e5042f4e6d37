"""Scoring: /predict, /predict/batch, /explain/{id}: the risk engine's own code, vectorised."""

from __future__ import annotations

from typing import Annotated, Any, cast

import orjson
from fastapi import APIRouter, Depends, HTTPException, Response, status

from equilibrate.api.context import READ, Services, json_body, services
from equilibrate.api.schemas import BatchRequest, BatchResponse, CustomerId, Prediction, PredictRequest
from equilibrate.api.scoring import score_batch
from equilibrate.risk.keys import reasons_key

router = APIRouter(tags=["scoring"])
Svc = Annotated[Services, Depends(services)]


# /predict reads Redis on the event loop with the asyncio client and scores on the loop too, the
# calls waiting together in one pass (`coalescing`): handing each customer's millisecond of CPU to
# a thread cost more than the work under load (threads taking the GIL from each other and from the
# loop). A batch's scoring (tens of milliseconds) goes to a thread so that it does not hold up the
# other requests.


@router.post("/predict", response_model=Prediction, dependencies=READ)
async def predict(body: PredictRequest, svc: Svc) -> Response:
    """Score one customer from a feature payload, or by id from the live features in Redis."""
    return json_body(await svc.predict_one(body))


@router.post("/predict/batch", response_model=BatchResponse, dependencies=READ)
async def predict_batch(body: BatchRequest, svc: Svc) -> Response:
    """Up to API_MAX_BATCH customers in one call, scored together."""
    if len(body.items) > svc.settings.api_max_batch:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"at most {svc.settings.api_max_batch} items per batch, got {len(body.items)}",
        )
    predictions = await svc.run(score_batch, svc, body.items)
    return json_body(BatchResponse(predictions=predictions, model_version=predictions[0].model_version))


@router.get("/explain/{customer_id}", dependencies=READ)
async def explain(customer_id: CustomerId, svc: Svc) -> dict[str, Any]:
    """Everything behind the customer's latest score: rule points, hardship rules fired, SHAP reason codes."""
    raw = await svc.aredis.get(reasons_key(customer_id))
    if raw is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"customer {customer_id} has not been scored")
    explained: dict[str, Any] = orjson.loads(cast(bytes, raw))
    return explained
