from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from payhook.config import Settings
from payhook.migrate import upgrade
from tests.conftest import TEMPLATE, redis_url
from tests.support.processes import PayhookProcess, started
from tests.support.services import PostgresServer

DELAY_SECONDS = 1.5


@contextmanager
def module_database(kind: str, request: pytest.FixtureRequest, tmp: Path) -> Iterator[str]:
    """A migrated database shared by one module's tests (each test uses its own ids)."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'payhook.db'}"
        asyncio.run(upgrade(Settings(database_url=url)))
        yield url
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    postgres.psql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield postgres.url_for(name)
    postgres.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def e2e_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with module_database(request.param, request, tmp_path_factory.mktemp("e2e")) as url:
        yield url


def server_env(database_url: str, work: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "PROCESSING_DELAY_SECONDS": str(DELAY_SECONDS),
        "PROCESSING_STEP": "tests.support.steps:record_and_script",
        "PAYHOOK_TEST_CALLS": str(work / "calls.txt"),
        "RETRY_BACKOFF_SECONDS": "0.2",
    }


@contextmanager
def topology(
    request: pytest.FixtureRequest, work: Path, **extra_env: str
) -> Iterator[PayhookProcess]:
    """The API on `request.param` ("sqlite", "postgres" or "postgres+celery" with a worker)."""
    kind, _, executor = request.param.partition("+")
    with module_database(kind, request, work) as url:
        env = {**server_env(url, work), **extra_env}
        with started(env, work, redis_url(request) if executor == "celery" else None) as running:
            yield running.api


@pytest.fixture(scope="module", params=["sqlite", "postgres", "postgres+celery"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PayhookProcess]:
    """The API on each topology: embedded executor on SQLite or PostgreSQL, or Celery workers."""
    with topology(request, tmp_path_factory.mktemp("server")) as api:
        yield api


@pytest.fixture
def calls_file(server: PayhookProcess) -> Path:
    return Path(server.env["PAYHOOK_TEST_CALLS"])
