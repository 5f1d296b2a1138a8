"""`POST /v1/webhooks/transactions`: the endpoint payment providers call."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter, Request, Response
from simplejson import dumps

from payhook.errors import (
    PayloadTooLarge,
    SignatureInvalid,
    TransactionConflict,
    UnsupportedMediaType,
)
from payhook.runtime import Runtime, RuntimeDep
from payhook.transactions.models import DeliveryOutcome
from payhook.transactions.schemas import Acknowledgement, Problem
from payhook.webhooks.payload import parse_transaction

MAX_BODY_BYTES = 64 * 1024
WEBHOOK_PATH = "/v1/webhooks/transactions"

log = structlog.get_logger(__name__)

router = APIRouter(tags=["webhooks"])


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": Problem.model_json_schema()}},
    }


@router.post(
    WEBHOOK_PATH,
    status_code=202,
    summary="Receive a transaction webhook",
    response_model=Acknowledgement,
    responses={
        202: {"description": "Committed (new) or already stored (duplicate: nothing changed)."},
        400: _problem("The body is not valid JSON."),
        401: _problem("The signature is missing, wrong or outside the tolerance; nothing stored."),
        409: _problem("The id is stored with different content; this delivery was recorded."),
        413: _problem(f"The body is larger than {MAX_BODY_BYTES} bytes."),
        415: _problem("The Content-Type is not JSON."),
        422: _problem("A field is missing or invalid; the message names it."),
        503: _problem("Storage is unavailable; nothing was stored. Retry after Retry-After."),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/TransactionIn"}}
            },
        }
    },
)
async def receive_transaction(request: Request, runtime: RuntimeDep) -> Response:
    """Verify the signature, store the transaction durably, then acknowledge it."""
    # Timed here, not in a middleware, so only this endpoint pays for it.
    with runtime.metrics.ingest_seconds.time():
        return await _receive(request, runtime)


async def _receive(request: Request, runtime: Runtime) -> Response:
    raw = await _read_json_body(request)
    try:
        # Before parsing: nothing an unauthenticated sender wrote reaches the JSON parser.
        runtime.verifier.verify(request.headers, raw)
    except SignatureInvalid as exc:
        log.warning("webhook.signature_rejected", reason=exc.detail)
        raise
    transaction = parse_transaction(raw)
    result = await runtime.ingestor.ingest(transaction, raw)
    runtime.metrics.delivery(result.outcome)
    if result.outcome is DeliveryOutcome.CONFLICT:
        raise TransactionConflict(
            f"Transaction {transaction.transaction_id!r} is already stored with different "
            "content. The stored transaction is unchanged; this delivery was recorded for review.",
            transaction_id=transaction.transaction_id,
        )
    body = {
        "transaction_id": transaction.transaction_id,
        "status": result.status.value,
        "duplicate": result.outcome is DeliveryOutcome.DUPLICATE,
    }
    return Response(dumps(body), status_code=202, media_type="application/json")


def _is_json(content_type: str) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def _read_json_body(request: Request) -> bytes:
    if not _is_json(request.headers.get("content-type", "")):
        raise UnsupportedMediaType("Send the transaction as application/json.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The body must be at most {MAX_BODY_BYTES} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"The body must be at most {MAX_BODY_BYTES} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)
