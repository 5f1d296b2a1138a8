"""The Celery executor's safety rules, against real PostgreSQL: stale messages do nothing, and
claims that cannot be published are handed back at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from payhook.config import Settings
from payhook.db import create_engine
from payhook.processing.celery_dispatch import CeleryRunner
from payhook.processing.celery_worker import WorkerRuntime
from payhook.processing.processor import Processor
from payhook.processing.scheduler import RunnerUnavailable
from payhook.transactions.records import ClaimedTransaction, NewDelivery
from payhook.transactions.repository import TransactionRepository
from payhook.transactions.schemas import TransactionIn
from tests.support.services import free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
async def pg_repository(postgres_url: str) -> AsyncIterator[TransactionRepository]:
    engine = create_engine(Settings(_env_file=None, database_url=postgres_url))
    yield TransactionRepository(engine)
    await engine.dispose()


async def due_rows(repository: TransactionRepository, count: int) -> list[str]:
    now = datetime.now(UTC)
    keys = [f"c{i}" for i in range(count)]
    await repository.ingest(
        [
            NewDelivery(
                TransactionIn(
                    transaction_id=key,
                    source_account="s",
                    destination_account="d",
                    amount=Decimal(2),
                    currency="USD",
                ),
                b"{}",
                now,
                now,
            )
            for key in keys
        ]
    )
    return keys


async def test_a_redelivered_or_stale_message_does_nothing(
    pg_repository: TransactionRepository,
) -> None:
    calls: list[str] = []

    async def step(transaction: ClaimedTransaction) -> None:
        calls.append(transaction.transaction_id)

    settings = Settings(_env_file=None)
    keys = await due_rows(pg_repository, 3)
    claimed = await pg_repository.claim_due(
        datetime.now(UTC), limit=10, lease_seconds=60, token="dispatch-1", count_attempt=False
    )
    worker = WorkerRuntime(asyncio.get_running_loop(), pg_repository, Processor(step, settings), 60)
    assert await worker.process(keys, "dispatch-1") == 3
    assert await worker.process(keys, "dispatch-1") == 0  # Redis redelivered it
    assert await worker.process(keys, "some-old-token") == 0
    assert sorted(calls) == keys
    assert len(claimed) == 3
    for key in keys:
        row = await pg_repository.get(key)
        assert row is not None
        assert (row.status, row.attempts) == ("PROCESSED", 1)


async def test_a_lapsed_dispatch_is_not_run_by_its_late_message(
    pg_repository: TransactionRepository,
) -> None:
    calls: list[int] = []

    async def step(transaction: ClaimedTransaction) -> None:
        calls.append(transaction.attempt)

    settings = Settings(_env_file=None)
    keys = await due_rows(pg_repository, 1)
    now = datetime.now(UTC)
    await pg_repository.claim_due(
        now, limit=1, lease_seconds=1, token="lost-in-redis", count_attempt=False
    )
    later = now + timedelta(seconds=2)
    await pg_repository.claim_due(
        later, limit=1, lease_seconds=60, token="re-dispatched", count_attempt=False
    )
    worker = WorkerRuntime(asyncio.get_running_loop(), pg_repository, Processor(step, settings), 60)
    assert await worker.process(keys, "lost-in-redis") == 0
    assert await worker.process(keys, "re-dispatched") == 1
    assert calls == [1]  # the lost message spent no attempt: only a worker starts one


async def test_claims_are_handed_back_when_redis_is_down(
    pg_repository: TransactionRepository, postgres_url: str
) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    settings = Settings(_env_file=None, database_url=postgres_url, redis_url=dead_redis)
    runner = CeleryRunner(pg_repository, settings)
    runner.start()
    runner_counts = runner.claim_starts_attempt
    await due_rows(pg_repository, 5)
    claimed = await pg_repository.claim_due(
        datetime.now(UTC), limit=10, lease_seconds=60, token="t", count_attempt=runner_counts
    )
    with pytest.raises(RunnerUnavailable):
        await runner.run(claimed)
    again = await pg_repository.claim_due(datetime.now(UTC), limit=10, lease_seconds=60, token="t2")
    assert len(again) == 5, "released claims are due again at once"
    assert {item.attempt for item in again} == {1}, "an unpublished claim is not an attempt"
