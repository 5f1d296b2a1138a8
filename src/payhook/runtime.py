"""What the app holds for its lifetime, and the dependencies that hand it to routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from payhook.config import Settings
from payhook.observability.metrics import Metrics
from payhook.processing.scheduler import Scheduler
from payhook.transactions.repository import TransactionRepository
from payhook.webhooks.allowlist import ClientAllowlist
from payhook.webhooks.ingest import Ingestor
from payhook.webhooks.signatures import Verifier

if TYPE_CHECKING:  # the operators import this module for RuntimeDep
    from payhook.operators.service import OperatorService


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


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_repository(request: Request) -> TransactionRepository:
    return get_runtime(request).repository


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
RepositoryDep = Annotated[TransactionRepository, Depends(get_repository)]
