"""How many deliveries may be in flight at once: a window between 1 and DESTINATION_MAX_IN_FLIGHT.

Additive increase, multiplicative decrease (as TCP does): each answer widens the window by one,
each outage (connection error, timeout, 5xx) halves it, and after an outage it starts again
from one. A destination that slows down gets fewer requests at once rather than timeouts, and
one that comes back is not flooded with the whole backlog at the same moment.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class SendWindow:
    def __init__(self, maximum: int) -> None:
        self._maximum = maximum
        self.limit = maximum
        self.in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_acquire(self) -> bool:
        """Take room in the window if there is some now and nobody waits for it."""
        if self.in_use < self.limit and not self._waiters:
            self.in_use += 1
            return True
        return False

    async def acquire(self) -> None:
        """Wait for room in the window (first come, first served)."""
        if self.try_acquire():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self.release()  # granted, but its caller gave up meanwhile
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(future)
            raise

    def release(self) -> None:
        self.in_use -= 1
        self._wake()

    def answered(self) -> None:
        """The destination answered: one more may be in flight."""
        if self.limit < self._maximum:
            self.limit += 1
            self._wake()

    def failed(self) -> None:
        """An outage: half as many in flight."""
        self.limit = max(1, self.limit // 2)

    def restart(self) -> None:
        """Back from an outage: start again from one."""
        self.limit = 1

    def _wake(self) -> None:
        while self._waiters and self.in_use < self.limit:
            future = self._waiters.popleft()
            if not future.done():
                self.in_use += 1
                future.set_result(None)
