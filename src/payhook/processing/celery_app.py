"""The Celery executor: the scheduler dispatches due batches to Celery workers over Redis.

The database stays the source of truth. A message carries only transaction ids and the token
of the claim that dispatched them; a worker first swaps that token for its own (so a redelivered,
duplicated or stale message does nothing), runs the steps, and records outcomes under its token.
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
import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from celery import Celery
from celery.signals import worker_shutdown
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from payhook.config import Settings
from payhook.db import create_engine
from payhook.processing.processor import Processor, record_until_lease_lapses
from payhook.processing.scheduler import RunnerUnavailable
from payhook.processing.steps import load_step
from payhook.transactions.records import ClaimedTransaction
from payhook.transactions.repository import TransactionRepository

log = structlog.get_logger(__name__)

TASK_NAME = "payhook.process_batch"
QUEUE = "payhook"
PUBLISH_ERRORS = (KombuError, RedisError, OSError, TimeoutError)

celery_app = Celery("payhook", set_as_current=False)


def configure(settings: Settings) -> Celery:
    """Point the Celery app at REDIS_URL with the settings this workload needs."""
    celery_app.conf.update(
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
        worker_send_task_events=False,
    )
    celery_app.conf.payhook_settings = settings
    return celery_app


class CeleryRunner:
    """The scheduler's runner when EXECUTOR=celery: sends claimed batches to the workers."""

    # Each message costs a Redis round trip and two database statements on the worker:
    # 50 ms of lateness buys batches fifty times larger at 1,000 transactions/s.
    linger_seconds = 0.05

    def __init__(self, repository: TransactionRepository, settings: Settings) -> None:
        self._repository = repository
        self._batch_size = settings.celery_batch_size
        self._settings = settings

    def start(self) -> None:
        configure(self._settings)

    async def capacity(self) -> int:
        return self._settings.executor_batch_size

    async def run(self, claimed: Sequence[ClaimedTransaction]) -> None:
        token = claimed[0].claim_token
        ids = [item.transaction_id for item in claimed]
        chunks = [ids[i : i + self._batch_size] for i in range(0, len(ids), self._batch_size)]
        try:
            await asyncio.to_thread(self._publish, chunks, token)
        except PUBLISH_ERRORS as exc:
            # Nothing of this claim may wait for its lease: hand it all back to be due again.
            # A chunk that did get published finds its token gone and does nothing.
            await self._repository.release(claimed)
            raise RunnerUnavailable(f"could not publish to Redis: {exc!r}") from exc

    async def stop(self) -> None:
        return None

    def _publish(self, chunks: list[list[str]], token: str) -> None:
        with celery_app.producer_or_acquire() as producer:
            for chunk in chunks:
                celery_app.send_task(TASK_NAME, args=[chunk, token], producer=producer, retry=False)


@dataclass
class WorkerRuntime:
    """What one worker process keeps between tasks: its event loop and database pool."""

    loop: asyncio.AbstractEventLoop
    repository: TransactionRepository
    processor: Processor
    lease_seconds: float

    async def process(self, ids: Sequence[str], dispatch_token: str) -> int:
        now = datetime.now(UTC)
        claimed = await self.repository.start_dispatched(
            ids, dispatch_token, now, lease_seconds=self.lease_seconds
        )
        if len(claimed) < len(ids):
            log.info("worker.stale_skipped", skipped=len(ids) - len(claimed))
        outcomes = await asyncio.gather(*(self.processor.run(item) for item in claimed))
        if outcomes:
            await record_until_lease_lapses(
                lambda: self.repository.record_outcomes(outcomes), now, self.lease_seconds
            )
        return len(claimed)


_runtime: WorkerRuntime | None = None
_runtime_lock = threading.Lock()


def _worker_runtime() -> WorkerRuntime:
    """One event loop per worker process, in its own thread, shared by all pool threads."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            settings: Settings = celery_app.conf.payhook_settings
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="payhook-loop", daemon=True).start()
            repository = TransactionRepository(create_engine(settings))
            processor = Processor(load_step(settings.processing_step), settings)
            _runtime = WorkerRuntime(loop, repository, processor, settings.lease_seconds)
        return _runtime


@celery_app.task(name=TASK_NAME, ignore_result=True)
def process_batch(transaction_ids: list[str], dispatch_token: str) -> int:
    """Run the steps of one dispatched batch; a stale or duplicate message does nothing."""
    runtime = _worker_runtime()
    work = runtime.process(transaction_ids, dispatch_token)
    # The pool thread waits, so WORKER_CONCURRENCY bounds the batches in flight.
    return asyncio.run_coroutine_threadsafe(work, runtime.loop).result()


@worker_shutdown.connect
def _dispose(**_: Any) -> None:
    if _runtime is not None:
        future = asyncio.run_coroutine_threadsafe(_runtime.repository.dispose(), _runtime.loop)
        future.result(timeout=10)


def run_worker(settings: Settings) -> None:
    """Run a Celery worker in this process: WORKER_CONCURRENCY pool threads feeding one loop.

    Steps wait on I/O (the external API), so batches run concurrently on one asyncio loop;
    threads only bound how many batches are in flight. Run more workers for more CPU.
    """
    configure(settings)
    # One line per task received and succeeded is noise at this volume; failures still log.
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
    logging.getLogger("celery.worker.strategy").setLevel(logging.WARNING)
    name = f"payhook-{uuid.uuid4().hex[:8]}@%h"
    celery_app.worker_main(
        [
            "worker",
            f"--loglevel={settings.log_level}",
            "--pool=threads",
            f"--concurrency={settings.worker_concurrency}",
            f"--queues={QUEUE}",
            f"--hostname={name}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )
