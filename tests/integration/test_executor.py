"""The embedded executor end to end in-process: on time, retried with backoff, given up."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from payhook.config import Settings
from payhook.processing import batch, embedded
from payhook.processing.embedded import EmbeddedRunner
from payhook.processing.processor import Processor
from payhook.processing.scheduler import Scheduler
from payhook.transactions.models import processing_attempts
from payhook.transactions.records import ClaimedTransaction, NewDelivery, Outcome
from payhook.transactions.repository import TransactionRepository
from payhook.transactions.schemas import TransactionIn

pytestmark = pytest.mark.anyio
Step = Callable[[ClaimedTransaction], object]


def settings_for(url: str) -> Settings:
    return Settings(
        _env_file=None,
        database_url=url,
        retry_backoff_seconds=0.1,
        executor_poll_seconds=0.05,
    )


async def add(repository: TransactionRepository, key: str, delay: float = 0.0) -> datetime:
    transaction = TransactionIn(
        transaction_id=key,
        source_account="s",
        destination_account="d",
        amount=Decimal(1),
        currency="USD",
    )
    now = datetime.now(UTC)
    due = now + timedelta(seconds=delay)
    await repository.ingest([NewDelivery(transaction, b"{}", now, due)])
    return due


class Calls:
    """A step that records calls and fails on purpose for some ids."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.times: dict[str, datetime] = {}

    async def __call__(self, transaction: ClaimedTransaction) -> None:
        self.count[transaction.transaction_id] += 1
        self.times.setdefault(transaction.transaction_id, datetime.now(UTC))
        if transaction.transaction_id.startswith("always") or (
            transaction.transaction_id.startswith("twice") and transaction.attempt <= 2
        ):
            raise RuntimeError(f"no luck on attempt {transaction.attempt}")


@pytest.fixture
async def running(
    repository: TransactionRepository, database_url: str
) -> AsyncIterator[tuple[TransactionRepository, Calls]]:
    calls = Calls()
    settings = settings_for(database_url)
    runner = EmbeddedRunner(repository, Processor(calls, settings), settings)
    executor = Scheduler(repository, runner, settings)
    executor.start()
    try:
        yield repository, calls
    finally:
        await executor.stop()


async def wait_for_status(repository: TransactionRepository, key: str, status: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = await repository.get(key)
        if row is not None and row.status == status:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{key} never became {status}")


async def test_processed_at_its_due_time_not_before(
    running: tuple[TransactionRepository, Calls],
) -> None:
    repository, calls = running
    due = await add(repository, "on-time", delay=0.5)
    await wait_for_status(repository, "on-time", "PROCESSED")
    row = await repository.get("on-time")
    assert row is not None
    assert row.processed_at is not None
    assert calls.times["on-time"] >= due
    # Only "not held back by something else"; lateness itself is measured by `make bench`.
    assert row.processed_at - due < timedelta(seconds=5)
    assert calls.count["on-time"] == 1


async def test_failing_twice_then_succeeding_ends_processed(
    running: tuple[TransactionRepository, Calls],
) -> None:
    repository, calls = running
    await add(repository, "twice-1")
    await wait_for_status(repository, "twice-1", "PROCESSED")
    assert calls.count["twice-1"] == 3
    outcomes = await attempt_outcomes(repository, "twice-1")
    assert outcomes == [(1, "failed"), (2, "failed"), (3, "succeeded")]


async def test_always_failing_ends_failed_after_four_attempts(
    running: tuple[TransactionRepository, Calls],
) -> None:
    repository, calls = running
    await add(repository, "always-1")
    await wait_for_status(repository, "always-1", "FAILED")
    row = await repository.get("always-1")
    assert row is not None
    assert (row.attempts, row.processed_at) == (4, None)
    assert row.last_error == "RuntimeError: no luck on attempt 4"
    assert calls.count["always-1"] == 4
    assert [o for _, o in await attempt_outcomes(repository, "always-1")] == ["failed"] * 4


async def attempt_outcomes(repository: TransactionRepository, key: str) -> list[tuple[int, str]]:
    async with repository._engine.connect() as conn:
        rows = await conn.execute(
            select(processing_attempts.c.attempt, processing_attempts.c.outcome)
            .where(processing_attempts.c.transaction_id == key)
            .order_by(processing_attempts.c.attempt)
        )
        return [(row.attempt, row.outcome) for row in rows]


async def test_a_slot_is_free_once_its_step_finishes_not_its_whole_batch(
    repository: TransactionRepository, database_url: str
) -> None:
    """Under a backlog the next claim must not wait for a batch's slowest step."""
    release = asyncio.Event()

    async def step(transaction: ClaimedTransaction) -> None:
        if transaction.transaction_id.startswith("slow"):
            await release.wait()

    settings = Settings(_env_file=None, database_url=database_url, executor_concurrency=4)
    runner = EmbeddedRunner(repository, Processor(step, settings), settings)
    for key in ("slow-1", "fast-1", "slow-2", "fast-2"):
        await add(repository, key)
    for token in ("batch-1", "batch-2"):
        limit = await runner.capacity()
        assert limit == 2  # at most half of the slots a claim
        claimed = await repository.claim_due(
            datetime.now(UTC), limit=limit, lease_seconds=60, token=token
        )
        assert len(claimed) == 2
        await runner.run(claimed)
    # All slots are taken and both batches wait for a slow step: the claim may go on as soon
    # as a fast step has finished (before, it waited for a whole batch, here forever).
    assert await asyncio.wait_for(runner.capacity(), timeout=10) >= 1
    for key in ("slow-1", "slow-2"):
        assert (await repository.get(key)).status == "PROCESSING"  # type: ignore[union-attr]
    release.set()
    await runner.stop()
    for key in ("slow-1", "fast-1", "slow-2", "fast-2"):
        row = await repository.get(key)
        assert row is not None
        assert (row.status, row.attempts) == ("PROCESSED", 1)


async def test_a_slow_step_holds_back_neither_the_others_outcomes_nor_their_processed_at(
    repository: TransactionRepository, database_url: str
) -> None:
    """Finished steps are recorded while a slow one of their batch still runs (at least every
    RECORD_EVERY_SECONDS), so a crash meanwhile would not send them again."""
    release = asyncio.Event()

    async def step(transaction: ClaimedTransaction) -> None:
        if transaction.transaction_id == "slow":
            await release.wait()

    settings = Settings(_env_file=None, database_url=database_url)
    runner = EmbeddedRunner(repository, Processor(step, settings), settings)
    for key in ("slow", "fast-1", "fast-2"):
        await add(repository, key)
    claimed = await repository.claim_due(datetime.now(UTC), limit=3, lease_seconds=60, token="t")
    assert len(claimed) == 3
    await runner.run(claimed)
    try:
        await wait_for_status(repository, "fast-1", "PROCESSED")
        await wait_for_status(repository, "fast-2", "PROCESSED")
        assert (await repository.get("slow")).status == "PROCESSING"  # type: ignore[union-attr]
    finally:
        release.set()
        await runner.stop()
    slow = await repository.get("slow")
    fast = await repository.get("fast-1")
    assert slow is not None
    assert fast is not None
    assert slow.status == "PROCESSED"
    assert fast.processed_at is not None
    assert slow.processed_at is not None
    assert fast.processed_at < slow.processed_at


class FastAndSlow:
    """A batch of two claimed rows: "fast" finishes at once, "slow" runs until cancelled."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.slow_started = asyncio.Event()
        self.fast_finished = asyncio.Event()
        self.slow_cancelled = asyncio.Event()  # with its batch

    async def __call__(self, transaction: ClaimedTransaction) -> None:
        self.calls[transaction.transaction_id] += 1
        if transaction.transaction_id == "slow":
            self.slow_started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.slow_cancelled.set()
                raise
        self.fast_finished.set()

    async def start(self, repository: TransactionRepository, settings: Settings) -> EmbeddedRunner:
        runner = EmbeddedRunner(repository, Processor(self, settings), settings)
        for key in ("slow", "fast"):
            await add(repository, key)
        claimed = await repository.claim_due(
            datetime.now(UTC), limit=2, lease_seconds=60, token="t"
        )
        assert len(claimed) == 2
        await runner.run(claimed)
        await asyncio.wait_for(
            asyncio.gather(self.slow_started.wait(), self.fast_finished.wait()), 30
        )
        return runner


async def assert_fast_recorded_slow_left_to_its_lease(
    repository: TransactionRepository, calls: Counter[str]
) -> None:
    fast = await repository.get("fast")
    assert fast is not None
    assert (fast.status, fast.attempts, fast.claim_token) == ("PROCESSED", 1, None)
    assert await attempt_outcomes(repository, "fast") == [(1, "succeeded")]
    slow = await repository.get("slow")
    assert slow is not None
    assert (slow.status, slow.processed_at, slow.claim_token) == ("PROCESSING", None, "t")
    assert await attempt_outcomes(repository, "slow") == []
    # Once the lease lapses (a restarted executor), only the slow step is claimed again.
    later = datetime.now(UTC) + timedelta(seconds=61)
    again = await repository.claim_due(later, limit=2, lease_seconds=60, token="t2")
    assert [item.transaction_id for item in again] == ["slow"]
    assert calls == Counter({"slow": 1, "fast": 1})


async def test_a_stop_records_the_steps_that_finished_and_leaves_the_running_one_to_its_lease(
    repository: TransactionRepository, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A graceful stop cancels a batch while a slow step runs: the step that finished meanwhile,
    whose outcome waited for the batch's next periodic record, is recorded before the batch
    ends, so it is not sent again after a restart; the slow step is left to its lease."""
    # The periodic record cannot come before the stop: only the stop can record the fast step.
    monkeypatch.setattr(batch, "RECORD_EVERY_SECONDS", 3600.0)
    monkeypatch.setattr(embedded, "STOP_GRACE_SECONDS", 0.1)
    steps = FastAndSlow()
    runner = await steps.start(repository, Settings(_env_file=None, database_url=database_url))
    # Generous: only a stop that never ends (or waits out the lease) misses it.
    await asyncio.wait_for(runner.stop(), 30)
    await assert_fast_recorded_slow_left_to_its_lease(repository, steps.calls)


async def test_a_stop_lets_an_outcome_write_in_flight_end(
    repository: TransactionRepository, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop cancels the batch while its periodic record of the fast step is being written:
    the write is not cut short, and the stop waits for it."""
    monkeypatch.setattr(embedded, "STOP_GRACE_SECONDS", 0.1)
    writing, go = asyncio.Event(), asyncio.Event()
    record_outcomes = repository.record_outcomes

    async def slow_write(outcomes: Sequence[Outcome]) -> list[bool]:
        writing.set()
        await go.wait()
        return await record_outcomes(outcomes)

    monkeypatch.setattr(repository, "record_outcomes", slow_write)
    steps = FastAndSlow()
    runner = await steps.start(repository, Settings(_env_file=None, database_url=database_url))
    await asyncio.wait_for(writing.wait(), 30)  # the fast step's periodic record
    stopping = asyncio.create_task(runner.stop())
    await asyncio.wait_for(steps.slow_cancelled.wait(), 30)  # the batch is cancelled
    go.set()
    await asyncio.wait_for(stopping, 30)
    await assert_fast_recorded_slow_left_to_its_lease(repository, steps.calls)


async def test_a_stop_ends_though_the_database_does_not_answer(
    repository: TransactionRepository, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording at a stop is bounded by DATABASE_TIMEOUT_SECONDS: a write that hangs (a
    partition) is given up, the rows left to their leases, and the stop ends."""
    monkeypatch.setattr(batch, "RECORD_EVERY_SECONDS", 3600.0)
    monkeypatch.setattr(embedded, "STOP_GRACE_SECONDS", 0.1)
    hung = asyncio.Event()

    async def hanging_write(outcomes: Sequence[Outcome]) -> list[bool]:
        hung.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    monkeypatch.setattr(repository, "record_outcomes", hanging_write)
    settings = Settings(_env_file=None, database_url=database_url, database_timeout_seconds=1)
    steps = FastAndSlow()
    runner = await steps.start(repository, settings)
    # Without the bound the write would hang for ever (it retries only on errors): 30 s is a
    # margin, not a measure.
    await asyncio.wait_for(runner.stop(), 30)
    assert hung.is_set()
    for key in ("fast", "slow"):
        row = await repository.get(key)
        assert row is not None
        assert (row.status, row.claim_token) == ("PROCESSING", "t")
