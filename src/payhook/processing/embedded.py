"""The embedded executor: claims due rows in batches, runs their steps, records outcomes in batches.

Waiting for the delay costs nothing here: a pending transaction is only a row with a due time.
The loop sleeps until the earliest due time (or the poll interval, to see rows written by other
processes), claims what is due under a lease, and starts each step as a task within a bounded
number of slots. Outcomes are group-committed under the claim's fence.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime

import structlog

from payhook.batching import GroupCommitter
from payhook.config import Settings
from payhook.processing.processor import Processor
from payhook.transactions.repository import (
    ClaimedTransaction,
    Outcome,
    TransactionRepository,
)
from payhook.webhooks.ingest import STORAGE_ERRORS

log = structlog.get_logger(__name__)

RECORD_RETRY_SECONDS = 1.0


class EmbeddedExecutor:
    """Processes due transactions inside this process; any number may share one database."""

    def __init__(
        self, repository: TransactionRepository, processor: Processor, settings: Settings
    ) -> None:
        self._repository = repository
        self._processor = processor
        self._settings = settings
        self._running: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._planned_wake: datetime | None = None
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._recorder: GroupCommitter[Outcome, bool] = GroupCommitter(
            repository.record_outcomes, max_batch=settings.executor_batch_size, name="outcomes"
        )

    def start(self) -> None:
        self._recorder.start()
        self._loop_task = asyncio.create_task(self._loop(), name="executor")

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop claiming, give running steps `grace_seconds`, record what finished."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._running:
            _, unfinished = await asyncio.wait(self._running, timeout=grace_seconds)
            for task in unfinished:  # their leases expire and another executor takes them
                task.cancel()
        await self._recorder.stop()

    def notify_due(self, due_at: datetime) -> None:
        """A hint from the ingest path: wake up sooner if `due_at` is earlier than planned."""
        if self._planned_wake is None or due_at < self._planned_wake:
            self._wake.set()

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                claimed = await self._claim_due()
            except STORAGE_ERRORS as exc:
                log.warning("executor.claim_failed", error=repr(exc))
                await self._sleep(self._settings.executor_poll_seconds)
                continue
            if not claimed:
                await self._sleep_until_next_due()

    async def _claim_due(self) -> int:
        now = datetime.now(UTC)
        next_due = await self._repository.next_due_at(now)
        if next_due is None or next_due > now:
            self._planned_wake = next_due
            return 0
        self._planned_wake = None
        if len(self._running) >= self._settings.executor_concurrency:
            await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
        free = self._settings.executor_concurrency - len(self._running)
        claimed = await self._repository.claim_due(
            now,
            limit=min(free, self._settings.executor_batch_size),
            lease_seconds=self._settings.lease_seconds,
            token=str(uuid.uuid4()),
        )
        for item in claimed:
            task = asyncio.create_task(self._process(item))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return len(claimed)

    async def _process(self, claimed: ClaimedTransaction) -> None:
        outcome = await self._processor.run(claimed)
        await self._record(outcome)

    async def _record(self, outcome: Outcome) -> None:
        deadline = outcome.claimed.claimed_at.timestamp() + self._settings.lease_seconds
        while True:
            try:
                applied = await self._recorder.submit(outcome)
            except STORAGE_ERRORS as exc:
                if datetime.now(UTC).timestamp() > deadline:
                    log.error(
                        "executor.outcome_lost", transaction_id=outcome.claimed.transaction_id
                    )
                    return  # the lease has expired: the row will be claimed and run again
                log.warning("executor.record_failed", error=repr(exc))
                await asyncio.sleep(RECORD_RETRY_SECONDS)
                continue
            if not applied:
                log.warning("executor.claim_lost", transaction_id=outcome.claimed.transaction_id)
            return

    async def _sleep_until_next_due(self) -> None:
        timeout = self._settings.executor_poll_seconds
        if self._planned_wake is not None:
            until_due = (self._planned_wake - datetime.now(UTC)).total_seconds()
            timeout = max(0.0, min(timeout, until_due))
        await self._sleep(timeout)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()
