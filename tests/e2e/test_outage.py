"""A database outage: a retryable 503 and nothing half-stored; the provider's retry then lands."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from payhook.config import Settings
from payhook.migrate import upgrade
from tests.conftest import own_postgres_or_skip
from tests.e2e.conftest import server_env
from tests.support.payloads import transaction_body
from tests.support.processes import PayhookProcess
from tests.support.services import PostgresServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A cluster of this test's own, since the test stops it."""
    with own_postgres_or_skip() as server:
        yield server


def test_database_down_answers_503_with_retry_after_and_stores_nothing(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    url = own_postgres.url
    asyncio.run(upgrade(Settings(database_url=url)))
    server = PayhookProcess.serve(server_env(url, tmp_path), tmp_path).start()
    key = f"outage-{uuid.uuid4().hex}"
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            assert (
                client.post(
                    "/v1/webhooks/transactions", json=transaction_body("before")
                ).status_code
                == 202
            )
            own_postgres.stop("immediate")
            during = client.post("/v1/webhooks/transactions", json=transaction_body(key))
            assert during.status_code == 503
            assert int(during.headers["retry-after"]) > 0
            assert during.headers["content-type"] == "application/problem+json"
            assert client.get(f"/v1/transactions/{key}").status_code == 503
            assert client.get("/").status_code == 200
            own_postgres.start()
            retried = client.post("/v1/webhooks/transactions", json=transaction_body(key))
            assert retried.status_code == 202
            assert retried.json()["duplicate"] is False  # the 503 stored nothing
            assert client.get(f"/v1/transactions/{key}").status_code == 200
    finally:
        server.stop()
