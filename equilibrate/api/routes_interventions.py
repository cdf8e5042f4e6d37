"""Interventions over HTTP: the console's case lifecycle, contact policy and audit log, with the API key
as operator. Writes honour an `Idempotency-Key` header: a repeat gets the first answer back."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, cast

import orjson
from fastapi import APIRouter, Depends, Header, HTTPException, Response, status
from fastapi.responses import JSONResponse

from equilibrate.alert import audit_queue
from equilibrate.alert.cases import CaseStore
from equilibrate.alert.lifecycle import TransitionError
from equilibrate.alert.proposals import bank_values, first_name
from equilibrate.alert.proposer import event_from_profile
from equilibrate.api.context import READ, Services, Writer, actor, services
from equilibrate.api.keys import ApiKey
from equilibrate.api.schemas import Approval, Case, CaseId, MessageRequest, NewIntervention, RenderedMessageOut
from equilibrate.dashboard import queries
from equilibrate.features import store as feature_store
from equilibrate.risk.policy import PolicyError

router = APIRouter(tags=["interventions"])
Svc = Annotated[Services, Depends(services)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]
IDEMPOTENCY_PREFIX = "eq:api:idempotency:"


def _case(case: dict[str, str]) -> Case:
    return Case(case_id=case["case_id"], customer_id=case["customer_id"], state=case["state"], fields=case)


def _replayed(svc: Services, key: ApiKey, idem: str | None, route: str) -> tuple[str | None, Response | None]:
    if not idem:
        return None, None
    slot = IDEMPOTENCY_PREFIX + hashlib.sha256(f"{key.key_id}|{route}|{idem}".encode()).hexdigest()
    stored = svc.redis.get(slot)
    if stored is None:
        return slot, None
    saved = orjson.loads(cast(bytes, stored))
    return slot, JSONResponse(saved["body"], status_code=saved["status"], headers={"Idempotent-Replayed": "true"})


def _remember(svc: Services, slot: str | None, code: int, body: Any) -> None:
    if slot is not None:
        svc.redis.set(
            slot, orjson.dumps({"status": code, "body": body}), ex=svc.settings.api_idempotency_ttl_s, nx=True
        )


def _flush(svc: Services) -> None:
    audit_queue.flush(svc.redis, svc.audit_log)


@router.post(
    "/interventions",
    status_code=status.HTTP_201_CREATED,
    response_model=Case,
    responses={409: {"description": "the customer has an open case"}, 404: {}, 422: {}},
)
def propose(body: NewIntervention, svc: Svc, key: Writer, idem: IdempotencyKey = None) -> Any:
    """Propose an intervention for a customer now (as the engine does on a risk event)."""
    slot, replay = _replayed(svc, key, idem, "propose")
    if replay is not None:
        return replay
    store = CaseStore(svc.redis)
    existing = store.open_case(body.customer_id)
    if existing is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"customer {body.customer_id} has an open case {existing}")
    detail = queries.customer_detail(svc.redis, body.customer_id)
    if detail is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no customer {body.customer_id}")
    mark = feature_store.watermark_ms(svc.redis)
    now = datetime.fromtimestamp(mark / 1000, UTC) if mark is not None else datetime.now(UTC)
    case = svc.proposer.propose(event_from_profile(body.customer_id, detail.profile, now), force=True)
    _flush(svc)
    if case is None:
        level = detail.profile.get("risk_level") or "not scored"
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"customer {body.customer_id} is {level}: no contact is proposed"
        )
    out = _case(case).model_dump()
    _remember(svc, slot, status.HTTP_201_CREATED, out)
    return JSONResponse(out, status_code=status.HTTP_201_CREATED)


@router.post("/interventions/{case_id}/approve", response_model=Case, responses={409: {}, 404: {}, 422: {}})
def approve(case_id: CaseId, body: Approval, svc: Svc, key: Writer, idem: IdempotencyKey = None) -> Any:
    """Approve the case's message (optionally edited within the policy's rules): the engine sends it."""
    slot, replay = _replayed(svc, key, idem, f"approve:{case_id}")
    if replay is not None:
        return replay
    if CaseStore(svc.redis).get(case_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no case {case_id}")
    try:
        case = svc.actions.approve(
            case_id, actor(key), body.note, message=body.message, subject=body.subject, language=body.language
        )
    except TransitionError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except PolicyError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    finally:
        _flush(svc)
    out = _case(case).model_dump()
    _remember(svc, slot, status.HTTP_200_OK, out)
    return out


@router.get("/interventions/{case_id}", response_model=Case, dependencies=READ)
def get_case(case_id: CaseId, svc: Svc) -> Case:
    case = CaseStore(svc.redis).get(case_id)
    if case is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no case {case_id}")
    return _case(case)


@router.post("/generate-message", response_model=RenderedMessageOut, dependencies=READ)
def generate_message(body: MessageRequest, svc: Svc) -> RenderedMessageOut:
    """Render the policy's template for a customer, language and channel, without sending anything."""
    detail = queries.customer_detail(svc.redis, body.customer_id)
    if detail is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no customer {body.customer_id}")
    p = detail.profile
    template = body.template_id
    if template is None:
        level, hardship = p.get("risk_level") or "LOW", p.get("hardship_type") or "None"
        contacts = svc.policy.recommend(hardship, level).contacts
        chosen = [c for c in contacts if body.channel in (None, c.channel)]
        if not chosen:
            what = f"{body.channel} contact" if body.channel else "contact"
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"the policy has no {what} for {hardship} at {level}"
            )
        template = chosen[0].template
    values = bank_values(svc.settings) | {
        "first_name": first_name(p.get("name", "")),
        "reference": body.customer_id[-12:],
    }
    try:
        m = svc.policy.message(template, body.language or p.get("language") or "en", values)
    except PolicyError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    if body.channel is not None and m.channel != body.channel:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"template {template} is for {m.channel}, not {body.channel}"
        )
    return RenderedMessageOut(
        customer_id=body.customer_id,
        template_id=m.template_id,
        template_version=m.version,
        approval_ref=m.approval,
        channel=m.channel,
        language=m.language,
        subject=m.subject,
        body=m.body,
        sms_segments=m.sms_segments,
    )
