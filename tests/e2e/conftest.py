from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from payhook.config import Settings
from payhook.schema import upgrade
from tests.conftest import TEMPLATE
from tests.support.processes import PayhookProcess
from tests.support.services import PostgresServer

DELAY_SECONDS = 1.5


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def e2e_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database shared by one module's tests (each test uses its own transaction ids)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('e2e') / 'payhook.db'}"
        asyncio.run(upgrade(Settings(database_url=url)))
        yield url
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    postgres.psql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield postgres.url_for(name)
    postgres.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def server_env(database_url: str, work: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "PROCESSING_DELAY_SECONDS": str(DELAY_SECONDS),
        "PROCESSING_STEP": "tests.support.steps:record_and_script",
        "PAYHOOK_TEST_CALLS": str(work / "calls.txt"),
        "RETRY_BACKOFF_SECONDS": "0.2",
    }


@pytest.fixture(scope="module")
def server(
    e2e_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PayhookProcess]:
    work = tmp_path_factory.mktemp("server")
    process = PayhookProcess.serve(server_env(e2e_database_url, work), work).start()
    yield process
    process.stop()


@pytest.fixture
def calls_file(server: PayhookProcess) -> Path:
    return Path(server.env["PAYHOOK_TEST_CALLS"])
