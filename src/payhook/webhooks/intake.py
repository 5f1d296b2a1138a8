"""What every webhook endpoint checks before it believes a byte: who sends, what type, how much."""

from __future__ import annotations

import asyncio

import structlog
from fastapi import Request

from payhook.errors import Forbidden, PayloadTooLarge, RequestTimeout, UnsupportedMediaType
from payhook.webhooks.allowlist import ClientAllowlist

log = structlog.get_logger(__name__)


def check_client(request: Request, allowlist: ClientAllowlist) -> None:
    """Refuse a sender outside WEBHOOK_ALLOWED_IPS before it learns anything about its body."""
    if not allowlist.allowed:  # no WEBHOOK_ALLOWED_IPS: every sender may post
        return
    peer = request.client.host if request.client else None
    forwarded_for = request.headers.getlist("x-forwarded-for")
    if not allowlist.permits(peer, forwarded_for):
        client = allowlist.client_address(peer, forwarded_for)
        log.warning("webhook.client_refused", client=str(client), peer=peer)
        raise Forbidden("This address may not post webhooks.")


def _is_json(content_type: str) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def read_json_body(request: Request, timeout_seconds: float, max_bytes: int) -> bytes:
    """The raw JSON body, at most `max_bytes`, arrived within `timeout_seconds` (else 4xx)."""
    if not _is_json(request.headers.get("content-type", "")):
        raise UnsupportedMediaType("Send the body as application/json.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"The body must be at most {max_bytes} bytes.")
    try:
        async with asyncio.timeout(timeout_seconds):
            return await _read_limited(request, max_bytes)
    except TimeoutError:
        raise RequestTimeout(f"The body did not arrive within {timeout_seconds:g} s.") from None


async def _read_limited(request: Request, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"The body must be at most {max_bytes} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)
