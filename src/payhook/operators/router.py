"""The operator API: list, timeline, replay (one or by filter), and `/metrics`.

Every route here needs `Authorization: Bearer <ADMIN_TOKEN>`, and answers 404 when ADMIN_TOKEN
is not configured.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse

from payhook.errors import ValidationFailed
from payhook.jsonfmt import json_response
from payhook.observability.metrics import CONTENT_TYPE, pool_usage
from payhook.operators.auth import AdminDep
from payhook.operators.schemas import (
    BulkRetryIn,
    ListQuery,
    RetryIn,
    RetryOut,
    Timeline,
    TransactionIdPath,
    TransactionPage,
)
from payhook.runtime import OperatorsDep, RuntimeDep
from payhook.transactions.schemas import problem_response

router = APIRouter(tags=["operators"])
# Every error is answered as problem+json (see app.py), FastAPI's own 422 included: documenting
# 422 here keeps FastAPI from documenting it as application/json.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: problem_response("Missing or wrong Authorization: Bearer <ADMIN_TOKEN>."),
    404: problem_response("Not found, or ADMIN_TOKEN is not configured."),
    503: problem_response("Storage is unavailable. Retry after Retry-After."),
}
# FastAPI answers 400 when a JSON body cannot even be decoded (it is not UTF-8).
NOT_JSON: dict[int | str, dict[str, Any]] = {
    400: problem_response("The body cannot be read as JSON."),
}
INVALID_INPUT: dict[int | str, dict[str, Any]] = {
    422: problem_response(
        "A parameter or a body field is missing or invalid; the message names it."
    ),
}


@router.get(
    "/v1/transactions",
    summary="List transactions, newest first",
    response_model=TransactionPage,
    responses={
        **AUTH_RESPONSES,
        400: problem_response("The cursor is not one this service issued."),
        **INVALID_INPUT,
    },
)
async def list_transactions(
    request: Request, _: AdminDep, operators: OperatorsDep, query: Annotated[ListQuery, Query()]
) -> Response:
    """Filter by status, creation time, account, currency, lateness or conflicts; page by cursor."""
    _refuse_repeated(request, ListQuery.model_fields)
    return json_response(await operators.page(query))


@router.get(
    "/v1/transactions/{transaction_id:path}/timeline",
    summary="Everything that happened to one transaction",
    response_model=Timeline,
    responses={**AUTH_RESPONSES, **INVALID_INPUT},
)
async def timeline(
    transaction_id: TransactionIdPath, _: AdminDep, operators: OperatorsDep, raw: bool = False
) -> Response:
    """Deliveries (with raw bodies when `raw=true`), processing attempts and operator actions."""
    return json_response(await operators.timeline(transaction_id, raw=raw))


@router.post(
    "/v1/transactions/retry",
    summary="Replay FAILED transactions by filter or ids",
    response_model=RetryOut,
    responses={**AUTH_RESPONSES, **NOT_JSON, **INVALID_INPUT},
)
async def retry_many(body: BulkRetryIn, operator: AdminDep, operators: OperatorsDep) -> Response:
    """Back to PROCESSING, due now, attempts reset; at most `limit` (≤ 10,000) per call."""
    return json_response(await operators.retry_many(body, operator))


@router.post(
    "/v1/transactions/{transaction_id:path}/retry",
    summary="Replay one FAILED transaction",
    response_model=RetryOut,
    responses={
        **AUTH_RESPONSES,
        409: problem_response("The transaction is not FAILED."),
        **NOT_JSON,
        **INVALID_INPUT,
    },
)
async def retry_one(
    transaction_id: TransactionIdPath,
    operator: AdminDep,
    operators: OperatorsDep,
    body: RetryIn | None = None,
) -> Response:
    """Back to PROCESSING, due now, attempts reset; recorded in the audit log."""
    reason = body.reason if body is not None else None
    return json_response(await operators.retry_one(transaction_id, operator, reason))


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    # The Prometheus text format (CONTENT_TYPE: text/plain; version=0.0.4), not JSON.
    response_class=PlainTextResponse,
    responses={200: {"description": "Metrics in the Prometheus text format."}, **AUTH_RESPONSES},
)
async def metrics(_: AdminDep, runtime: RuntimeDep, operators: OperatorsDep) -> Response:
    """Counters of this process, and gauges of the stored state read now."""
    snapshot = await operators.snapshot(pool_usage(runtime.engine.pool))
    return Response(runtime.metrics.render(snapshot), media_type=CONTENT_TYPE)


def _refuse_repeated(request: Request, names: Iterable[str]) -> None:
    """Every parameter here takes one value: FastAPI would silently keep the last of several."""
    repeated = [name for name in names if len(request.query_params.getlist(name)) > 1]
    if repeated:
        errors = [{"field": f"query.{name}", "message": "must be given once"} for name in repeated]
        raise ValidationFailed.of(errors)
