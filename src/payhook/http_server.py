"""The HTTP protocol `payhook serve` runs: uvicorn's httptools protocol with a head deadline.

uvicorn times out idle keep-alive connections only after a response, and stops that timer at
the first byte of the next request; a connection that never finishes sending a request head
(slowloris, or simply connecting and waiting) is held open forever. Here a request head must
be complete within REQUEST_HEAD_TIMEOUT_SECONDS of the connection opening, or of its first byte
on a kept-alive connection (whose idle time stays uvicorn's keep-alive timeout). The body has
its own deadline in the router.
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from payhook.config import Settings


@cache
def _head_timeout_seconds() -> float:
    # uvicorn builds protocols itself (in each worker process), so the setting is read here.
    return Settings().request_head_timeout_seconds


class HeadDeadlineProtocol(HttpToolsProtocol):
    """Closes a connection whose next request head has not fully arrived in time.

    The timer is lazy: a request only notes when its head started, and a connection's one timer,
    when it fires, closes the connection if a head is overdue or sleeps until the pending head's
    deadline. Under keep-alive load it fires once per timeout a connection, not once a request
    (a timer armed and cancelled per request was 2% of the webhook's CPU).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_since: float | None = None  # when the head being awaited started
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_started()

    def data_received(self, data: bytes) -> None:
        if self._head_since is None and self._between_requests():
            self._head_started()
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._head_since = None
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_since = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _head_started(self) -> None:
        self._head_since = self.loop.time()
        if self._head_timer is None:
            self._head_timer = self.loop.call_at(
                self._head_since + _head_timeout_seconds(), self._check_head
            )

    def _check_head(self) -> None:
        self._head_timer = None
        if self._head_since is None:
            return  # no head awaited now; the next one arms the timer again
        deadline = self._head_since + _head_timeout_seconds()
        if self.loop.time() < deadline:
            self._head_timer = self.loop.call_at(deadline, self._check_head)
        elif self._between_requests():
            self.transport.close()

    def _between_requests(self) -> bool:
        # While a request is served, its body arrives: that is the router's deadline.
        return self.cycle is None or self.cycle.response_complete
