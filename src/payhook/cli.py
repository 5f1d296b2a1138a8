"""The `payhook` command: serve, worker, migrate."""

from __future__ import annotations

import asyncio
import signal

import click
import structlog
import uvicorn

from payhook.app import build_runtime
from payhook.config import Settings
from payhook.observability.logging import configure_logging
from payhook.schema import is_current, upgrade

log = structlog.get_logger(__name__)


@click.group()
def main() -> None:
    """payhook: receive transaction webhooks, store them durably, process each once."""


@main.command()
def migrate() -> None:
    """Apply database migrations up to the newest revision."""
    settings = _settings()
    asyncio.run(upgrade(settings))
    log.info("payhook.migrated")


@main.command()
def serve() -> None:
    """Run the API with the embedded executor (HOST, PORT, WEB_CONCURRENCY)."""
    settings = _settings()
    _ensure_schema(settings)
    uvicorn.run(
        "payhook.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.web_concurrency,
        log_config=None,
        access_log=False,
        timeout_keep_alive=75,
        timeout_graceful_shutdown=15,
    )


@main.command()
def worker() -> None:
    """Run the executor alone, without the API (scale-out on PostgreSQL)."""
    settings = _settings()
    _ensure_schema(settings)
    asyncio.run(_run_worker(settings))


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings)
    return settings


def _ensure_schema(settings: Settings) -> None:
    """The embedded default migrates itself; PostgreSQL is migrated once, by `payhook migrate`."""
    if settings.is_sqlite:
        asyncio.run(upgrade(settings))
    elif not asyncio.run(is_current(settings)):
        raise click.ClickException("The database schema is not current: run `payhook migrate`.")


async def _run_worker(settings: Settings) -> None:
    runtime = build_runtime(settings, run_executor=True)
    assert runtime.executor is not None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runtime.executor.start()
    log.info("payhook.worker_started")
    await stop.wait()
    await runtime.executor.stop()
    await runtime.engine.dispose()
    log.info("payhook.worker_stopped")
