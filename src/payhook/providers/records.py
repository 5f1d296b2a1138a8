"""The values a provider-event batch passes between its algorithm and a database's statements."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

Payment = tuple[str, str]
"""(provider, transaction_id): a provider payment, the unit of locking and folding."""

EventRow = dict[str, Any]
"""A new `provider_events` row, keyed by column name (every column but `id`)."""


class StoredEvent(NamedTuple):
    """A stored `provider_events` row, as much of it as a batch reads."""

    id: int
    provider: str
    event_id: str
    content_digest: str
    transaction_id: str | None
    occurred_at: datetime | None
    observation: str | None
    verdict: str


class EventUpdate(NamedTuple):
    """A change to a stored event: more deliveries (a re-delivery), and/or a new verdict."""

    id: int
    added: int
    last_received_at: datetime | None
    verdict: str | None
