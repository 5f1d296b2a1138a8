"""The Celery worker: runs dispatched batches, one asyncio loop per worker process.

Its global state (the loop, the database pool) and Celery's signal hooks live here only, and
are created in the worker process, on its first task. The API side is `celery_dispatch.py`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from celery.signals import worker_shutdown

from payhook.config import Settings
from payhook.db import create_engine
from payhook.processing.batch import BatchProcessor
from payhook.processing.celery_dispatch import TASK_NAME, configure, new_celery_app, queue_for
from payhook.processing.processor import Processor
from payhook.transactions.repository import TransactionRepository

log = structlog.get_logger(__name__)

celery_app = new_celery_app()


@dataclass
class WorkerRuntime:
    """What one worker process keeps between tasks: its event loop and database pool."""

    loop: asyncio.AbstractEventLoop
    repository: TransactionRepository
    processor: Processor
    lease_seconds: float
    database_timeout_seconds: float = 5.0  # as Settings' default; the worker passes its own
    batches: BatchProcessor = field(init=False)

    def __post_init__(self) -> None:
        self.batches = BatchProcessor(
            self.repository,
            self.processor,
            self.lease_seconds,
            stop_record_seconds=self.database_timeout_seconds,
        )

    async def process(self, ids: Sequence[str], dispatch_token: str) -> int:
        """Take the batch over from its dispatch claim, then run it like any other batch."""
        claimed = await self.repository.start_dispatched(
            ids, dispatch_token, datetime.now(UTC), lease_seconds=self.lease_seconds
        )
        if len(claimed) < len(ids):
            log.info("worker.stale_skipped", skipped=len(ids) - len(claimed))
        await self.batches.process(claimed)
        return len(claimed)


_runtime: WorkerRuntime | None = None
_runtime_lock = threading.Lock()


def _worker_runtime() -> WorkerRuntime:
    """One event loop per worker process, in its own thread, shared by all pool threads."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            settings: Settings = celery_app.conf.payhook_settings
            loop = new_event_loop()
            threading.Thread(target=loop.run_forever, name="payhook-loop", daemon=True).start()
            repository = TransactionRepository(create_engine(settings))
            processor = Processor.from_settings(settings)
            _runtime = WorkerRuntime(
                loop,
                repository,
                processor,
                settings.lease_seconds,
                settings.database_timeout_seconds,
            )
        return _runtime


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's, as uvicorn gives the API process, where it is installed (uvicorn[standard]
    brings it everywhere but Windows). The standard loop's Python-level timers, handles and
    self-pipe wake-ups were about a third of a forwarding worker's GIL time (py-spy --gil);
    with uvloop a worker spent 409-479 µs of CPU per forwarded delivery against 450-562 µs,
    three interleaved pairs of runs (benchmarks/README.md)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


@celery_app.task(name=TASK_NAME, ignore_result=True)
def process_batch(
    transaction_ids: list[str], dispatch_token: str, deployment_id: str | None = None
) -> int:
    """Run the steps of one dispatched batch; a stale or duplicate message does nothing, and
    one of another deployment is handed on to its own queue, loudly, never dropped."""
    mine: str = celery_app.conf.payhook_deployment
    if deployment_id is not None and deployment_id != mine:
        log.error(
            "worker.foreign_batch",
            deployment_id=deployment_id,
            mine=mine,
            transactions=len(transaction_ids),
            hint="another deployment publishes to this worker's queue: two databases share a "
            "deployment id (one restored from the other's dump?); give one a new id",
        )
        celery_app.send_task(
            TASK_NAME,
            args=[transaction_ids, dispatch_token, deployment_id],
            queue=queue_for(deployment_id),
        )
        return 0
    runtime = _worker_runtime()
    work = runtime.process(transaction_ids, dispatch_token)
    # The pool thread waits, so WORKER_CONCURRENCY bounds the batches in flight.
    return asyncio.run_coroutine_threadsafe(work, runtime.loop).result()


@worker_shutdown.connect
def _dispose(**_: Any) -> None:
    if _runtime is not None:
        for closing in (_runtime.processor.aclose(), _runtime.repository.dispose()):
            asyncio.run_coroutine_threadsafe(closing, _runtime.loop).result(timeout=10)


async def _deployment_id(settings: Settings) -> str:
    repository = TransactionRepository(create_engine(settings))
    try:
        return await repository.deployment_id()
    finally:
        await repository.dispose()


def run_worker(settings: Settings) -> None:
    """Run a Celery worker in this process: WORKER_CONCURRENCY pool threads feeding one loop.

    Steps wait on I/O (the external API), so batches run concurrently on one asyncio loop;
    threads only bound how many batches are in flight. Run more workers for more CPU.
    """
    configure(celery_app, settings)
    celery_app.conf.payhook_settings = settings
    deployment_id = asyncio.run(_deployment_id(settings))
    celery_app.conf.payhook_deployment = deployment_id
    log.info("worker.queue", queue=queue_for(deployment_id))
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
            f"--queues={queue_for(deployment_id)}",
            f"--hostname={name}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )
