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
    """Closes a connection whose next request head has not fully arrived in time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        if self._head_deadline is None and self._between_requests():
            self._arm_head_deadline()
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(_head_timeout_seconds(), self._head_overdue)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _between_requests(self) -> bool:
        # While a request is served, its body arrives: that is the router's deadline.
        return self.cycle is None or self.cycle.response_complete

    def _head_overdue(self) -> None:
        self._head_deadline = None
        if self._between_requests():
            self.transport.close()
