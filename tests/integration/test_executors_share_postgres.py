"""Several executor processes on one PostgreSQL database never process a transaction twice."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select

from payhook.config import Settings
from payhook.db import create_engine
from payhook.transactions.models import transactions
from payhook.transactions.records import NewDelivery
from payhook.transactions.repository import TransactionRepository
from payhook.transactions.schemas import TransactionIn
from tests.support.processes import PayhookProcess

COUNT = 2000


async def insert_due_soon(url: str, seconds: float) -> None:
    engine = create_engine(Settings(_env_file=None, database_url=url))
    repository = TransactionRepository(engine)
    now = datetime.now(UTC)
    batch = [
        NewDelivery(
            TransactionIn(
                transaction_id=f"multi-{i:05d}",
                source_account="s",
                destination_account="d",
                amount=Decimal(i + 1),
                currency="USD",
            ),
            b"{}",
            now,
            now + timedelta(seconds=seconds),
        )
        for i in range(COUNT)
    ]
    for start in range(0, COUNT, 500):
        await repository.ingest(batch[start : start + 500])
    await engine.dispose()


async def processed_count(url: str) -> int:
    engine = create_engine(Settings(_env_file=None, database_url=url))
    async with engine.connect() as conn:
        count = await conn.scalar(select(func.count()).where(transactions.c.status == "PROCESSED"))
    await engine.dispose()
    return int(count or 0)


def test_two_workers_process_2000_transactions_exactly_once(
    postgres_url: str, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.txt"
    env = {
        "DATABASE_URL": postgres_url,
        "PROCESSING_STEP": "tests.support.steps:record_and_script",
        "PAYHOOK_TEST_CALLS": str(calls),
        # Small batches so both workers get a share of the same due rows.
        "EXECUTOR_BATCH_SIZE": "50",
    }
    workers = [PayhookProcess.worker(env, tmp_path, f"worker{i}").start() for i in range(2)]
    try:
        asyncio.run(insert_due_soon(postgres_url, seconds=1.0))
        deadline = time.monotonic() + 60
        while asyncio.run(processed_count(postgres_url)) < COUNT:
            assert time.monotonic() < deadline, "not all processed within 60 s"
            time.sleep(0.2)
    finally:
        for worker in workers:
            worker.stop()
    lines = calls.read_text().split("\n")[:-1]
    per_id = Counter(line.split()[0] for line in lines)
    assert len(per_id) == COUNT
    assert set(per_id.values()) == {1}
    per_worker = Counter(line.split()[2] for line in lines)
    assert len(per_worker) == 2, f"one worker did everything: {per_worker}"
