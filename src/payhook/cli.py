"""The `payhook` command: serve, worker, migrate, send."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

import click
import httpx
import structlog
import uvicorn
from simplejson import dumps

from payhook.app import build_runtime
from payhook.config import Settings, SignatureScheme
from payhook.http_server import HeadDeadlineProtocol
from payhook.observability.logging import configure_logging
from payhook.schema import is_current, upgrade
from payhook.webhooks.signatures import Verifier, build_verifier

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
    """Run the API and its scheduler (steps in-process, or dispatched to Celery workers)."""
    settings = _settings()
    _ensure_schema(settings)
    uvicorn.run(
        "payhook.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.web_concurrency,
        http=HeadDeadlineProtocol,
        log_config=None,
        access_log=False,
        # Above the usual 60 s idle timeout of load balancers, so they close connections first.
        timeout_keep_alive=75,
        timeout_graceful_shutdown=15,
    )


@main.command()
def worker() -> None:
    """Run the executor alone, without the API: a Celery worker when REDIS_URL is set."""
    settings = _settings()
    _ensure_schema(settings)
    if settings.uses_celery:
        from payhook.processing.celery_app import run_worker

        run_worker(settings)
        return
    asyncio.run(_run_embedded_worker(settings))


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


async def _run_embedded_worker(settings: Settings) -> None:
    runtime = build_runtime(settings, run_executor=True)
    assert runtime.scheduler is not None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runtime.scheduler.start()
    log.info("payhook.worker_started", executor="embedded")
    await stop.wait()
    await runtime.scheduler.stop()
    await runtime.engine.dispose()
    log.info("payhook.worker_stopped")


def _exact_amount(ctx: click.Context, param: click.Parameter, value: str) -> Decimal:
    """`--amount 150.50` stays 150.50 on the wire, never a binary float."""
    try:
        amount = Decimal(value)
    except ArithmeticError:
        raise click.BadParameter(f"{value!r} is not a decimal number") from None
    if not amount.is_finite():
        raise click.BadParameter(f"{value!r} is not a finite number")
    return amount


@main.command()
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="The service.")
@click.option(
    "--count", default=1, show_default=True, type=click.IntRange(min=1), help="Transactions."
)
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Requests per second.")
@click.option("--duplicate", is_flag=True, help="Re-send each delivery unchanged (expect 202).")
@click.option("--conflict", is_flag=True, help="Also send a conflicting re-delivery (expect 409).")
@click.option(
    "--scheme",
    type=click.Choice([scheme.value for scheme in SignatureScheme]),
    help="Default: WEBHOOK_SIGNATURE_SCHEME.",
)
@click.option("--secret", help="Default: WEBHOOK_SECRET, which keeps it out of the process list.")
@click.option("--amount", default="150.50", show_default=True, callback=_exact_amount)
@click.option("--currency", default="INR", show_default=True)
def send(
    url: str,
    count: int,
    rate: float | None,
    duplicate: bool,
    conflict: bool,
    scheme: str | None,
    secret: str | None,
    amount: Decimal,
    currency: str,
) -> None:
    """Post signed test webhooks to a running service and summarise the answers."""
    signer = _signer(scheme, secret)
    deliveries = _deliveries(count, amount, currency, duplicate=duplicate, conflict=conflict)
    statuses, unexpected = _post_all(url, signer, deliveries, rate)
    codes = " ".join(f"{code}={n}" for code, n in sorted(statuses.items()))
    verdict = f"{unexpected} unexpected" if unexpected else "all as expected"
    click.echo(f"sent {statuses.total()} to {url}: {codes}; {verdict}")
    if unexpected:
        raise SystemExit(1)


def _signer(scheme: str | None, secret: str | None) -> Verifier:
    """Sign as the options say, falling back to the configured scheme and secret."""
    if scheme is None or secret is None:
        settings = Settings()
        scheme = scheme or settings.webhook_signature_scheme.value
        secret = secret or ",".join(settings.webhook_secrets)
    try:
        return build_verifier(SignatureScheme(scheme), secret.split(",") if secret else [])
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _deliveries(
    count: int, amount: Decimal, currency: str, *, duplicate: bool, conflict: bool
) -> Iterator[tuple[str, bytes, int]]:
    """(webhook id, body, the status a correct service answers) for each request to send."""
    for _ in range(count):
        transaction_id = f"txn_test_{uuid.uuid4().hex[:20]}"
        original = _transaction_body(transaction_id, amount, currency)
        yield f"msg_{transaction_id}", original, 202
        if duplicate:
            # A provider's retry: same webhook id, same body.
            yield f"msg_{transaction_id}", original, 202
        if conflict:
            changed = _transaction_body(transaction_id, amount + 1, currency)
            yield f"msg_{transaction_id}_conflict", changed, 409


def _transaction_body(transaction_id: str, amount: Decimal, currency: str) -> bytes:
    document = {
        "transaction_id": transaction_id,
        "source_account": "acc_test_source",
        "destination_account": "acc_test_destination",
        "amount": amount,
        "currency": currency,
    }
    return dumps(document).encode()


def _post_all(
    url: str, signer: Verifier, deliveries: Iterator[tuple[str, bytes, int]], rate: float | None
) -> tuple[Counter[int], int]:
    """Send every delivery (paced to `rate`); count the statuses and the unexpected ones."""
    statuses: Counter[int] = Counter()
    unexpected = 0
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=10.0) as client:
        for index, (msg_id, body, expected) in enumerate(deliveries):
            if rate is not None:
                time.sleep(max(0.0, started + index / rate - time.monotonic()))
            status = _post_one(client, signer, msg_id, body)
            statuses[status] += 1
            unexpected += status != expected
    return statuses, unexpected


def _post_one(client: httpx.Client, signer: Verifier, msg_id: str, body: bytes) -> int:
    headers = signer.sign(body, timestamp=int(time.time()), msg_id=msg_id)
    headers["content-type"] = "application/json"
    try:
        response = client.post("/v1/webhooks/transactions", content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"could not reach {client.base_url}: {exc}") from None
    return response.status_code
