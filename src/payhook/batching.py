"""Group commit: many concurrent callers, one write.

Callers `submit` an item and wait. One writer task takes everything queued so far (up to
`max_batch`), hands it to `write` as one batch, and answers each caller with its own result.
While a write is in flight new items queue up, so batches grow exactly as fast as load does and
an idle system adds no latency. With `writers` > 1, another writer takes the next batch while
one is in flight (the write must then be safe to run concurrently with itself). With
`timeout_seconds`, every caller is answered within it: a write longer than that fails (its
callers get the TimeoutError); a caller whose item is still queued at its deadline gets a
TimeoutError and its item is not written; one whose item is in a write by then gets
OutcomeUnknown (a TimeoutError too): that write may still commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import structlog

T = TypeVar("T")
R = TypeVar("R")

log = structlog.get_logger(__name__)


class CommitterStopped(RuntimeError):
    """A submission to a committer that is not running (not started yet, or stopping)."""


class OutcomeUnknown(TimeoutError):
    """The caller's deadline passed while its item was in a write that may still commit."""


UNCONFIRMED = (
    "The database did not confirm the write in time; it may still have been stored. Retry: "
    "if it was, the retry is answered as a duplicate."
)
"""The 503's detail for OutcomeUnknown: "nothing was recorded" would not be known to be true."""


class GroupCommitter(Generic[T, R]):
    """Batches concurrent submissions into single calls of `write`."""

    def __init__(
        self,
        write: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        max_batch: int,
        name: str,
        timeout_seconds: float | None = None,
        writers: int = 1,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._writers = writers
        self._timeout = timeout_seconds
        self._name = name
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._writing: set[asyncio.Future[R]] = set()  # callers whose items a write holds

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name=f"{self._name}-{number}")
            for number in range(self._writers)
        ]

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        if not self._tasks:
            return
        self._closing = True
        self._ready.set()
        await asyncio.gather(*self._tasks)
        self._tasks = []

    async def submit(self, item: T) -> R:
        if self._closing or not self._tasks:
            raise CommitterStopped(f"{self._name} is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, future))
        self._ready.set()
        if self._timeout is None:
            return await future
        # The caller's deadline as one timer on its future, not `asyncio.timeout` around the
        # wait (a context manager cancelling and un-cancelling the task): the same answer, at
        # a third of the CPU, on every request of the webhook.
        overdue = loop.call_later(self._timeout, self._time_out, future)
        try:
            return await future
        finally:
            overdue.cancel()

    async def _run(self) -> None:
        while not self._closing:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                await self._write_one_batch()

    async def _write_one_batch(self) -> None:
        batch = self._queue[: self._max_batch]
        del self._queue[: self._max_batch]
        # A caller that gave up (its deadline passed while an earlier write hung) was answered
        # already: its item is not written.
        batch = [(item, future) for item, future in batch if not future.done()]
        if not batch:
            return
        futures = [future for _, future in batch]
        self._writing.update(futures)
        try:
            # A write that hangs (a database that stopped answering) is abandoned, so the writes
            # queued behind it are not held too, and the next one starts on a fresh connection.
            async with asyncio.timeout(self._timeout):
                results = await self._write([item for item, _ in batch])
        except Exception as exc:
            log.warning(f"{self._name}.write_failed", size=len(batch), error=repr(exc))
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self._writing.difference_update(futures)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _time_out(self, future: asyncio.Future[R]) -> None:
        """A caller's deadline passed: a TimeoutError if its item is still queued (it is then
        skipped), OutcomeUnknown if a write holds it (that write may yet commit)."""
        if not future.done():
            future.set_exception(OutcomeUnknown() if future in self._writing else TimeoutError())
