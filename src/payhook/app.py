"""The ASGI application: routes, error handling, and the lifespan that owns every resource."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException as StarletteHTTPException

from payhook import __version__, api_docs, health
from payhook.config import Settings, SignatureScheme
from payhook.console import router as console_router
from payhook.db import STORAGE_ERRORS, create_engine
from payhook.errors import (
    PayhookError,
    ServiceUnavailable,
    ValidationFailed,
    render_problem,
    render_problem_body,
)
from payhook.http_guards import BodyGuard, ForwardedScheme, HostCheck, ResponseHeaders
from payhook.observability.logging import RequestIdMiddleware, configure_logging
from payhook.observability.metrics import Metrics
from payhook.operators import router as operators_router
from payhook.operators.repository import OperatorRepository
from payhook.operators.schemas import BulkRetryIn, RetryIn
from payhook.operators.service import OperatorService
from payhook.processing.embedded import EmbeddedRunner
from payhook.processing.processor import Processor
from payhook.processing.scheduler import Runner, Scheduler
from payhook.providers import registry
from payhook.providers import router as providers_router
from payhook.providers.ingest import ProviderIngestor
from payhook.providers.repository import ProviderEventRepository
from payhook.runtime import Runtime
from payhook.transactions import router as transactions_router
from payhook.transactions.repository import TransactionRepository
from payhook.transactions.schemas import TransactionIn
from payhook.webhooks import router as webhooks_router
from payhook.webhooks.allowlist import ClientAllowlist, parse_networks
from payhook.webhooks.ingest import Ingestor
from payhook.webhooks.signatures import verifier_from_settings

log = structlog.get_logger(__name__)


def create_app(settings: Settings | None = None, *, run_executor: bool = True) -> FastAPI:
    """Build the app; resources are created when it starts, not here."""
    settings = settings or Settings()
    configure_logging(settings)
    app = FastAPI(
        title="payhook",
        version=__version__,
        summary="Receive payment transaction webhooks; store durably; process once, after a delay.",
        lifespan=_lifespan(settings, run_executor),
        docs_url=None,
        redoc_url=None,
        # payhook reports through its Prometheus metrics and JSON log lines. FastAPI's native
        # OpenTelemetry asked the three global providers on every request whether anyone had
        # configured them (4% of the webhook's CPU, for spans nobody collects).
        telemetry=NO_OPENTELEMETRY,
    )
    api_docs.install(app)
    app.include_router(health.router)
    app.include_router(webhooks_router.router)
    app.include_router(providers_router.router)
    # Operator routes first: `/v1/transactions/{id}` takes slashes in ids and would swallow
    # `/v1/transactions/{id}/timeline`.
    app.include_router(operators_router.router)
    app.include_router(transactions_router.router)
    app.include_router(console_router.router)
    _install_error_handlers(app)
    _install_middleware(app, settings)
    _document_request_body(app)
    return app


NO_OPENTELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}

# Console forms are a token, a CSRF token and a reason; the operator API's largest body is a
# bulk replay naming 10,000 ids. The webhook bounds its own (64 KiB).
CONSOLE_MAX_BODY_BYTES = 16 * 1024
OPERATOR_MAX_BODY_BYTES = 4 * 1024 * 1024


def _max_body_bytes(path: str) -> int:
    return CONSOLE_MAX_BODY_BYTES if path.startswith("/console") else OPERATOR_MAX_BODY_BYTES


def _install_middleware(app: FastAPI, settings: Settings) -> None:
    """Innermost first: the body bound, the webhook's fast path, then what every request passes."""
    app.add_middleware(
        BodyGuard,
        timeout_seconds=settings.request_body_timeout_seconds,
        max_bytes=_max_body_bytes,
    )
    app.add_middleware(
        webhooks_router.WebhookFastPath,
        routes={
            webhooks_router.WEBHOOK_PATH: webhooks_router.receive_transaction,
            **providers_router.FAST_ROUTES,
        },
    )
    proxies = ClientAllowlist(trusted_proxies=parse_networks(settings.trusted_proxies))
    if proxies.trusted_proxies:
        app.add_middleware(ForwardedScheme, proxies=proxies)
    if "*" not in settings.allowed_host_names:
        app.add_middleware(HostCheck, allowed_hosts=settings.allowed_host_names)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(ResponseHeaders)


def _lifespan(settings: Settings, run_executor: bool) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = build_runtime(settings, run_executor=run_executor)
        app.state.runtime = runtime
        runtime.ingestor.start()
        runtime.provider_ingestor.start()
        if runtime.scheduler is not None:
            runtime.scheduler.start()
        log.info("payhook.started", executor=_executor_name(settings, runtime))
        if settings.webhook_signature_scheme is SignatureScheme.NONE:
            log.warning(
                "webhook.signatures_disabled",
                hint="anyone who can reach the endpoint can post a transaction",
            )
        freeze_startup_objects()
        try:
            yield
        finally:
            await runtime.ingestor.stop()
            await runtime.provider_ingestor.stop()
            if runtime.scheduler is not None:
                await runtime.scheduler.stop()
            await runtime.engine.dispose()
            log.info("payhook.stopped")

    return lifespan


def freeze_startup_objects() -> None:
    """Move everything built at start-up out of the garbage collector's sight.

    The app, its routes, models and pools live as long as the process; scanning them in every
    full collection stalled the event loop for tens of milliseconds, which was most of the p99
    latency under load (a FastAPI no-op: p99 47 ms before, 12 ms after; benchmarks/README.md).
    """
    gc.collect()
    gc.freeze()


def build_runtime(settings: Settings, *, run_executor: bool) -> Runtime:
    """Engine, repositories, ingest path, address filter, verifier, metrics, maybe the executor."""
    verifier = verifier_from_settings(settings)
    engine = create_engine(settings)
    repository = TransactionRepository(engine)
    metrics = Metrics()
    runner = _runner(settings, repository, metrics)
    scheduler = Scheduler(repository, runner, settings) if run_executor else None
    operators = OperatorService(
        OperatorRepository(engine), on_requeued=scheduler.notify_due if scheduler else None
    )
    ingestor = Ingestor(
        repository,
        delay_seconds=settings.processing_delay_seconds,
        max_batch=settings.ingest_max_batch,
        on_stored=scheduler.notify_due if scheduler else None,
        signature=settings.webhook_signature_scheme.value,
        timeout_seconds=settings.database_timeout_seconds,
    )
    allowlist = ClientAllowlist(
        parse_networks(settings.webhook_allowed_ips), parse_networks(settings.trusted_proxies)
    )
    provider_ingestor = ProviderIngestor(
        ProviderEventRepository(engine),
        delay_seconds=settings.processing_delay_seconds,
        max_batch=settings.ingest_max_batch,
        on_stored=scheduler.notify_due if scheduler else None,
        timeout_seconds=settings.database_timeout_seconds,
    )
    return Runtime(
        settings,
        engine,
        repository,
        ingestor,
        scheduler,
        verifier,
        allowlist,
        metrics,
        operators,
        provider_ingestor,
        registry.endpoints(settings),
    )


def _runner(settings: Settings, repository: TransactionRepository, metrics: Metrics) -> Runner:
    """Steps run on Celery workers when configured; otherwise in this process."""
    if settings.uses_celery:
        from payhook.processing.celery_dispatch import CeleryRunner

        return CeleryRunner(repository, settings)
    processor = Processor.from_settings(settings, metrics)
    if processor.forwarding is not None:
        metrics.watch_destination(processor.forwarding.health)
    return EmbeddedRunner(repository, processor, settings, on_recorded=metrics.attempt)


def _executor_name(settings: Settings, runtime: Runtime) -> str:
    if runtime.scheduler is None:
        return "none"
    return "celery" if settings.uses_celery else "embedded"


def _install_error_handlers(app: FastAPI) -> None:
    async def on_payhook_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, PayhookError)
        return render_problem(exc)

    async def on_storage_error(_: Request, exc: Exception) -> Response:
        log.warning("storage.unavailable", error=type(exc).__name__)
        return render_problem(ServiceUnavailable("Storage is unavailable. Retry later."))

    async def on_validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"field": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in exc.errors()
        ]
        return render_problem(ValidationFailed.of(errors))

    async def on_http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        error = PayhookError(str(exc.detail))
        problem = {**error.problem(), "status": exc.status_code, "title": str(exc.detail)}
        problem["type"] = "about:blank"
        return render_problem_body(problem, exc.status_code, dict(exc.headers or {}))

    app.add_exception_handler(PayhookError, on_payhook_error)
    for error_type in STORAGE_ERRORS:
        app.add_exception_handler(error_type, on_storage_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)


# Bodies parsed by hand: the webhook's (to keep amounts exact), the operator API's (after the
# token is checked). Their schemas are published anyway.
HAND_READ_BODIES = (TransactionIn, BulkRetryIn, RetryIn)


def _document_request_body(app: FastAPI) -> None:
    """Publish the schemas of the bodies routes read by hand."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in HAND_READ_BODIES:
                published = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, nested in published.pop("$defs", {}).items():
                    components.setdefault(name, nested)
                components[model.__name__] = published
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
