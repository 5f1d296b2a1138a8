"""`POST /v1/webhooks/transactions`: the endpoint payment providers call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import structlog
from fastapi import APIRouter, Request, Response
from simplejson.encoder import encode_basestring_ascii
from starlette.types import ASGIApp, Receive, Scope, Send

from payhook.errors import (
    PayhookError,
    SignatureInvalid,
    TransactionConflict,
    render_problem,
)
from payhook.jsonfmt import WrittenBody
from payhook.runtime import Runtime, RuntimeDep, get_runtime
from payhook.transactions.models import DeliveryOutcome, TransactionStatus
from payhook.transactions.schemas import Acknowledgement, problem_response
from payhook.webhooks import intake
from payhook.webhooks.payload import parse_transaction

MAX_BODY_BYTES = 64 * 1024
WEBHOOK_PATH = "/v1/webhooks/transactions"

log = structlog.get_logger(__name__)

router = APIRouter(tags=["webhooks"])


@router.post(
    WEBHOOK_PATH,
    status_code=202,
    summary="Receive a transaction webhook",
    response_model=Acknowledgement,
    responses={
        202: {"description": "Committed (new) or already stored (duplicate: nothing changed)."},
        400: problem_response("The body is not valid JSON."),
        401: problem_response("Signature missing, wrong or outside the tolerance; nothing stored."),
        403: problem_response("The client address is not in WEBHOOK_ALLOWED_IPS; nothing stored."),
        408: problem_response("The body did not arrive within the time allowed; nothing stored."),
        409: problem_response("The id is stored with other content; this delivery was recorded."),
        413: problem_response(f"The body is larger than {MAX_BODY_BYTES} bytes."),
        415: problem_response("The Content-Type is not JSON."),
        422: problem_response("A field is missing or invalid; the message names it."),
        503: problem_response(
            "Storage unavailable: nothing stored, unless the detail says the write was not "
            "confirmed in time (a retry of a stored one is a duplicate). Retry after Retry-After."
        ),
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
        try:
            return await _receive(request, runtime)
        except PayhookError as exc:
            if exc.status_code != TransactionConflict.status_code:  # conflicts count as stored
                runtime.metrics.rejected(exc.status_code)
            raise


Handler = Callable[[Request, Runtime], Awaitable[Response]]
"""A webhook endpoint's function, as the fast path calls it."""


class WebhookFastPath:
    """Hands `POST` to a webhook path straight to its endpoint function.

    FastAPI's routing and dependency injection cost more CPU than the whole handler, group
    commit included (profiled with py-spy under wrk; see benchmarks/README.md). The routes stay
    the documented contract, and this middleware calls the same functions: `routes` maps each
    webhook path (the generic endpoint's, each provider's) to its function.
    """

    def __init__(self, app: ASGIApp, routes: Mapping[str, Handler]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await handler(request, get_runtime(request))
        except PayhookError as exc:
            response = render_problem(exc)
        await response(scope, receive, send)


async def _receive(request: Request, runtime: Runtime) -> Response:
    intake.check_client(request, runtime.allowlist)
    raw = await intake.read_json_body(
        request, runtime.settings.request_body_timeout_seconds, MAX_BODY_BYTES
    )
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
    duplicate = result.outcome is DeliveryOutcome.DUPLICATE
    return WrittenBody(acknowledgement(transaction.transaction_id, result.status, duplicate), 202)


# `Acknowledgement`'s fields in its order, written as `json_response` writes the model (a unit
# test pins the bytes for every status, both flags and ids that need escaping): under load,
# building and dumping the model was 3% of the endpoint's CPU.
_ACKNOWLEDGEMENT = '{"transaction_id": %s, "status": "%s", "duplicate": %s}'


def acknowledgement(transaction_id: str, status: TransactionStatus, duplicate: bool) -> bytes:
    """The body of the 202: an `Acknowledgement`."""
    fields = (
        encode_basestring_ascii(transaction_id),
        status.value,
        "true" if duplicate else "false",
    )
    return (_ACKNOWLEDGEMENT % fields).encode()
