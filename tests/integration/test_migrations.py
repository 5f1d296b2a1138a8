"""Migrations carry existing databases forward, and the migrated schema is the models' schema."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from payhook.config import Settings
from payhook.db import Base, create_engine
from payhook.migrate import alembic_config, upgrade
from tests.support.services import PostgresServer

BEFORE_PROVIDERS = "0006_deployment_id"


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database without any table yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = f"m_{uuid.uuid4().hex[:12]}"
    server.psql(f"CREATE DATABASE {name}")
    yield server.url_for(name)
    server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run(url: str, work: Any) -> Any:
    async def go() -> Any:
        engine = create_engine(Settings(database_url=url))
        try:
            async with engine.begin() as conn:
                return await conn.run_sync(work)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def downgrade(url: str, revision: str) -> None:
    def work(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    run(url, work)


OLD_ROWS = """
INSERT INTO transactions (transaction_id, source_account, destination_account, amount, currency,
    status, created_at, due_at, processed_at, attempts)
VALUES ('pi_same_id', 'acc_a', 'acc_b', '150.50', 'INR', 'PROCESSED',
    '2026-01-01 00:00:00', '2026-01-01 00:00:30', '2026-01-01 00:00:31', 1);
INSERT INTO deliveries (transaction_id, received_at, outcome, raw_body, signature)
VALUES ('pi_same_id', '2026-01-01 00:00:00', 'accepted', 'x', 'none');
INSERT INTO processing_attempts (transaction_id, attempt, started_at, finished_at, outcome)
VALUES ('pi_same_id', 1, '2026-01-01 00:00:30', '2026-01-01 00:00:31', 'succeeded')
"""


def seed(connection: Connection) -> None:
    for statement in OLD_ROWS.split(";"):
        connection.execute(text(statement))


def schema_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def test_an_old_database_is_carried_forward(empty_url: str) -> None:
    asyncio.run(upgrade(Settings(database_url=empty_url), BEFORE_PROVIDERS))
    run(empty_url, seed)
    asyncio.run(upgrade(Settings(database_url=empty_url)))

    def check(connection: Connection) -> None:
        row = connection.execute(text("SELECT * FROM transactions")).mappings().one()
        assert (row["transaction_id"], row["provider"], row["status"]) == (
            "pi_same_id",
            "",
            "PROCESSED",
        )
        assert row["payment_state"] is None
        assert row["disputed"] is None
        # The same id from a provider is another transaction now.
        connection.execute(
            text(
                "INSERT INTO transactions (transaction_id, provider, amount, currency, status, "
                "created_at, due_at, attempts, payment_state) VALUES ('pi_same_id', 'stripe', "
                "'10.99', 'USD', 'PROCESSING', '2026-01-02 00:00:00', '2026-01-02 00:00:30', 0, "
                "'captured')"
            )
        )
        count = connection.execute(text("SELECT count(*) FROM transactions")).scalar()
        assert count == 2
        assert connection.execute(text("SELECT provider FROM deliveries")).scalar() == ""

    run(empty_url, check)
    assert run(empty_url, schema_differences) == []


def test_downgrade_keeps_the_generic_rows(empty_url: str) -> None:
    asyncio.run(upgrade(Settings(database_url=empty_url), BEFORE_PROVIDERS))
    run(empty_url, seed)
    asyncio.run(upgrade(Settings(database_url=empty_url)))
    downgrade(empty_url, BEFORE_PROVIDERS)

    def count(connection: Connection) -> int:
        return int(connection.execute(text("SELECT count(*) FROM transactions")).scalar_one())

    assert run(empty_url, count) == 1
    asyncio.run(upgrade(Settings(database_url=empty_url)))
    assert run(empty_url, schema_differences) == []
