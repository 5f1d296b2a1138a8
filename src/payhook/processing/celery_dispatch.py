"""The Celery executor, API side: the scheduler dispatches due batches to Celery workers.

The worker side is `celery_worker.py`.

The database stays the source of truth. A message carries only transaction ids, the token
of the claim that dispatched them and the database's deployment id, and goes to that
deployment's own queue (two deployments sharing a Redis never meet); a worker first swaps
that token for its own (so a redelivered, duplicated or stale message does nothing), runs the
steps, and records outcomes under its token.
Losing a message (Redis down, flushed or restarted, a worker killed) costs latency only: the
claim's lease lapses and the scheduler claims and dispatches the rows again.

Settings chosen for this workload (see docs/DEPLOYMENT.md):
- no ETA or countdown tasks: the delay lives in the row, so workers never hold waiting tasks;
- the message is a wake-up call, not the record: the claim's lease, not Redis, decides when work
  is retried, and it does so within PROCESSING_TIMEOUT_SECONDS + 10 s. So messages are
  acknowledged early and Redis's ack emulation (unacked hash, `visibility_timeout`) is off: late
  acknowledgement would only add a redelivery an hour later that the token check then ignores,
  and acknowledging on a connection that dropped mid-task makes kombu kill the worker
  ("Unrecoverable error: AttributeError"), which the fault suite reproduced;
- `worker_prefetch_multiplier=1`: a worker reserves no more batches than it has threads;
- `task_ignore_result`: outcomes are in the database, no result backend;
- publishing retries once, quickly: if Redis is down the claims are handed back at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from celery import Celery
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from payhook.config import Settings
from payhook.processing.scheduler import RunnerUnavailable
from payhook.transactions.records import ClaimedTransaction
from payhook.transactions.repository import TransactionRepository

TASK_NAME = "payhook.process_batch"
QUEUE = "payhook"  # the default only; batches go to queue_for(the database's deployment id)
PUBLISH_ERRORS = (KombuError, RedisError, OSError, TimeoutError)


def queue_for(deployment_id: str) -> str:
    """The queue of one database's batches: two deployments sharing a Redis (staging and
    production, say) then never take each other's messages."""
    return f"{QUEUE}.{deployment_id}"


def new_celery_app() -> Celery:
    """A Celery app that is not the process's current app."""
    return Celery("payhook", set_as_current=False)


def configure(app: Celery, settings: Settings) -> Celery:
    """Point the Celery app at REDIS_URL with the settings this workload needs."""
    app.conf.update(
        broker_url=settings.redis_url,
        broker_transport="payhook.processing.redis_transport:Transport",
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "ack_emulation": False,
            "socket_timeout": 5,
            "socket_connect_timeout": 2,
            # Publishing gives up after one quick retry: the claims are handed back at once and
            # the scheduler tries again on its own backoff, instead of blocking for seconds.
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        },
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=False,
        task_ignore_result=True,
        task_publish_retry=False,
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.worker_concurrency,
        worker_hijack_root_logger=False,
        # payhook writes its own log lines to the real stderr; Celery's stand-in for it (a
        # LoggingProxy, with no `buffer`) made every payhook line logged inside a task raise.
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
    )
    return app


class CeleryRunner:
    """The scheduler's runner when EXECUTOR=celery: sends claimed batches to the workers."""

    # Each message costs a Redis round trip and two database statements on the worker:
    # 50 ms of lateness buys batches fifty times larger at 1,000 transactions/s.
    linger_seconds = 0.05
    # The attempt is counted when a worker takes the batch over (`start_dispatched`).
    claim_starts_attempt = False

    def __init__(self, repository: TransactionRepository, settings: Settings) -> None:
        self._repository = repository
        self._batch_size = settings.celery_batch_size
        self._settings = settings
        self._app = new_celery_app()
        self._deployment: str | None = None

    def start(self) -> None:
        configure(self._app, self._settings)

    async def capacity(self) -> int:
        return self._settings.executor_batch_size

    async def run(self, claimed: Sequence[ClaimedTransaction]) -> None:
        token = claimed[0].claim_token
        ids = [item.transaction_id for item in claimed]
        chunks = [ids[i : i + self._batch_size] for i in range(0, len(ids), self._batch_size)]
        try:
            if self._deployment is None:
                self._deployment = await self._repository.deployment_id()
            await asyncio.to_thread(self._publish, chunks, token, self._deployment)
        except PUBLISH_ERRORS as exc:
            # Nothing of this claim may wait for its lease: hand it all back to be due again.
            # A chunk that did get published finds its token gone and does nothing.
            await self._repository.release(claimed)
            raise RunnerUnavailable(f"could not publish to Redis: {exc!r}") from exc

    async def stop(self) -> None:
        return None

    def _publish(self, chunks: list[list[str]], token: str, deployment_id: str) -> None:
        with self._app.producer_or_acquire() as producer:
            for chunk in chunks:
                self._app.send_task(
                    TASK_NAME,
                    args=[chunk, token, deployment_id],
                    queue=queue_for(deployment_id),
                    producer=producer,
                    retry=False,
                )
