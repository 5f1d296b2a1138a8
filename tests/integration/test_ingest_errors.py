"""Which failures of the ingest path are a 503 "nothing was recorded", and which are bugs (500)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text

from payhook.config import Settings
from payhook.db import create_engine
from payhook.errors import ServiceUnavailable
from payhook.providers.ingest import ProviderIngestor
from payhook.providers.registry import PROVIDERS
from payhook.providers.repository import ProviderEventRepository
from payhook.transactions.records import IngestResult, NewDelivery
from payhook.transactions.repository import TransactionRepository
from payhook.transactions.schemas import TransactionIn
from payhook.webhooks.ingest import Ingestor

pytestmark = pytest.mark.anyio
FIXTURES = Path(__file__).parents[1] / "fixtures"

TRANSACTION = TransactionIn(
    transaction_id="txn_errors",
    source_account="acc_a",
    destination_account="acc_b",
    amount=Decimal("1.50"),
    currency="USD",
)


def ingestor(repository: TransactionRepository) -> Ingestor:
    return Ingestor(repository, delay_seconds=30, max_batch=10)


async def test_a_stopped_ingestor_answers_503(sqlite_url: str) -> None:
    repository = TransactionRepository(create_engine(Settings(database_url=sqlite_url)))
    stopped = ingestor(repository)
    with pytest.raises(ServiceUnavailable, match="nothing was recorded"):
        await stopped.ingest(TRANSACTION, b"{}")
    await repository.dispose()


async def test_storage_failing_answers_503(tmp_path: Path) -> None:
    # A real database without the tables: every statement fails in the driver.
    empty = Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    repository = TransactionRepository(create_engine(empty))
    running = ingestor(repository)
    running.start()
    with pytest.raises(ServiceUnavailable, match="nothing was recorded"):
        await running.ingest(TRANSACTION, b"{}")
    await running.stop()
    await repository.dispose()


async def ingest_through_a_write_raising(
    error: Exception, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ingest one transaction through a running ingestor whose write raises `error`."""
    repository = TransactionRepository(create_engine(Settings(database_url=sqlite_url)))

    async def broken(batch: Sequence[NewDelivery]) -> list[IngestResult]:
        raise error

    monkeypatch.setattr(repository, "ingest", broken)
    running = ingestor(repository)
    running.start()
    try:
        await running.ingest(TRANSACTION, b"{}")
    finally:
        await running.stop()
        await repository.dispose()


async def test_a_bug_in_the_write_path_is_not_blamed_on_storage(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bug = RuntimeError("a bug, not an outage")
    with pytest.raises(RuntimeError, match="a bug, not an outage"):
        await ingest_through_a_write_raising(bug, sqlite_url, monkeypatch)


async def test_a_driver_that_lost_its_connection_state_is_an_outage(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncpg's own words when a connection broke mid-operation during a PostgreSQL restart
    (seen once in the fault suite, answered 500): the write did not happen, so it is a 503."""
    lost = asyncpg.InternalClientError(
        "cannot switch to state 15; another operation (2) is in progress"
    )
    with pytest.raises(ServiceUnavailable, match="nothing was recorded"):
        await ingest_through_a_write_raising(lost, sqlite_url, monkeypatch)


async def test_a_provider_event_gets_a_503_within_the_deadline_while_the_database_is_held(
    sqlite_url: str,
) -> None:
    """A database that stops answering (here: another writer holding SQLite's write lock,
    which payhook would wait on for its 30 s busy timeout) costs a provider's request a 503
    within DATABASE_TIMEOUT_SECONDS, as on the generic endpoint; nothing is stored."""
    path = sqlite_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    engine = create_engine(Settings(database_url=sqlite_url))
    provider = PROVIDERS["stripe"]
    raw = (FIXTURES / "stripe" / "payment_intent.succeeded.json").read_bytes()
    running = ProviderIngestor(
        ProviderEventRepository(engine), delay_seconds=30, max_batch=10, timeout_seconds=1.0
    )
    running.start()
    try:
        started = time.monotonic()
        # The write was under way when the deadline passed, so the 503 cannot promise nothing
        # was stored (the write, abandoned, stored nothing: checked below).
        with pytest.raises(ServiceUnavailable, match="may still have been stored"):
            # The hang guard only: broken, this waits out SQLite's 30 s busy timeout.
            await asyncio.wait_for(running.ingest(provider.parse({}, raw)), timeout=20)
        assert time.monotonic() - started < 20
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        await running.stop()
        await engine.dispose()
    check = create_engine(Settings(database_url=sqlite_url))
    try:
        async with check.connect() as conn:
            stored = (await conn.execute(text("SELECT count(*) FROM provider_events"))).scalar()
    finally:
        await check.dispose()
    assert stored == 0
