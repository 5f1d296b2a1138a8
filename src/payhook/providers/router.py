"""`POST /v1/webhooks/<provider>`: each payment provider's own events, exactly as it sends them.

The same guards as the generic endpoint, in the same order: the address allowlist, a JSON
content type, the body limit and deadline, the signature over the raw bytes before any parsing.
Then every verified event is stored and answered 2xx, whatever its verdict (a 4xx would make the
provider retry for days and then disable the endpoint); only storage failing is a 503.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import structlog
from fastapi import APIRouter, Request, Response

from payhook.errors import NotFound, PayhookError, SignatureInvalid
from payhook.jsonfmt import WrittenBody
from payhook.providers.base import Provider, ProviderEndpoint, webhook_path
from payhook.providers.registry import PROVIDERS
from payhook.runtime import Runtime, get_runtime
from payhook.transactions.schemas import problem_response
from payhook.webhooks import intake

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 1024 * 1024
"""Larger than the generic endpoint's: a provider's verified event must never be a 413."""

router = APIRouter(tags=["webhooks"])


async def receive_events(request: Request, runtime: Runtime, name: str) -> Response:
    """Verify, store every event, then acknowledge as the provider expects."""
    endpoint = runtime.providers.get(name)
    if endpoint is None:
        raise NotFound(f"The {name} endpoint is not enabled: set its webhook secret.")
    try:
        return await _receive(request, runtime, endpoint)
    except PayhookError as exc:
        runtime.metrics.rejected(exc.status_code)
        raise


async def _receive(request: Request, runtime: Runtime, endpoint: ProviderEndpoint) -> Response:
    intake.check_client(request, runtime.allowlist)
    raw = await intake.read_json_body(
        request, runtime.settings.request_body_timeout_seconds, MAX_BODY_BYTES
    )
    provider = endpoint.provider
    try:
        await endpoint.verifier.verify(request.headers, raw)
    except SignatureInvalid as exc:
        log.warning(
            "provider_webhook.signature_rejected", provider=provider.name, reason=exc.detail
        )
        raise
    events = provider.parse(request.headers, raw)
    receipts = await runtime.provider_ingestor.ingest(events)
    for receipt in receipts:
        runtime.metrics.provider_event(provider.name, receipt.event_type, receipt.verdict)
    ack = provider.acknowledge(receipts)
    return WrittenBody(ack.body, ack.status_code, ack.media_type)


def _endpoint(name: str) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    async def endpoint(request: Request) -> Response:
        return await receive_events(request, get_runtime(request), name)

    endpoint.__name__ = f"receive_{name}_events"
    return endpoint


def _handler(name: str) -> Callable[[Request, Runtime], Coroutine[Any, Any, Response]]:
    async def handler(request: Request, runtime: Runtime) -> Response:
        return await receive_events(request, runtime, name)

    return handler


FAST_ROUTES = {webhook_path(provider): _handler(provider.name) for provider in PROVIDERS.values()}
"""Each provider's path and function, for `payhook.webhooks.router.WebhookFastPath`."""


def _documented(provider: Provider) -> Mapping[str, Any]:
    name = provider.name
    return {
        "summary": f"Receive {name}'s own webhook events",
        "description": f"The body exactly as {name} sends it; see docs/PROVIDERS.md.",
        "responses": {
            200: {"description": "Every event stored, each with its verdict."},
            400: problem_response("The body is not JSON; nothing stored."),
            401: problem_response("Signature missing, wrong or stale; nothing stored."),
            403: problem_response("The client address is not in WEBHOOK_ALLOWED_IPS."),
            404: problem_response(f"The {name} endpoint is not enabled (no secret set)."),
            408: problem_response("The body did not arrive within the time allowed."),
            413: problem_response(f"The body is larger than {MAX_BODY_BYTES} bytes."),
            415: problem_response("The Content-Type is not JSON."),
            503: problem_response(
                "Storage unavailable: nothing stored, unless the detail says the write was not "
                "confirmed in time (a retry then finds it). Retry after Retry-After."
            ),
        },
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    }


for _provider in PROVIDERS.values():
    router.add_api_route(
        webhook_path(_provider),
        _endpoint(_provider.name),
        methods=["POST"],
        status_code=200,
        **_documented(_provider),
    )
