"""Customers: the live profile and risk, recent transactions, and the risk queue (paged)."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from equilibrate.alert.cases import open_key
from equilibrate.api.context import READ, Services, json_body, services
from equilibrate.api.schemas import CustomerId, CustomerView, Level, QueueItem, QueueResponse, Transactions
from equilibrate.dashboard import queries
from equilibrate.dashboard.files import TRANSACTION_COLUMNS
from equilibrate.features.compute import FEATURES
from equilibrate.risk.keys import HARDSHIP_TYPES, RISK_FIELDS
from equilibrate.storage.archive_store import ArchiveStore
from equilibrate.storage.customer_registry import profile_key

router = APIRouter(tags=["customers"])
Svc = Annotated[Services, Depends(services)]
MAX_PAGE = 500


@router.get("/customers/{customer_id}", response_model=CustomerView, dependencies=READ)
async def customer(customer_id: CustomerId, svc: Svc) -> Response:
    """The customer's attributes, live features and risk, and their open case."""
    async with svc.aredis.pipeline(transaction=False) as pipe:  # one round trip, the loop never waits
        pipe.hgetall(profile_key(customer_id))
        pipe.get(open_key(customer_id))
        raw, case_id = await pipe.execute()
    if not raw:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no customer {customer_id}")
    return json_body(customer_view(customer_id, raw, case_id))


def customer_view(customer_id: str, raw: dict[bytes, bytes], case_id: bytes | None) -> CustomerView:
    """The profile hash split into attributes, features and risk (pure)."""
    p = {k.decode(): v.decode() for k, v in raw.items()}
    features = {k: p[k] for k in FEATURES if k in p}
    risk = {k: p[k] for k in RISK_FIELDS if k in p}
    attributes = {k: v for k, v in p.items() if k not in features and k not in risk}
    return CustomerView(
        customer_id=customer_id,
        attributes=attributes,
        features=features,
        risk=risk,
        open_case=None if case_id is None else case_id.decode(),
    )


@router.get("/customers/{customer_id}/transactions", response_model=Transactions, dependencies=READ)
def transactions(
    customer_id: CustomerId,
    svc: Svc,
    days: Annotated[int, Query(ge=1, le=365)] = 30,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> Transactions:
    """The customer's archived transactions of the last `days` event days, newest first."""
    if queries.customer_detail(svc.redis, customer_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no customer {customer_id}")
    root = svc.settings.data_dir / "archive"
    table = ArchiveStore(root).customer_rows(customer_id, days, TRANSACTION_COLUMNS) if root.exists() else None
    rows = [] if table is None else table.to_pylist()[::-1][:limit]
    for row in rows:
        row["ts"] = row["ts"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return Transactions(customer_id=customer_id, days=days, transactions=rows)


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind == "o" and value.isdigit():
            return int(value)
    except (ValueError, UnicodeDecodeError):
        pass
    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "cursor is not one this API handed out")


@router.get("/high-risk-customers", response_model=QueueResponse, dependencies=READ)
def high_risk(
    svc: Svc,
    level: Annotated[list[Level] | None, Query(description="default HIGH and CRITICAL")] = None,
    hardship: Annotated[list[str] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> QueueResponse:
    """The risk queue, highest score first, paged with `next_cursor`."""
    unknown = [h for h in hardship or [] if h not in HARDSHIP_TYPES]
    if unknown:
        known = ", ".join(HARDSHIP_TYPES)
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown hardship type(s) {', '.join(unknown)} (known: {known})"
        )
    offset = _offset(cursor)
    f = queries.QueueFilter(levels=tuple(level or ("HIGH", "CRITICAL")), hardships=tuple(hardship or ()))
    # queue_page pages by page number; an offset that is not a multiple of the limit reads two pages
    first = queries.queue_page(svc.redis, f, offset // limit + 1, limit)
    rows = first.rows[offset % limit :]
    if offset % limit:
        rows += queries.queue_page(svc.redis, f, offset // limit + 2, limit).rows[: offset % limit]
    items = [QueueItem(**{k: r.get(k, "") for k in QueueItem.model_fields}) for r in rows]
    end = offset + len(items)
    return QueueResponse(items=items, total=first.total, next_cursor=_cursor(end) if end < first.total else None)
