"""One process's way to the destination: a pooled client, signing, bounded pressure, the gate.

Every delivery is `POST DESTINATION_URL` with a JSON body, signed per Standard Webhooks with
DESTINATION_SECRET: `webhook-id` (the caller's message id, the same on every attempt, so the
destination dedupes with it), `webhook-timestamp`, `webhook-signature`. Redirects are not
followed. All of a process's deliveries share its pooled keep-alive connections, at most
DESTINATION_MAX_IN_FLIGHT requests at once (fewer while the destination struggles: `window`)
and at most DESTINATION_MAX_PER_SECOND a second.

A delivery that cannot get through the gate or past the pressure bounds in time comes back as
`waiting`: it was not sent and spends no attempt.

The client is pyreqwest (Python bindings of Rust's reqwest, on hyper): one client per process,
at most DESTINATION_MAX_IN_FLIGHT requests on its keep-alive connections. It replaced aiohttp
(which had replaced httpx): per request, on the project's 2-core machine, httpx cost 2.3 ms of
CPU, aiohttp 0.23 ms and pyreqwest 0.11 ms (`python -m benchmarks.client_cost`: the same 4,000
posts to the bench receiver, 64 at a time, interleaved rounds; benchmarks/README.md). In one
process a delivery must cost no more than an ingest, or deliveries fall behind a burst received
at full speed; with aiohttp the client alone cost about as much as a whole ingest. The CAs
trusted are the platform's, certifi's bundle, and SSL_CERT_FILE / SSL_CERT_DIR's; the proxy
comes from the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), read once at start for
DESTINATION_URL.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import urllib.parse
import urllib.request
from importlib.metadata import version
from pathlib import Path

import certifi
import structlog
from aiolimiter import AsyncLimiter
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import (
    ConnectError,
    ConnectTimeoutError,
    DetailedPyreqwestError,
    NetworkError,
    PyreqwestError,
)
from pyreqwest.proxy import ProxyBuilder
from pyreqwest.response import Response

from payhook.config import Settings
from payhook.forwarding.delivery import (
    EXCERPT_BYTES,
    DeliveryResult,
    answered,
    excerpt_of,
    failed,
    unreached,
    waiting,
)
from payhook.forwarding.health import Admission, DestinationHealth, GateState
from payhook.forwarding.window import SendWindow
from payhook.webhooks.signatures import StandardWebhooks

log = structlog.get_logger(__name__)

USER_AGENT = f"payhook/{version('payhook')}"
# Room left inside PROCESSING_TIMEOUT_SECONDS for recording, beyond the request itself.
MARGIN_SECONDS = 1.0
BUSY_RETRY_SECONDS = 1.0
PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


class Forwarder:
    """Sends deliveries to DESTINATION_URL; one per process, closed with `aclose`."""

    def __init__(self, settings: Settings) -> None:
        if settings.destination_url is None or settings.destination_secret is None:
            raise ValueError("forwarding needs DESTINATION_URL and DESTINATION_SECRET")
        self._url = str(settings.destination_url)
        self._signer = StandardWebhooks(
            [settings.destination_secret.get_secret_value()], settings.webhook_tolerance_seconds
        )
        self._timeout = settings.destination_timeout_seconds
        self._retry_after_cap = settings.retry_backoff_max_seconds
        # How long a delivery may wait for a free slot or a probe's answer before it is held
        # back instead: all of it must fit in the step's own timeout.
        self._patience = max(
            0.1,
            settings.processing_timeout_seconds - self._timeout - MARGIN_SECONDS,
        )
        in_flight = settings.destination_max_in_flight
        # Reading the CA files takes a while: once per process, and only for https.
        self._roots = extra_roots() if self._url.startswith("https:") else []
        self._proxy = proxy_for(self._url)
        self._session: Client | None = None  # made in the loop that sends
        self._connections = in_flight
        self.window = SendWindow(in_flight)
        per_second = settings.destination_max_per_second
        self._rate = None if per_second is None else AsyncLimiter(per_second, 1.0)
        self.health = DestinationHealth(
            settings.destination_failure_threshold,
            settings.destination_probe_seconds,
            settings.destination_probe_max_seconds,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> Client:
        """The process's client, made on first use: a Celery worker builds its step outside
        the event loop that sends."""
        if self._session is None:
            builder = (
                ClientBuilder()
                .max_connections(self._connections)
                .follow_redirects(False)
                .user_agent(USER_AGENT)
                .default_headers({"content-type": "application/json"})
                .no_proxy()  # the environment's proxy as `proxy_for` reads it, not reqwest's rules
            )
            if self._proxy is not None:
                builder = builder.proxy(ProxyBuilder.all(self._proxy))
            for pem in self._roots:
                builder = builder.add_root_certificate_pem(pem)
            # DESTINATION_TIMEOUT_SECONDS bounds each request (`_send`): no second timer.
            self._session = builder.build()
        return self._session

    async def forward(self, message_id: str, body: bytes) -> DeliveryResult:
        """Deliver `body` once, or say why not and when to try again."""
        hold = self.health.hold_seconds()
        if hold is not None:
            return waiting(hold, "destination unavailable: waiting for its next probe")
        started = time.monotonic()
        admission = await self.health.admit(self._patience)
        if not isinstance(admission, Admission):
            return waiting(admission, "destination unavailable: waiting for its next probe")
        if not await self._take_slot(self._patience - (time.monotonic() - started)):
            self.health.abandon(admission)
            return waiting(BUSY_RETRY_SECONDS, "destination busy: no room in flight in time")
        try:
            return await self._send_admitted(admission, message_id, body)
        finally:
            self.window.release()

    async def _take_slot(self, patience: float) -> bool:
        if self._rate is None and self.window.try_acquire():
            return True  # no wait, so no timer (one per delivery adds up under a burst)
        try:
            async with asyncio.timeout(max(0.0, patience)):
                await self.window.acquire()
                if self._rate is not None:
                    try:
                        await self._rate.acquire()
                    except BaseException:
                        self.window.release()
                        raise
        except TimeoutError:
            return False
        return True

    async def _send_admitted(
        self, admission: Admission, message_id: str, body: bytes
    ) -> DeliveryResult:
        try:
            result = await self._send(message_id, body)
        except BaseException:
            self.health.abandon(admission)
            raise
        was_open = self.health.state is not GateState.CLOSED
        if not self.health.record(admission, result.outage) or not result.counted:
            # Given back: tried again at the next probe (or with backoff, while none is due).
            result = result.uncounted(result.retry_after or self.health.hold_seconds())
        is_open = self.health.state is not GateState.CLOSED
        if result.outage:
            self.window.failed()
        elif was_open and not is_open:
            self.window.restart()
            log.info("forwarding.destination_up", status=result.status)
        else:
            self.window.answered()
        if is_open and not was_open:
            log.warning(
                "forwarding.destination_down",
                error=result.error,
                next_probe_in=round(self.health.hold_seconds() or 0, 3),
            )
        if result.status == 429 and result.retry_after:
            self.health.pause(result.retry_after)
        if admission.probe:
            log.info("forwarding.probe", status=result.status, outage=result.outage)
        return result

    async def _send(self, message_id: str, body: bytes) -> DeliveryResult:
        headers = self._signer.sign(body, timestamp=int(time.time()), msg_id=message_id)
        client = self._client()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                status, retry_after, excerpt = await self._post(client, headers, body)
        except (ConnectError, ConnectTimeoutError) as exc:
            # Refused, unresolvable, untrusted or never connected: nothing left this process.
            reason = f"could not connect: {describe(exc)}"[:EXCERPT_BYTES]
            return unreached(reason, time.perf_counter() - started)
        except TimeoutError:
            return failed(f"no answer within {self._timeout:g}s", time.perf_counter() - started)
        except PyreqwestError as exc:
            reason = f"{type(exc).__name__}: {describe(exc)}"[:EXCERPT_BYTES]
            return failed(reason, time.perf_counter() - started)
        return answered(
            status, retry_after, excerpt, time.perf_counter() - started, cap=self._retry_after_cap
        )

    async def _post(
        self, client: Client, headers: dict[str, str], body: bytes
    ) -> tuple[int, str | None, str]:
        """The answer's status, Retry-After and excerpt.

        A connection closed without an answer is sent on once more: most often it is a
        kept-alive one the destination closed while idle (a restart, its own idle timeout),
        which the request never got through. If the destination did read it, this is one more
        delivery of the same `webhook-id`, which it dedupes as it does any retry.
        """
        try:
            return await self._post_once(client, headers, body)
        except ConnectError:  # never connected: nothing was sent, and it is not retried here
            raise
        except NetworkError:
            await asyncio.sleep(0)  # lets the loop see any other pooled connection closed too
            return await self._post_once(client, headers, body)

    async def _post_once(
        self, client: Client, headers: dict[str, str], body: bytes
    ) -> tuple[int, str | None, str]:
        request = client.post(self._url).headers(headers).body_bytes(body).build_streamed()
        async with request as response:
            excerpt = await _read_excerpt(response)
            return response.status, response.get_header("retry-after"), excerpt


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), if any."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(urllib.parse.urlsplit(url).scheme)


def extra_roots() -> list[bytes]:
    """The CAs trusted besides the platform's: certifi's bundle (what payhook trusted before,
    and all there is in an image without a system store), SSL_CERT_FILE and SSL_CERT_DIR."""
    paths = [Path(certifi.where())]
    if file := os.environ.get("SSL_CERT_FILE"):
        paths.append(Path(file))
    if directory := os.environ.get("SSL_CERT_DIR"):
        paths += sorted(p for p in Path(directory).iterdir() if p.is_file())
    roots = []
    for path in paths:
        text = path.read_bytes()
        roots += [m.group(0) for m in PEM_CERTIFICATE.finditer(text)]
    return roots


def describe(exc: PyreqwestError) -> str:
    """The error and its causes in one line (reqwest nests the underlying error in each)."""
    message = str(exc.args[0]) if exc.args else type(exc).__name__
    if isinstance(exc, DetailedPyreqwestError):
        causes = (exc.details or {}).get("causes") or []
        deepest = [str(c.get("message", "")) for c in causes if c.get("message")]
        if deepest:
            return f"{message}: {deepest[-1]}"
    return message


async def _read_excerpt(response: Response) -> str:
    """The first KB of the answer; the rest is not read (the connection is then dropped)."""
    data = b""
    try:
        reader = response.body_reader
        while len(data) < EXCERPT_BYTES:
            chunk = await reader.read(EXCERPT_BYTES - len(data))
            if not chunk:
                break
            data += bytes(chunk)
    except PyreqwestError:
        return "(an answer that could not be decoded)"
    return excerpt_of(data)
