"""What the app holds for its lifetime, and the dependencies that hand it to routes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from payhook.config import Settings
from payhook.observability.metrics import Metrics
from payhook.operators.service import OperatorService
from payhook.processing.scheduler import Scheduler
from payhook.providers.base import ProviderEndpoint
from payhook.providers.ingest import ProviderIngestor
from payhook.transactions.repository import TransactionRepository
from payhook.webhooks.allowlist import ClientAllowlist
from payhook.webhooks.ingest import Ingestor
from payhook.webhooks.signatures import Verifier


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    repository: TransactionRepository
    ingestor: Ingestor
    scheduler: Scheduler | None
    verifier: Verifier
    allowlist: ClientAllowlist
    metrics: Metrics
    operators: OperatorService
    provider_ingestor: ProviderIngestor
    providers: Mapping[str, ProviderEndpoint]  # the configured ones, by endpoint name


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_repository(runtime: RuntimeDep) -> TransactionRepository:
    return runtime.repository


def get_operators(runtime: RuntimeDep) -> OperatorService:
    return runtime.operators


RepositoryDep = Annotated[TransactionRepository, Depends(get_repository)]
OperatorsDep = Annotated[OperatorService, Depends(get_operators)]
