"""ASGI middleware that every request passes: the Host check, the scheme a trusted proxy saw,
the bound on every request body, and the headers every response carries.

The webhook bounds its own body (64 KiB, in its router, before the signature); every other
route that reads a body reads it through `BodyGuard`: at most `max_bytes`, within
REQUEST_BODY_TIMEOUT_SECONDS of the first read, and only after the route has authenticated the
caller (the operator routes read their bodies by hand, after their dependencies, for that). A
response sent while a body is still unread closes the connection, so an unauthenticated sender
cannot keep streaming into a connection that was answered already.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payhook.errors import InvalidRequest, PayloadTooLarge, RequestTimeout, render_problem
from payhook.webhooks.allowlist import ClientAllowlist

log = structlog.get_logger(__name__)

RESPONSE_HEADERS = [(b"x-content-type-options", b"nosniff")]


class ResponseHeaders:
    """Headers on every response: browsers must not guess a content type (no MIME sniffing)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *RESPONSE_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HostCheck:
    """Refuses a Host header outside ALLOWED_HOSTS with a 400 (`*` allows every host).

    Entries are host names, or `*.example.com` for its subdomains; the port is ignored.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.exact = frozenset(h.lower() for h in allowed_hosts if not h.startswith("*."))
        self.suffixes = tuple(h[1:].lower() for h in allowed_hosts if h.startswith("*."))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._allowed(_host_of(scope)):
            await self.app(scope, receive, send)
            return
        log.warning("request.host_refused", host=_host_of(scope)[:255])
        response = render_problem(InvalidRequest("This host name is not served here."))
        await response(scope, receive, send)

    def _allowed(self, host: str) -> bool:
        return host in self.exact or (bool(self.suffixes) and host.endswith(self.suffixes))


def _host_of(scope: Scope) -> str:
    for key, value in scope["headers"]:
        if key == b"host":
            host: str = value.decode("latin-1").lower()
            if host.startswith("["):  # [v6]:port
                return host[: host.find("]") + 1]
            return host.rpartition(":")[0] if host.count(":") == 1 else host
    return ""


class ForwardedScheme:
    """`X-Forwarded-Proto` believed from TRUSTED_PROXIES only (uvicorn's own proxy handling is
    off, so no other address can rewrite what payhook sees): behind a TLS-terminating proxy the
    console's cookie is Secure and its same-origin check compares https with https."""

    def __init__(self, app: ASGIApp, proxies: ClientAllowlist) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.proxies.trusted_proxies:
            proto = self._forwarded_proto(scope)
            if proto is not None:
                scope = {**scope, "scheme": proto}
        await self.app(scope, receive, send)

    def _forwarded_proto(self, scope: Scope) -> str | None:
        client = scope.get("client")
        if not client or not self.proxies.is_trusted_proxy(client[0]):
            return None
        values = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-proto"]
        # The last proxy appended the right-most value: the scheme the client used with it.
        proto = ",".join(values).rpartition(",")[2].strip().lower() if values else ""
        return proto if proto in ("http", "https") else None


class BodyGuard:
    """Bounds every request body but the webhook's: size, and time from the first read."""

    def __init__(
        self, app: ASGIApp, *, timeout_seconds: float, max_bytes: Callable[[str], int]
    ) -> None:
        self.app = app
        self.timeout_seconds = timeout_seconds
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _GuardedBody(receive, self.max_bytes(scope["path"]), self.timeout_seconds, scope)

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and not body.complete:
                # Answered before the body was read (401, 404, 413, 408): do not read the rest.
                message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        await self.app(scope, body.receive, send_closing)


class _GuardedBody:
    def __init__(self, receive: Receive, limit: int, timeout_seconds: float, scope: Scope) -> None:
        self._receive = receive
        self.limit = limit
        self.timeout_seconds = timeout_seconds
        self.declared = _declared_length(scope)
        # HTTP/1.1: without Content-Length or chunking there is no body.
        self.complete = not _chunked(scope) and not self.declared
        self.size = 0
        self.deadline: float | None = None

    async def receive(self) -> Message:
        if self.complete:  # after the body: only a disconnect can come, with no deadline
            return await self._receive()
        if self.declared is not None and self.declared > self.limit:
            raise PayloadTooLarge(f"The body must be at most {self.limit} bytes.")
        loop = asyncio.get_running_loop()
        if self.deadline is None:
            self.deadline = loop.time() + self.timeout_seconds
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self._receive()
        except TimeoutError:
            raise RequestTimeout(
                f"The body did not arrive within {self.timeout_seconds:g} s."
            ) from None
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > self.limit:
                raise PayloadTooLarge(f"The body must be at most {self.limit} bytes.")
            self.complete = not message.get("more_body", False)
        else:
            self.complete = True
        return message


def _declared_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _chunked(scope: Scope) -> bool:
    return any(k == b"transfer-encoding" for k, _ in scope["headers"])
