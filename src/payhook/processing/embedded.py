"""The embedded runner: each claimed batch runs as one task in this process.

Waiting for the delay costs nothing: a pending transaction is only a row with a due time, and a
slot is taken only while its step runs. A batch's steps run concurrently and its outcomes are
written in one database transaction, so a burst of due rows costs a few statements per batch,
not per row.
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
    """Runs at most EXECUTOR_CONCURRENCY steps at once inside this process."""

    linger_seconds = 0.0

    def __init__(
        self,
        repository: TransactionRepository,
        processor: Processor,
        settings: Settings,
        on_recorded: Callable[[Outcome], None] | None = None,
    ) -> None:
        self._batch_processor = BatchProcessor(
            repository, processor, settings.lease_seconds, on_recorded
        )
        self._processor = processor
        self._settings = settings
        self._batches: dict[asyncio.Task[None], int] = {}

    def start(self) -> None:
        return None

    @property
    def _in_flight(self) -> int:
        return sum(self._batches.values())

    async def capacity(self) -> int:
        """Free slots, at most half of them; waits for a batch to finish when all are taken.

        Half: under a backlog two batches overlap, so one's claim, row reads and outcome write
        (database round trips) happen while the other's steps run. One batch of all the slots at
        a time left a forwarding process idle a third of its time (benchmarks/README.md).
        """
        while self._in_flight >= self._settings.executor_concurrency:
            await asyncio.wait(self._batches, return_when=asyncio.FIRST_COMPLETED)
        free = self._settings.executor_concurrency - self._in_flight
        return min(free, max(1, self._settings.executor_concurrency // 2))

    async def run(self, claimed: Sequence[ClaimedTransaction]) -> None:
        task = asyncio.create_task(self._batch_processor.process(claimed))
        self._batches[task] = len(claimed)
        task.add_done_callback(self._batches.pop)

    async def stop(self) -> None:
        """Give running steps a grace period; unfinished ones are left to their leases."""
        if self._batches:
            _, unfinished = await asyncio.wait(self._batches, timeout=STOP_GRACE_SECONDS)
            for task in unfinished:
                task.cancel()
            if unfinished:
                await asyncio.wait(unfinished)
        await self._processor.aclose()
