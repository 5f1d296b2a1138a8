"""The provider ingest path: events are group-committed, and only then acknowledged."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import structlog

from payhook.batching import UNCONFIRMED, CommitterStopped, GroupCommitter, OutcomeUnknown
from payhook.db import STORAGE_ERRORS
from payhook.errors import ServiceUnavailable
from payhook.providers.model import EventReceipt, EventVerdict, ProviderEvent
from payhook.providers.repository import ProviderDelivery, ProviderEventRepository

log = structlog.get_logger(__name__)


WRITERS = 2
"""Batches in flight at once: one is judged in Python while the other waits on the database.
Safe because a batch locks its payments and event ids first (`ProviderEventRepository`), as two
API processes already must be; measured in benchmarks/README.md (Stripe ingest)."""


class ProviderIngestor:
    """Stores provider events through one group-committing writer per process."""

    def __init__(
        self,
        repository: ProviderEventRepository,
        *,
        delay_seconds: float,
        max_batch: int,
        on_stored: Callable[[datetime], None] | None = None,
        timeout_seconds: float = 5.0,
    ) -> None:
        self._delay = timedelta(seconds=delay_seconds)
        self._on_stored = on_stored
        self._committer: GroupCommitter[ProviderDelivery, list[EventReceipt]] = GroupCommitter(
            repository.ingest,
            max_batch=max_batch,
            name="provider_ingest",
            writers=WRITERS,
            # A database that stops answering costs the provider a 503 within seconds, as on
            # the generic endpoint (DATABASE_TIMEOUT_SECONDS), never a request held open.
            timeout_seconds=timeout_seconds,
        )

    def start(self) -> None:
        self._committer.start()

    async def stop(self) -> None:
        await self._committer.stop()

    async def ingest(self, events: Sequence[ProviderEvent]) -> list[EventReceipt]:
        """Return once every event is committed; raise ServiceUnavailable if they could not be."""
        received_at = datetime.now(UTC)
        delivery = ProviderDelivery(events, received_at, received_at + self._delay)
        try:
            receipts = await self._committer.submit(delivery)
        except OutcomeUnknown as exc:
            log.warning("provider_webhook.store_unconfirmed", error=type(exc).__name__)
            raise ServiceUnavailable(UNCONFIRMED) from exc
        except (*STORAGE_ERRORS, CommitterStopped) as exc:
            log.warning("provider_webhook.store_failed", error=type(exc).__name__)
            raise ServiceUnavailable(
                "The events could not be stored; nothing was recorded. Retry later."
            ) from exc
        if self._on_stored is not None and any(r.verdict is EventVerdict.APPLIED for r in receipts):
            self._on_stored(delivery.due_at)
        for event, receipt in zip(events, receipts, strict=True):
            log.info(
                "provider_webhook.event",
                provider=event.provider,
                event_id=receipt.event_id,
                event_type=receipt.event_type,
                transaction_id=receipt.transaction_id,
                verdict=receipt.verdict.value,
            )
        return receipts
