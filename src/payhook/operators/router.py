"""The operator API: list, timeline, replay (one or by filter), and `/metrics`.

Every route here needs `Authorization: Bearer <ADMIN_TOKEN>`, and answers 404 when ADMIN_TOKEN
is not configured.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ValidationError

from payhook.errors import InvalidRequest, ValidationFailed
from payhook.jsonfmt import json_response
from payhook.observability.metrics import CONTENT_TYPE, pool_usage
from payhook.operators.auth import AdminDep
from payhook.operators.schemas import (
    BulkRetryIn,
    ListQuery,
    ProviderQuery,
    RetryIn,
    RetryOut,
    Timeline,
    TransactionIdPath,
    TransactionPage,
)
from payhook.runtime import OperatorsDep, RuntimeDep
from payhook.transactions.schemas import problem_response

M = TypeVar("M", bound=BaseModel)
router = APIRouter(tags=["operators"])
# Every error is answered as problem+json (see app.py), FastAPI's own 422 included: documenting
# 422 here keeps FastAPI from documenting it as application/json.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: problem_response("Missing or wrong Authorization: Bearer <ADMIN_TOKEN>."),
    404: problem_response("Not found, or ADMIN_TOKEN is not configured."),
    503: problem_response("Storage is unavailable. Retry after Retry-After."),
}
# Bodies are read only after the token is checked (payhook.http_guards bounds them).
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: problem_response("The body is not JSON in UTF-8."),
    408: problem_response("The body did not arrive within the time allowed."),
    413: problem_response("The body is larger than the operator API takes."),
}
INVALID_INPUT: dict[int | str, dict[str, Any]] = {
    422: problem_response(
        "A parameter or a body field is missing or invalid; the message names it."
    ),
}


def json_request_body(model: type[BaseModel], *, required: bool) -> dict[str, Any]:
    """The OpenAPI requestBody of a route that reads its body by hand (after authenticating);
    the model's schema is added to the document's components in payhook.app."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": schema}},
        }
    }


async def read_json_body(request: Request, model: type[M]) -> M | None:
    """The body as `model`, or None when empty: read only now, after the route's dependencies
    have checked the token, so a stranger's body is never read (payhook.http_guards bounds it)."""
    raw = await request.body()
    if not raw:
        return None
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidRequest(f"The body is not JSON in UTF-8: {exc}") from None
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(map(str, ("body", *e["loc"]))), "message": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise ValidationFailed(detail, errors=errors) from None


@router.get(
    "/v1/transactions",
    summary="List transactions, newest first",
    response_model=TransactionPage,
    responses={
        **AUTH_RESPONSES,
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
    transaction_id: TransactionIdPath,
    _: AdminDep,
    operators: OperatorsDep,
    raw: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    provider: ProviderQuery = None,
) -> Response:
    """Deliveries or provider events (raw bodies with `raw=true`), processing attempts and
    operator actions, `limit` at a time from `offset`."""
    page = await operators.timeline(transaction_id, provider, raw=raw, limit=limit, offset=offset)
    return json_response(page)


@router.post(
    "/v1/transactions/retry",
    summary="Replay FAILED transactions by filter, ids, or all",
    response_model=RetryOut,
    responses={**AUTH_RESPONSES, **BODY_ERRORS, **INVALID_INPUT},
    openapi_extra=json_request_body(BulkRetryIn, required=True),
)
async def retry_many(request: Request, operator: AdminDep, operators: OperatorsDep) -> Response:
    """Back to PROCESSING, due now, attempts reset; at most `limit` (≤ 10,000) per call."""
    body = await read_json_body(request, BulkRetryIn)
    if body is None:
        raise ValidationFailed(
            "body: a JSON object is required", errors=[{"field": "body", "message": "required"}]
        )
    return json_response(await operators.retry_many(body, operator))


@router.post(
    "/v1/transactions/{transaction_id:path}/retry",
    summary="Replay one FAILED transaction",
    response_model=RetryOut,
    responses={
        **AUTH_RESPONSES,
        409: problem_response("The transaction is not FAILED."),
        **BODY_ERRORS,
        **INVALID_INPUT,
    },
    openapi_extra=json_request_body(RetryIn, required=False),
)
async def retry_one(
    request: Request,
    transaction_id: TransactionIdPath,
    operator: AdminDep,
    operators: OperatorsDep,
    provider: ProviderQuery = None,
) -> Response:
    """Back to PROCESSING, due now, attempts reset; recorded in the audit log."""
    body = await read_json_body(request, RetryIn)
    reason = body.reason if body is not None else None
    return json_response(await operators.retry_one(transaction_id, provider, operator, reason))


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
