"""Shared fixtures: real PostgreSQL (and Redis) started by the harness, databases per test."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from payhook.config import Settings
from payhook.migrate import upgrade
from tests.support.services import (
    PostgresServer,
    RedisServer,
    ServiceUnavailableHere,
    throwaway_postgres,
)

IN_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")  # as CI systems set it
TEMPLATE = "payhook_template"


def missing_service(reason: str) -> None:
    """Skip with the reason on a developer machine; in CI a missing service is a failure."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (a CI job's timeout, `kill`) ends the run as Ctrl-C does, so fixtures' finalizers
    still stop the servers they started: those run in sessions of their own, and nothing else
    stops them (each xdist worker configures itself too)."""
    signal.signal(signal.SIGTERM, _interrupted)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


REAL_TIME_GROUP = "real-time"


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Iterator[None]:
    """How `make test` shares the suite among pytest-xdist workers (`--dist loadgroup`).

    A module's tests stay on one worker, so its module-scoped servers start once. The tests
    marked `real_time` (outages, partitions, kill -9 on a clock) form one group, run one after
    another on one worker (`make test` runs them on their own, after the others). The groups are
    marked before xdist reads them.
    """
    for item in items:
        item.add_marker(pytest.mark.xdist_group(xdist_group(item)))
    yield
    if config.getoption("loadgroup", False):  # an xdist worker, in a `--dist loadgroup` run
        ungrouped = [item.nodeid for item in items if "@" not in item.nodeid]
        if ungrouped:
            raise pytest.UsageError(f"pytest-xdist did not group {ungrouped[0]} (issue 1386?)")


def xdist_group(item: pytest.Item) -> str:
    if item.get_closest_marker("real_time") is not None:
        return REAL_TIME_GROUP
    return item.nodeid.partition("::")[0]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL cluster for the session, with a migrated template database."""
    with own_postgres_or_skip() as server:
        server.psql(f"CREATE DATABASE {TEMPLATE}")
        asyncio.run(upgrade(Settings(database_url=server.url_for(TEMPLATE))))
        yield server


@contextmanager
def own_postgres_or_skip() -> Iterator[PostgresServer]:
    """A cluster of the caller's own (a test that stops it needs one); see missing_service."""
    try:
        with throwaway_postgres() as server:
            yield server
    except ServiceUnavailableHere as exc:
        missing_service(str(exc))


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh, migrated database cloned from the template, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres.psql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield postgres.url_for(name)
    postgres.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'payhook.db'}"
    asyncio.run(upgrade(Settings(database_url=url)))
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs on both databases."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    path: str = request.getfixturevalue("sqlite_url")
    return path


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with own_redis_or_skip() as server:
        yield server


def redis_url(request: pytest.FixtureRequest) -> str:
    """The session's Redis server's URL, the server started on first use."""
    redis: RedisServer = request.getfixturevalue("redis_server")
    return redis.url


@contextmanager
def own_redis_or_skip() -> Iterator[RedisServer]:
    try:
        server = RedisServer.create()
    except ServiceUnavailableHere as exc:
        missing_service(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.stop()
