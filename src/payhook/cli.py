"""The `payhook` command: serve, worker, migrate, send, check, replay, purge."""

from __future__ import annotations

import asyncio
import random
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import FrameType
from typing import Any

import click
import httpx
import structlog
import uvicorn
from pydantic import SecretStr, ValidationError

from payhook.app import build_runtime, freeze_startup_objects
from payhook.config import Settings, SignatureScheme, settings_problem
from payhook.db import create_engine
from payhook.http_server import HeadDeadlineProtocol
from payhook.jsonfmt import dumps
from payhook.migrate import is_current, upgrade
from payhook.observability.logging import configure_logging
from payhook.operators.repository import Action, OperatorRepository
from payhook.processing.steps import load_step
from payhook.providers.base import Provider
from payhook.providers.registry import PROVIDERS
from payhook.smoke import Smoke
from payhook.timefmt import isoformat_z
from payhook.webhooks.signatures import Verifier, build_verifier, verifier_from_settings

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
    _check_start(settings, runs_steps=not settings.uses_celery)
    _ensure_schema(settings)
    uvicorn.run(
        "payhook.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.web_concurrency,
        http=HeadDeadlineProtocol,
        # uvicorn would believe X-Forwarded-For/-Proto from FORWARDED_ALLOW_IPS (127.0.0.1 by
        # default) and rewrite the client address before payhook sees it: TRUSTED_PROXIES alone
        # decides whom to believe (payhook.webhooks.allowlist, payhook.http_guards).
        proxy_headers=False,
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
    _check_start(settings, runs_steps=True)
    _ensure_schema(settings)
    if settings.uses_celery:
        from payhook.processing.celery_worker import run_worker

        run_worker(settings)
        return
    asyncio.run(_run_embedded_worker(settings))


def _settings() -> Settings:
    """The settings, with logging configured; a mistake in them is one line and exit 1."""
    settings = _settings_or_exit()
    configure_logging(settings)
    return settings


def _settings_or_exit() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise click.ClickException(settings_problem(exc)) from None


def _check_start(settings: Settings, *, runs_steps: bool) -> None:
    """Refuse to start, in one line, on a secret or a step that cannot work (before migrating)."""
    try:
        verifier_from_settings(settings)
        if runs_steps:
            load_step(settings.processing_step)
    except ValueError as exc:  # StepNotLoadable is one
        raise click.ClickException(str(exc)) from None


def _local_url() -> str:
    """Where `payhook serve` listens with this environment: PORT (and HOST, unless 0.0.0.0)."""
    settings = _settings_or_exit()
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"  # noqa: S104
    return f"http://{host}:{settings.port}"


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
    _stop_on_signals(stop)
    runtime.scheduler.start()
    freeze_startup_objects()
    log.info("payhook.worker_started", executor="embedded")
    await stop.wait()
    await runtime.scheduler.stop()
    await runtime.engine.dispose()
    log.info("payhook.worker_stopped")


def _stop_on_signals(stop: asyncio.Event) -> None:
    """Ctrl+C and SIGTERM set `stop`, on every platform.

    signal.signal, not loop.add_signal_handler: asyncio has no add_signal_handler on Windows.
    The handler runs in the main thread between bytecodes, so it hands over thread-safely.
    """
    loop = asyncio.get_running_loop()

    def handle(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(stop.set)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handle)


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
@click.option(
    "--url",
    default=_local_url,
    show_default="http://127.0.0.1:$PORT, as `payhook serve` listens",
    help="The service.",
)
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
@click.option(
    "--provider",
    type=click.Choice(sorted(PROVIDERS)),
    help="Play this provider instead: its own signed events for --count payments, some sent "
    "twice and out of order, to /v1/webhooks/<provider> (expect 200 for each).",
)
@click.option("--seed", type=int, help="With --provider: the same events for the same seed.")
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
    provider: str | None,
    seed: int | None,
) -> None:
    """Post signed test webhooks to a running service and summarise the answers."""
    if provider is not None:
        _send_as_provider(url, PROVIDERS[provider], count, secret, rate, random.Random(seed))
        return
    signer = _signer(scheme, secret)
    deliveries = _deliveries(count, amount, currency, duplicate=duplicate, conflict=conflict)
    statuses, unexpected = _post_all(url, signer, deliveries, rate)
    codes = " ".join(f"{code}={n}" for code, n in sorted(statuses.items()))
    verdict = f"{unexpected} unexpected" if unexpected else "all as expected"
    click.echo(f"sent {statuses.total()} to {url}: {codes}; {verdict}")
    if unexpected:
        raise SystemExit(1)


def _send_as_provider(
    url: str,
    provider: Provider,
    payments: int,
    secret: str | None,
    rate: float | None,
    rng: random.Random,
) -> None:
    """Post the provider's sample requests; every one must be a 2xx, whatever its verdict."""
    settings = Settings()
    field = f"{provider.name}_webhook_secret"
    if secret is not None and field in Settings.model_fields:
        settings = settings.model_copy(update={field: SecretStr(secret)})
    if not provider.configured(settings):
        raise click.UsageError(f"configure {provider.name} as docs/PROVIDERS.md says")
    try:
        requests = provider.sample_requests(settings, payments, rng)
    except ValueError as exc:  # a provider that needs more to be played (PayPal's signing key)
        raise click.UsageError(str(exc)) from None
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=10.0) as client:
        for index, request in enumerate(requests):
            if rate is not None:
                time.sleep(max(0.0, started + index / rate - time.monotonic()))
            headers = {**request.headers, "content-type": "application/json"}
            statuses[_post(client, f"/v1/webhooks/{provider.name}", request.body, headers)] += 1
    codes = " ".join(f"{code}={n}" for code, n in sorted(statuses.items()))
    refused = sum(n for code, n in statuses.items() if not 200 <= code < 300)
    verdict = f"{refused} not acknowledged" if refused else "all acknowledged"
    sent = f"sent {statuses.total()} {provider.name} events for {payments} payments"
    click.echo(f"{sent}: {codes}; {verdict}")
    if refused:
        raise SystemExit(1)


def _signer(scheme: str | None, secret: str | None) -> Verifier:
    """Sign as the options say, falling back to the configured scheme and secret."""
    if scheme is None or secret is None:
        settings = _settings_or_exit()
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
    return _post(client, "/v1/webhooks/transactions", body, headers)


def _post(client: httpx.Client, path: str, body: bytes, headers: dict[str, str]) -> int:
    try:
        response = client.post(path, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"could not reach {client.base_url}: {exc}") from None
    return response.status_code


@main.command()
@click.option(
    "--url",
    default=_local_url,
    show_default="http://127.0.0.1:$PORT",
    help="The instance, e.g. https://payhook.example.com.",
)
@click.option(
    "--within",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a new transaction may take to be PROCESSED (its delay plus a margin).",
)
@click.option(
    "--max-ms",
    default=1000.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Slowest acceptable webhook answer, in milliseconds.",
)
@click.option(
    "--scheme",
    type=click.Choice([scheme.value for scheme in SignatureScheme]),
    help="Default: WEBHOOK_SIGNATURE_SCHEME.",
)
@click.option("--secret", help="Default: WEBHOOK_SECRET, which keeps it out of the process list.")
@click.option("--currency", default="USD", show_default=True)
def check(
    url: str, within: float, max_ms: float, scheme: str | None, secret: str | None, currency: str
) -> None:
    """Smoke-test a running instance: health, a transaction end to end, duplicates, conflicts,
    bad input, unknown ids, response time. One PASS/FAIL line each; exit 1 if any fails.

    It posts real test deliveries (ids txn_check_..., accounts acc_check_...), which the
    instance stores and processes: point it at staging, or let your step skip them."""
    signer = _signer(scheme, secret)
    failed = 0
    with httpx.Client(base_url=url, timeout=max(10.0, max_ms / 1000)) as client:
        smoke = Smoke(client, signer, currency, within, max_ms / 1000)
        try:
            for result in smoke.run():
                click.echo(result.line())
                failed += not result.passed
        except httpx.HTTPError as exc:
            click.echo(f"FAIL  {'reach':<14} {url}: {type(exc).__name__}: {exc}")
            raise SystemExit(1) from None
    click.echo(f"{url}: {'all checks passed' if not failed else f'{failed} failed'}")
    if failed:
        raise SystemExit(1)


def _age(ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    """`90d` or `36h` as a timedelta."""
    found = re.fullmatch(r"(\d+)([dh])", value.strip())
    if found is None:
        raise click.BadParameter(f"{value!r} is not an age such as 90d or 36h")
    amount, unit = int(found.group(1)), found.group(2)
    return timedelta(days=amount) if unit == "d" else timedelta(hours=amount)


@main.command()
@click.option("--older-than", required=True, callback=_age, help="An age such as 90d or 36h.")
@click.option("--actor", default="admin", show_default=True, help="Who, for the audit log.")
def purge(older_than: timedelta, actor: str) -> None:
    """Drop raw bodies of deliveries older than the age; every transaction, status and dedupe
    key stays, so late re-deliveries are still recognised as duplicates or conflicts."""
    settings = _settings()
    _ensure_schema(settings)
    now = datetime.now(UTC)
    cutoff = now - older_than
    purged = asyncio.run(_purge(settings, cutoff, Action("purge", actor, None, now)))
    click.echo(f"purged {purged} raw bodies received before {isoformat_z(cutoff, 'seconds')}")


async def _purge(settings: Settings, cutoff: datetime, action: Action) -> int:
    engine = create_engine(settings)
    try:
        return await OperatorRepository(engine).purge_raw_bodies(cutoff, action)
    finally:
        await engine.dispose()


@main.command()
@click.option(
    "--url",
    default=_local_url,
    show_default="http://127.0.0.1:$PORT, as `payhook serve` listens",
    help="The service.",
)
@click.option("--token", help="Default: ADMIN_TOKEN, which keeps it out of the process list.")
@click.option("--id", "ids", multiple=True, help="A FAILED transaction to replay; repeatable.")
@click.option("--status", type=click.Choice(["FAILED"]), default="FAILED", show_default=True)
@click.option("--account", help="Only transactions from or to this account.")
@click.option(
    "--provider",
    type=click.Choice([*PROVIDERS, "none"]),
    help="Only this provider's payments (`none`: the generic endpoint's); with --id, picks one "
    "where an id exists under several providers.",
)
@click.option("--currency", help="Only transactions in this currency.")
@click.option("--created-after", help="ISO 8601 with a zone, e.g. 2026-01-01T00:00:00Z.")
@click.option("--created-before", help="ISO 8601 with a zone.")
@click.option("--conflicted", is_flag=True, default=None, help="Only ones with a conflict.")
@click.option("--all", "everything", is_flag=True, help="Every FAILED one (up to --limit).")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--reason", help="Why, for the audit log.")
@click.option("--actor", default="admin", show_default=True, help="Who, for the audit log.")
def replay(
    url: str,
    token: str | None,
    ids: tuple[str, ...],
    everything: bool,
    limit: int,
    reason: str | None,
    actor: str,
    **filters: Any,
) -> None:
    """Replay FAILED transactions through the service's API (audited, fenced, and the
    service's executor is woken at once)."""
    body = _replay_body(ids, filters, everything, limit, reason)
    answer = _post_replay(url, token or _admin_token(), actor, body)
    click.echo(" ".join([f"replayed {answer['retried']}", *answer["transaction_ids"]]))


def _replay_body(
    ids: tuple[str, ...], filters: dict[str, Any], everything: bool, limit: int, reason: str | None
) -> dict[str, Any]:
    chosen = {key: value for key, value in filters.items() if value is not None and key != "status"}
    if not (ids or chosen or everything):
        raise click.UsageError("Name transactions with --id, narrow with a filter, or pass --all.")
    return {
        "filter": chosen,
        "ids": list(ids) or None,
        "all": everything,
        "reason": reason,
        "limit": limit,
    }


def _admin_token() -> str:
    token = _settings_or_exit().admin_token_value
    if token is None:
        raise click.UsageError("Pass --token or set ADMIN_TOKEN.")
    return token


def _post_replay(url: str, token: str, actor: str, body: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "X-Operator": actor}
    try:
        response = httpx.post(
            f"{url}/v1/transactions/retry", json=body, headers=headers, timeout=60
        )
    except httpx.HTTPError as exc:
        raise click.ClickException(f"could not reach {url}: {exc}") from None
    if response.status_code != 200:
        raise click.ClickException(f"{response.status_code}: {response.text}")
    answer: dict[str, Any] = response.json()
    return answer
