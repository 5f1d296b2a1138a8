"""Two deployments (staging and production, say) sharing one Redis by mistake: neither may take
the other's batches (issue 13, finding 12). Each database has its own deployment id, and each
deployment's Celery queue is named after it.

Before, both worker pools consumed one `payhook` queue: a worker given the other database's
batch found no rows and dropped it silently, and those transactions waited for their leases
(PROCESSING_TIMEOUT_SECONDS + 10 s) again and again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import pytest

from payhook.config import Settings
from payhook.processing.celery_dispatch import TASK_NAME, configure, new_celery_app, queue_for
from tests.conftest import TEMPLATE
from tests.support.processes import PayhookProcess
from tests.support.services import PostgresServer, RedisServer

pytestmark = pytest.mark.e2e
PER_DEPLOYMENT = 60
# With the leases at their default (40 s), one batch taken by the other side keeps its
# transactions waiting that long; a correct topology processes all of them in about a second.
WITHIN_SECONDS = 20.0


def body(transaction_id: str) -> bytes:
    return (
        f'{{"transaction_id": "{transaction_id}", "source_account": "a", '
        '"destination_account": "b", "amount": 1, "currency": "USD"}'
    ).encode()


@dataclass
class Deployment:
    api: PayhookProcess
    worker: PayhookProcess
    deployment_id: str


@pytest.fixture(scope="module")
def deployments(
    postgres: PostgresServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Deployment]]:
    """Both deployments, started once for the module's tests (each test uses its own ids)."""
    found: list[Deployment] = []
    with ExitStack() as stack:
        for name in ("staging", "production"):
            database = f"shared_{name}_{uuid.uuid4().hex[:8]}"
            postgres.psql(f"CREATE DATABASE {database} TEMPLATE {TEMPLATE}")
            # A copy of the template would share its deployment id; a migrated database has its
            # own (what `payhook migrate` gives every new database).
            postgres.psql("UPDATE deployment SET id = gen_random_uuid()::text", database=database)
            stack.callback(postgres.psql, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            env = {
                "DATABASE_URL": postgres.url_for(database),
                "REDIS_URL": redis_server.url,
                "PROCESSING_DELAY_SECONDS": "0.5",
                "WORKER_CONCURRENCY": "4",
            }
            work = tmp_path_factory.mktemp(name)
            worker = PayhookProcess.worker(env, work).start()
            stack.callback(worker.stop)
            api = PayhookProcess.serve(env, work).start()
            stack.callback(api.stop)
            deployment_id = postgres.psql("SELECT id FROM deployment", database=database).strip()
            found.append(Deployment(api, worker, deployment_id))
        yield found


def test_deployments_sharing_redis_process_only_their_own(deployments: list[Deployment]) -> None:
    sent: dict[str, list[str]] = {}
    for api in (deployment.api for deployment in deployments):
        keys = [f"shared_{uuid.uuid4().hex[:12]}" for _ in range(PER_DEPLOYMENT)]
        with httpx.Client(base_url=api.base_url, timeout=10) as client:
            for key in keys:
                answer = client.post(
                    "/v1/webhooks/transactions",
                    content=body(key),
                    headers={"content-type": "application/json"},
                )
                assert answer.status_code == 202, answer.text
        sent[api.base_url] = keys
    deadline = time.monotonic() + WITHIN_SECONDS
    waiting = dict(sent)
    while waiting and time.monotonic() < deadline:
        for url, keys in list(waiting.items()):
            with httpx.Client(base_url=url, timeout=10) as client:
                left = [
                    k
                    for k in keys
                    if client.get(f"/v1/transactions/{k}").json()[0]["status"] != "PROCESSED"
                ]
            if left:
                waiting[url] = left
            else:
                del waiting[url]
        time.sleep(0.5)
    assert not waiting, {url: len(keys) for url, keys in waiting.items()}


def logged(process: PayhookProcess, event: str, since: int) -> bool:
    """Whether the process logged `event` after the first `since` bytes of its log."""
    return event.encode() in process.log_path.read_bytes()[since:]


def test_a_batch_of_another_deployment_is_handed_on_loudly(
    deployments: list[Deployment], redis_server: RedisServer
) -> None:
    """Only two databases sharing a deployment id could put one's batch on the other's queue;
    if it happens, the worker says so and passes the batch on to its own deployment's queue."""
    mine, theirs = deployments
    # The workers served the module's other tests too: only what they log from here on counts.
    mine_since, theirs_since = (d.worker.log_path.stat().st_size for d in (mine, theirs))
    app = configure(
        new_celery_app(),
        Settings(_env_file=None, redis_url=redis_server.url),
    )
    app.send_task(
        TASK_NAME,
        args=[["txn_theirs"], "their-claim-token", theirs.deployment_id],
        queue=queue_for(mine.deployment_id),
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (
        logged(mine.worker, "worker.foreign_batch", mine_since)
        and logged(theirs.worker, "worker.stale_skipped", theirs_since)
    ):
        time.sleep(0.2)
    assert logged(mine.worker, "worker.foreign_batch", mine_since)
    # It reached their worker, which found no claim of that token (the id is made up here).
    assert logged(theirs.worker, "worker.stale_skipped", theirs_since)
