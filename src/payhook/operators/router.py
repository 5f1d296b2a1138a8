"""The operator API: list, timeline, replay (one or by filter), and `/metrics`.

Every route here needs `Authorization: Bearer <ADMIN_TOKEN>`, and answers 404 when ADMIN_TOKEN
is not configured.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from simplejson import dumps

from payhook.observability.metrics import CONTENT_TYPE, pool_usage
from payhook.operators.auth import AdminDep
from payhook.operators.schemas import (
    BulkRetryIn,
    ListQuery,
    RetryIn,
    RetryOut,
    Timeline,
    TransactionPage,
)
from payhook.operators.service import OperatorService
from payhook.runtime import RuntimeDep
from payhook.timefmt import isoformat_z

router = APIRouter(tags=["operators"])
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong Authorization: Bearer <ADMIN_TOKEN>."},
    404: {"description": "Not found, or ADMIN_TOKEN is not configured."},
}


def get_operators(request: Request) -> OperatorService:
    service: OperatorService = request.app.state.runtime.operators
    return service


OperatorsDep = Annotated[OperatorService, Depends(get_operators)]


@router.get(
    "/v1/transactions",
    summary="List transactions, newest first",
    response_model=TransactionPage,
    responses=AUTH_RESPONSES,
)
async def list_transactions(
    _: AdminDep, operators: OperatorsDep, query: Annotated[ListQuery, Query()]
) -> Response:
    """Filter by status, creation time, account, currency, lateness or conflicts; page by cursor."""
    return json_response(await operators.page(query))


@router.get(
    "/v1/transactions/{transaction_id}/timeline",
    summary="Everything that happened to one transaction",
    response_model=Timeline,
    responses=AUTH_RESPONSES,
)
async def timeline(
    transaction_id: str, _: AdminDep, operators: OperatorsDep, raw: bool = False
) -> Response:
    """Deliveries (with raw bodies when `raw=true`), processing attempts and operator actions."""
    return json_response(await operators.timeline(transaction_id, raw=raw))


@router.post(
    "/v1/transactions/retry",
    summary="Replay FAILED transactions by filter or ids",
    response_model=RetryOut,
    responses=AUTH_RESPONSES,
)
async def retry_many(body: BulkRetryIn, operator: AdminDep, operators: OperatorsDep) -> Response:
    """Back to PROCESSING, due now, attempts reset; at most `limit` (≤ 10,000) per call."""
    return json_response(await operators.retry_many(body, operator))


@router.post(
    "/v1/transactions/{transaction_id}/retry",
    summary="Replay one FAILED transaction",
    response_model=RetryOut,
    responses={**AUTH_RESPONSES, 409: {"description": "The transaction is not FAILED."}},
)
async def retry_one(
    transaction_id: str, operator: AdminDep, operators: OperatorsDep, body: RetryIn | None = None
) -> Response:
    """Back to PROCESSING, due now, attempts reset; recorded in the audit log."""
    reason = body.reason if body is not None else None
    return json_response(await operators.retry_one(transaction_id, operator, reason))


@router.get("/metrics", summary="Prometheus metrics", responses=AUTH_RESPONSES)
async def metrics(_: AdminDep, runtime: RuntimeDep, operators: OperatorsDep) -> Response:
    """Counters of this process, and gauges of the stored state read now."""
    snapshot = await operators.snapshot(pool_usage(runtime.engine.pool))
    return Response(runtime.metrics.render(snapshot), media_type=CONTENT_TYPE)


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """JSON with exact amounts (150.50 stays 150.50) and times in the service's `Z` form."""
    body = dumps(model.model_dump(), use_decimal=True, default=_json_default)
    return Response(body, status_code=status_code, media_type="application/json")


def _json_default(value: object) -> Any:
    if isinstance(value, datetime):
        return isoformat_z(value)
    if isinstance(value, Decimal):
        return value
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
