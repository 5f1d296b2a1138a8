"""The embedded runner: each claimed batch runs as one task in this process.

Waiting for the delay costs nothing: a pending transaction is only a row with a due time, and a
slot is taken only while its step runs. A batch's steps run concurrently and its outcomes are
written in one database transaction, so a burst of due rows costs a few statements per batch,
not per row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog

from payhook.config import Settings
from payhook.processing.processor import Processor, record_until_lease_lapses
from payhook.transactions.records import ClaimedTransaction, Outcome
from payhook.transactions.repository import TransactionRepository

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
        self._repository = repository
        self._processor = processor
        self._settings = settings
        self._on_recorded = on_recorded
        self._batches: dict[asyncio.Task[None], int] = {}

    def start(self) -> None:
        return None

    @property
    def _in_flight(self) -> int:
        return sum(self._batches.values())

    async def capacity(self) -> int:
        """Free slots; waits for a batch to finish when all are taken."""
        while self._in_flight >= self._settings.executor_concurrency:
            await asyncio.wait(self._batches, return_when=asyncio.FIRST_COMPLETED)
        return self._settings.executor_concurrency - self._in_flight

    async def run(self, claimed: Sequence[ClaimedTransaction]) -> None:
        task = asyncio.create_task(self._process(claimed))
        self._batches[task] = len(claimed)
        task.add_done_callback(self._batches.pop)

    async def stop(self) -> None:
        """Give running steps a grace period; unfinished ones are left to their leases."""
        if self._batches:
            _, unfinished = await asyncio.wait(self._batches, timeout=STOP_GRACE_SECONDS)
            for task in unfinished:
                task.cancel()

    async def _process(self, claimed: Sequence[ClaimedTransaction]) -> None:
        outcomes = await asyncio.gather(*(self._processor.run(item) for item in claimed))
        applied = await record_until_lease_lapses(
            lambda: self._repository.record_outcomes(outcomes),
            claimed[0].claimed_at,
            self._settings.lease_seconds,
        )
        for outcome, ok in zip(outcomes, applied or [], strict=False):
            if not ok:
                log.warning("executor.claim_lost", transaction_id=outcome.claimed.transaction_id)
            elif self._on_recorded is not None:
                self._on_recorded(outcome)
