"""The embedded runner: steps run as tasks in this process, outcomes are group-committed.

Waiting for the delay costs nothing: a pending transaction is only a row with a due time, and a
slot is taken only while its step runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog

from payhook.batching import GroupCommitter
from payhook.config import Settings
from payhook.processing.processor import Processor, record_until_lease_lapses
from payhook.transactions.repository import ClaimedTransaction, Outcome, TransactionRepository

log = structlog.get_logger(__name__)

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
        self._processor = processor
        self._on_recorded = on_recorded
        self._settings = settings
        self._running: set[asyncio.Task[None]] = set()
        self._recorder: GroupCommitter[Outcome, bool] = GroupCommitter(
            repository.record_outcomes, max_batch=settings.executor_batch_size, name="outcomes"
        )

    def start(self) -> None:
        self._recorder.start()

    async def capacity(self) -> int:
        """Free slots; waits for one when all are taken."""
        if len(self._running) >= self._settings.executor_concurrency:
            await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
        return self._settings.executor_concurrency - len(self._running)

    async def run(self, claimed: Sequence[ClaimedTransaction]) -> None:
        for item in claimed:
            task = asyncio.create_task(self._process(item))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def stop(self) -> None:
        """Give running steps a grace period; unfinished ones are left to their leases."""
        if self._running:
            _, unfinished = await asyncio.wait(self._running, timeout=STOP_GRACE_SECONDS)
            for task in unfinished:
                task.cancel()
        await self._recorder.stop()

    async def _process(self, claimed: ClaimedTransaction) -> None:
        outcome = await self._processor.run(claimed)
        await self._record(outcome)

    async def _record(self, outcome: Outcome) -> None:
        applied = await record_until_lease_lapses(
            lambda: self._recorder.submit(outcome),
            outcome.claimed.claimed_at,
            self._settings.lease_seconds,
        )
        if applied is False:
            log.warning("executor.claim_lost", transaction_id=outcome.claimed.transaction_id)
        elif applied and self._on_recorded is not None:
            self._on_recorded(outcome)
