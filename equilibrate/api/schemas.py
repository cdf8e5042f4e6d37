"""Request and response bodies of the API (pydantic): strict, documented, the OpenAPI schema's source."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from equilibrate.features.compute import FEATURES

CustomerId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
CaseId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Channel = Literal["email", "sms", "app", "voice"]
Level = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
_FEATURE_SET = frozenset(FEATURES)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(Strict):
    """Either `features` (every pipeline feature, by name) or just `customer_id` (live features from Redis)."""

    customer_id: CustomerId | None = None
    features: dict[str, float] | None = Field(
        default=None, description=f"All {len(FEATURES)} features: {', '.join(FEATURES)}", max_length=len(FEATURES)
    )

    @model_validator(mode="after")
    def _one_source(self) -> PredictRequest:
        if self.features is None and self.customer_id is None:
            raise ValueError("give `features`, or a `customer_id` to score from live Redis")
        if self.features is not None:
            if self.features.keys() != _FEATURE_SET:  # one C-level comparison; the names only when it fails
                missing = [f for f in FEATURES if f not in self.features]
                unknown = [f for f in self.features if f not in _FEATURE_SET]
                parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
                    [f"unknown {', '.join(unknown)}"] if unknown else []
                )
                raise ValueError("features: " + "; ".join(parts))
            if not all(map(math.isfinite, self.features.values())):
                bad = [k for k, v in self.features.items() if not math.isfinite(v)]
                raise ValueError(f"features must be finite numbers: {', '.join(bad)}")
        return self


class BatchRequest(Strict):
    items: list[PredictRequest] = Field(min_length=1)


class Reason(BaseModel):
    text: str
    points: float | None = None
    feature: str | None = None


class Prediction(BaseModel):
    customer_id: str | None
    risk_score: float = Field(description="0-100: the model's probability x 100, or the rule score x 10")
    risk_level: Level
    rule_score: int
    hardship_type: str
    reasons: list[str]
    recommended_action: str
    model_version: str


class BatchResponse(BaseModel):
    predictions: list[Prediction]
    model_version: str


class CustomerView(BaseModel):
    customer_id: str
    attributes: dict[str, str]
    features: dict[str, str]
    risk: dict[str, str]
    open_case: str | None


class Transactions(BaseModel):
    customer_id: str
    days: int
    transactions: list[dict[str, Any]]


class QueueItem(BaseModel):
    customer_id: str
    name: str
    risk_level: str
    risk_score: float
    hardship_type: str
    recommended_action: str
    reasons: str
    scored_at: str


class QueueResponse(BaseModel):
    items: list[QueueItem]
    total: int
    next_cursor: str | None


class NewIntervention(Strict):
    customer_id: CustomerId


class Approval(Strict):
    note: Annotated[str, StringConstraints(max_length=500)] = ""
    message: Annotated[str, StringConstraints(min_length=1, max_length=5_000)] | None = None
    subject: Annotated[str, StringConstraints(max_length=200)] | None = None
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")] | None = None


class Case(BaseModel):
    case_id: str
    customer_id: str
    state: str
    fields: dict[str, str]


class MessageRequest(Strict):
    customer_id: CustomerId
    channel: Channel | None = None
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")] | None = None
    template_id: Annotated[str, StringConstraints(min_length=1, max_length=80)] | None = None


class RenderedMessageOut(BaseModel):
    customer_id: str
    template_id: str
    template_version: int
    approval_ref: str
    channel: str
    language: str
    subject: str | None
    body: str
    sms_segments: int | None


class Problem(BaseModel):
    error: str
    detail: Any = None
