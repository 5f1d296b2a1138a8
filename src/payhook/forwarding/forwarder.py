"""One process's way to the destination: a pooled client, signing, bounded pressure, the gate.

Every delivery is `POST DESTINATION_URL` with a JSON body, signed per Standard Webhooks with
DESTINATION_SECRET: `webhook-id` (the caller's message id, the same on every attempt, so the
destination dedupes with it), `webhook-timestamp`, `webhook-signature`. Redirects are not
followed. All of a process's deliveries share its pooled keep-alive connections, at most
DESTINATION_MAX_IN_FLIGHT requests at once (fewer while the destination struggles: `window`)
and at most DESTINATION_MAX_PER_SECOND a second.

A delivery that cannot get through the gate or past the pressure bounds in time comes back as
`waiting`: it was not sent and spends no attempt.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from importlib.metadata import version

import httpx
import structlog
from aiolimiter import AsyncLimiter

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
# httpcore's pool does work in proportion to its size on every request (it scans every
# connection, and for each idle one every connection again), so one pool of 64 connections
# costs about twice the CPU per delivery of eight pools of eight (measured with the bench
# receiver). The process's keep-alive connections are therefore held by a few small clients,
# and each delivery goes through the least busy one.
CONNECTIONS_PER_CLIENT = 8
# Room left inside PROCESSING_TIMEOUT_SECONDS for recording, beyond the request itself.
MARGIN_SECONDS = 1.0
BUSY_RETRY_SECONDS = 1.0


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
        tls = httpx.create_ssl_context()  # one for all: loading the CA bundle takes a while
        self._clients = [
            _client(self._timeout, tls)
            for _ in range(math.ceil(in_flight / CONNECTIONS_PER_CLIENT))
        ]
        self._busy = [0] * len(self._clients)
        self.window = SendWindow(in_flight)
        per_second = settings.destination_max_per_second
        self._rate = None if per_second is None else AsyncLimiter(per_second, 1.0)
        self.health = DestinationHealth(
            settings.destination_failure_threshold,
            settings.destination_probe_seconds,
            settings.destination_probe_max_seconds,
        )

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()

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
        shard = self._busy.index(min(self._busy))  # the least busy client
        client = self._clients[shard]
        self._busy[shard] += 1
        started = time.perf_counter()
        try:
            async with (
                asyncio.timeout(self._timeout),
                client.stream("POST", self._url, content=body, headers=headers) as response,
            ):
                excerpt = await _read_excerpt(response)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Refused or never connected: the request did not leave this process.
            reason = f"{type(exc).__name__}: {exc}"[:EXCERPT_BYTES]
            return unreached(reason, time.perf_counter() - started)
        except (TimeoutError, httpx.TimeoutException):
            return failed(f"no answer within {self._timeout:g}s", time.perf_counter() - started)
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}: {exc}"[:EXCERPT_BYTES]
            return failed(reason, time.perf_counter() - started)
        finally:
            self._busy[shard] -= 1
        return answered(
            response.status_code,
            response.headers.get("retry-after"),
            excerpt,
            time.perf_counter() - started,
            cap=self._retry_after_cap,
        )


def _client(timeout: float, tls: ssl.SSLContext) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=tls,
        timeout=timeout,
        limits=httpx.Limits(
            max_connections=CONNECTIONS_PER_CLIENT,
            max_keepalive_connections=CONNECTIONS_PER_CLIENT,
        ),
        follow_redirects=False,
        headers={"content-type": "application/json", "user-agent": USER_AGENT},
    )


async def _read_excerpt(response: httpx.Response) -> str:
    """The first KB of the answer; the rest is not read (the connection is then dropped)."""
    data = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) >= EXCERPT_BYTES:
                break
    except httpx.DecodingError:
        return "(an answer that could not be decoded)"
    return excerpt_of(bytes(data))
