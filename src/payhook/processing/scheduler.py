"""The scheduler: the one loop that decides *when* a transaction runs, whoever runs it.

It sleeps until the earliest due time (capped by the poll interval, to see rows other processes
wrote), claims what is due under a lease in one statement, and hands the batch to a runner: the
embedded runner (steps in this process) or the Celery runner (steps on Celery workers). Claiming
lease-expired rows is the same statement, so a crashed runner's work comes back by itself: this
loop is also the reconciler.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

import structlog

from payhook.config import Settings
from payhook.db import STORAGE_ERRORS
from payhook.transactions.records import ClaimedTransaction
from payhook.transactions.repository import TransactionRepository

log = structlog.get_logger(__name__)

MAX_BACKOFF_SECONDS = 5.0


class RunnerUnavailable(Exception):
    """The runner cannot take work now (its broker is down); claims were handed back."""


class Runner(Protocol):
    """Runs claimed transactions; `capacity` bounds how many it takes at once."""

    # How long after the earliest due time to claim, so that rows falling due together travel
    # in one batch; worth it only where handing over a batch costs a round trip.
    linger_seconds: float
    # Whether a claim is the start of the attempt (steps run in this process at once), or only a
    # dispatch whose attempt starts when a worker takes the batch over: a dispatch that never
    # reaches a worker (a message lost with Redis) must cost time, never an attempt.
    claim_starts_attempt: bool

    def start(self) -> None: ...

    async def capacity(self) -> int: ...

    async def run(self, claimed: Sequence[ClaimedTransaction]) -> None: ...

    async def stop(self) -> None: ...


class Scheduler:
    """Claims due transactions in batches and hands them to a runner."""

    def __init__(self, repository: TransactionRepository, runner: Runner, settings: Settings):
        self._repository = repository
        self._runner = runner
        self._settings = settings
        self._wake = asyncio.Event()
        self._planned_wake: datetime | None = None
        self._backlog = False  # the last claim came back full: more is due, no need to ask
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._runner.start()
        self._task = asyncio.create_task(self._loop(), name="scheduler")

    async def stop(self) -> None:
        """Stop claiming, then let the runner finish or hand back what it holds."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self._runner.stop()

    def notify_due(self, due_at: datetime) -> None:
        """A hint from the ingest path: wake up sooner if `due_at` is earlier than planned."""
        if self._planned_wake is None or due_at < self._planned_wake:
            self._wake.set()

    async def _loop(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                claimed = await self._claim_and_run()
                failures = 0
            except (*STORAGE_ERRORS, RunnerUnavailable) as exc:
                failures += 1
                log.warning("scheduler.claim_failed", error=repr(exc), failures=failures)
                await self._sleep(min(MAX_BACKOFF_SECONDS, 0.1 * 2**failures))
                continue
            if not claimed:
                await self._sleep_until_next_due()

    async def _claim_and_run(self) -> int:
        now = datetime.now(UTC)
        if not self._backlog:
            next_due = await self._repository.next_due_at(now)
            if next_due is None or next_due > now:
                self._planned_wake = next_due
                return 0
        self._planned_wake = None
        limit = min(await self._runner.capacity(), self._settings.executor_batch_size)
        claimed = await self._repository.claim_due(
            datetime.now(UTC),
            limit=limit,
            lease_seconds=self._settings.lease_seconds,
            token=str(uuid.uuid4()),
            count_attempt=self._runner.claim_starts_attempt,
        )
        self._backlog = len(claimed) == limit
        if claimed:
            await self._runner.run(claimed)
        return len(claimed)

    async def _sleep_until_next_due(self) -> None:
        timeout = self._settings.executor_poll_seconds
        if self._planned_wake is not None:
            until_due = (self._planned_wake - datetime.now(UTC)).total_seconds()
            until_due += self._runner.linger_seconds
            timeout = max(0.0, min(timeout, until_due))
        await self._sleep(timeout)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()
