"""The embedded runner: each claimed batch runs as one task in this process.

Waiting for the delay costs nothing: a pending transaction is only a row with a due time, and a
slot is taken only while its step runs. A batch's steps run concurrently and its outcomes are
written in one database transaction (payhook.processing.batch), so a burst of due rows costs a
few statements per batch, not per row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from payhook.config import Settings
from payhook.processing.batch import BatchProcessor
from payhook.processing.processor import Processor
from payhook.transactions.records import ClaimedTransaction, Outcome
from payhook.transactions.repository import TransactionRepository

STOP_GRACE_SECONDS = 10.0


class EmbeddedRunner:
    """Runs at most EXECUTOR_CONCURRENCY steps at once inside this process.

    A slot is freed as soon as its step finishes, not when its whole batch is recorded: under a
    backlog the next claim then overlaps a batch's slowest steps and its outcome write, instead
    of the destination idling until they are done. Rows claimed and not yet recorded are at most
    twice EXECUTOR_CONCURRENCY, so a database slow to take outcomes holds back the next claims.
    """

    linger_seconds = 0.0
    claim_starts_attempt = True

    def __init__(
        self,
        repository: TransactionRepository,
        processor: Processor,
        settings: Settings,
        on_recorded: Callable[[Outcome], None] | None = None,
    ) -> None:
        self._batch_processor = BatchProcessor(
            repository,
            processor,
            settings.lease_seconds,
            on_recorded,
            stop_record_seconds=settings.database_timeout_seconds,
        )
        self._processor = processor
        self._concurrency = settings.executor_concurrency
        self._batches: set[asyncio.Task[None]] = set()
        self._running = 0  # steps started and not finished
        self._held = 0  # rows claimed and not yet recorded (their batch is running)
        self._freed = asyncio.Event()

    def start(self) -> None:
        return None

    async def capacity(self) -> int:
        """Free slots, at most half of them; waits while fewer than a quarter are free.

        Half, and a quarter before claiming again: under a backlog batches overlap, so one's
        claim and outcome write (database round trips) happen while others' steps run, and a
        claim is never of a handful of rows (benchmarks/README.md).
        """
        least = max(1, self._concurrency // 4)
        while self._free() < least:
            self._freed.clear()
            await self._freed.wait()
        return min(self._free(), max(1, self._concurrency // 2))

    def _free(self) -> int:
        return min(self._concurrency - self._running, 2 * self._concurrency - self._held)

    async def run(self, claimed: Sequence[ClaimedTransaction]) -> None:
        unfinished = len(claimed)
        self._running += unfinished
        self._held += unfinished

        def step_done() -> None:
            nonlocal unfinished
            unfinished -= 1
            self._running -= 1
            self._freed.set()

        def batch_done(task: asyncio.Task[None]) -> None:
            self._batches.discard(task)
            self._running -= unfinished  # steps cancelled with their batch
            self._held -= len(claimed)
            self._freed.set()

        task = asyncio.create_task(self._batch_processor.process(claimed, step_done))
        self._batches.add(task)
        task.add_done_callback(batch_done)

    async def stop(self) -> None:
        """Give running steps a grace period; unfinished ones are left to their leases.

        A batch cancelled after the grace still records its finished steps (within
        DATABASE_TIMEOUT_SECONDS), so those do not run again after a restart.
        """
        if self._batches:
            _, unfinished = await asyncio.wait(self._batches, timeout=STOP_GRACE_SECONDS)
            for task in unfinished:
                task.cancel()
            if unfinished:
                await asyncio.wait(unfinished)
        await self._processor.aclose()
