"""The ingest path: validated deliveries are group-committed, and only then acknowledged."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from payhook.batching import UNCONFIRMED, CommitterStopped, GroupCommitter, OutcomeUnknown
from payhook.db import STORAGE_ERRORS
from payhook.errors import ServiceUnavailable
from payhook.transactions.records import IngestResult, NewDelivery
from payhook.transactions.repository import TransactionRepository
from payhook.transactions.schemas import TransactionIn

log = structlog.get_logger(__name__)


class Ingestor:
    """Stores deliveries through one group-committing writer per process."""

    def __init__(
        self,
        repository: TransactionRepository,
        *,
        delay_seconds: float,
        max_batch: int,
        on_stored: Callable[[datetime], None] | None = None,
        signature: str | None = None,
        timeout_seconds: float = 5.0,
    ) -> None:
        self._delay = timedelta(seconds=delay_seconds)
        self._signature = signature
        self._on_stored = on_stored
        self._committer: GroupCommitter[NewDelivery, IngestResult] = GroupCommitter(
            repository.ingest,
            max_batch=max_batch,
            name="ingest",
            # A database that stops answering must not hold the provider's request: after the
            # deadline the answer is 503 (a delivery still queued is then dropped, not written;
            # one already in a write that commits later is a duplicate when the provider retries).
            timeout_seconds=timeout_seconds,
        )

    def start(self) -> None:
        self._committer.start()

    async def stop(self) -> None:
        await self._committer.stop()

    async def ingest(self, transaction: TransactionIn, raw_body: bytes) -> IngestResult:
        """Return once the delivery is committed; raise ServiceUnavailable if it could not be."""
        received_at = datetime.now(UTC)
        due_at = received_at + self._delay
        delivery = NewDelivery(transaction, raw_body, received_at, due_at, self._signature)
        try:
            result = await self._committer.submit(delivery)
        except OutcomeUnknown as exc:
            log.warning("webhook.store_unconfirmed", error=type(exc).__name__)
            raise ServiceUnavailable(UNCONFIRMED) from exc
        except (*STORAGE_ERRORS, CommitterStopped) as exc:
            log.warning("webhook.store_failed", error=type(exc).__name__)
            raise ServiceUnavailable(
                "The transaction could not be stored; nothing was recorded. Retry later."
            ) from exc
        if self._on_stored is not None:
            self._on_stored(delivery.due_at)
        log.info(
            "webhook.delivery",
            transaction_id=transaction.transaction_id,
            outcome=result.outcome.value,
            status=result.status.value,
        )
        return result
