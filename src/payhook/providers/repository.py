"""All SQL of provider events: one group-committed ingest for every provider, on both databases.

One batch (every request that arrived while the previous batch was being written) is one
database transaction, in three steps whatever its size (PostgreSQL's in
`payhook.providers.postgres`, SQLite's here):

1. lock: BEGIN with PostgreSQL advisory locks on the batch's payments and event ids, in one
   sorted order (SQLite's BEGIN IMMEDIATE already serialises batches), so two batches in flight
   at once (in one API process or two) never fold one payment apart nor both take one event id
   as new;
2. read: the stored rows of the batch's event ids and of its payments;
3. write: the new events, the stored events that changed, the payments' transactions.

Between the read and the write, in Python: an event id known with the same content is a
`duplicate` (a delivery counter goes up); with other content a `conflict` (kept for review,
never folded). The new events are judged in arrival order on top of their payment's stored
observations (`payhook.providers.state.judge`: applied, stale or waiting). A payment whose
snapshot changed is upserted: status PROCESSING, due PROCESSING_DELAY_SECONDS after this
receipt, any in-flight claim fenced off (token cleared) and the attempts reset, so the step runs
again on the newest state. A payment known for the first time turns its `waiting` events,
stored or in this batch, into `applied`.
"""

from __future__ import annotations

import functools
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import bindparam, func, select, tuple_, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payhook.providers import currencies
from payhook.providers.model import (
    EventReceipt,
    EventVerdict,
    Observation,
    Observed,
    ProviderEvent,
)
from payhook.providers.postgres import (
    FENCED,
    REFRESHED,
    AsyncpgEventSteps,
    locked_transaction,
)
from payhook.providers.records import EventRow, EventUpdate, Payment, StoredEvent
from payhook.providers.state import PaymentSnapshot, judge
from payhook.transactions.models import TransactionStatus, provider_events, transactions

APPLIED, WAITING, DUPLICATE = EventVerdict.APPLIED, EventVerdict.WAITING, EventVerdict.DUPLICATE


@dataclass(frozen=True, slots=True)
class ProviderDelivery:
    """The events of one verified request, waiting to be stored."""

    events: Sequence[ProviderEvent]
    received_at: datetime
    due_at: datetime


@dataclass(frozen=True, slots=True)
class _Arrival:
    """One event of a batch with what storing it needs."""

    event: ProviderEvent
    digest: str
    delivery: ProviderDelivery


class EventSteps(Protocol):
    """A batch's statements after its locks, as a database runs them."""

    async def read(
        self, events: Sequence[tuple[str, str]], payments: Sequence[Payment]
    ) -> Sequence[StoredEvent]: ...

    async def write(
        self,
        events: Sequence[EventRow],
        updates: Sequence[EventUpdate],
        payments: Sequence[dict[str, Any]],
    ) -> None: ...


class ProviderEventRepository:
    """Stores provider events and keeps each payment's transaction folded from them."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    async def ingest(self, batch: Sequence[ProviderDelivery]) -> list[list[EventReceipt]]:
        """Store a batch atomically; per delivery, one receipt per event."""
        arrivals = [
            _Arrival(event, hashlib.sha256(event.raw).hexdigest(), delivery)
            for delivery in batch
            for event in delivery.events
        ]
        work = _Batch(arrivals)
        if self._postgres:
            async with locked_transaction(self._engine, work.lock_keys()) as driver:
                verdicts = await work.store(AsyncpgEventSteps(driver))
        else:
            async with self._engine.begin() as conn:  # BEGIN IMMEDIATE: one writer at a time
                verdicts = await work.store(SqlAlchemyEventSteps(conn))
        receipts = iter(
            EventReceipt(a.event.event_id, a.event.event_type, a.event.transaction_id, verdict)
            for a, verdict in zip(arrivals, verdicts, strict=True)
        )
        return [[next(receipts) for _ in delivery.events] for delivery in batch]


class _Batch:
    """One batch's events between the read and the write."""

    def __init__(self, arrivals: list[_Arrival]) -> None:
        self.arrivals = arrivals
        self.payments = sorted({_payment(a.event) for a in arrivals if not a.event.ignored})
        self.known: dict[tuple[str, str], dict[str, int | None]] = defaultdict(dict)
        self.stored: dict[Payment, list[StoredEvent]] = defaultdict(list)
        self.updates: dict[int, EventUpdate] = {}
        self.event_keys = sorted({(a.event.provider, a.event.event_id) for a in arrivals})

    def lock_keys(self) -> list[int]:
        """The advisory lock keys of the batch's payments and event ids."""
        return sorted({_lock_key(key) for key in (*self.payments, *self.event_keys)})

    async def store(self, steps: EventSteps) -> list[EventVerdict]:
        self._index(await steps.read(self.event_keys, self.payments))
        verdicts: list[EventVerdict | None] = [self._dedupe(a) for a in self.arrivals]
        fresh = [a for a, v in zip(self.arrivals, verdicts, strict=True) if v is None]
        judged, payments = self._judge(fresh)
        final = [
            verdict or judged[id(arrival)]
            for arrival, verdict in zip(self.arrivals, verdicts, strict=True)
        ]
        await steps.write(self._event_rows(final), list(self.updates.values()), payments)
        return final

    def _index(self, rows: Iterable[StoredEvent]) -> None:
        wanted = set(self.payments)
        for row in rows:
            self.known[(row.provider, row.event_id)][row.content_digest] = row.id
            if row.observation is None or row.verdict == EventVerdict.CONFLICT:
                continue  # nothing to fold: an ignored event, or one kept only for review
            payment = (row.provider, row.transaction_id or "")
            if payment in wanted:
                self.stored[payment].append(row)

    def _dedupe(self, arrival: _Arrival) -> EventVerdict | None:
        """Duplicate or conflict by what is stored (or earlier in this batch); None: new."""
        digests = self.known[(arrival.event.provider, arrival.event.event_id)]
        if arrival.digest in digests:
            return DUPLICATE
        first = not digests
        digests[arrival.digest] = None  # a row of this batch
        return None if first else EventVerdict.CONFLICT

    def _judge(self, fresh: list[_Arrival]) -> tuple[dict[int, EventVerdict], list[dict[str, Any]]]:
        """Verdicts of the new events, and the rows of the payments whose snapshot changed."""
        verdicts = {id(a): EventVerdict.IGNORED for a in fresh if a.event.ignored}
        by_payment: dict[Payment, list[_Arrival]] = defaultdict(list)
        for arrival in fresh:
            if not arrival.event.ignored:
                by_payment[_payment(arrival.event)].append(arrival)
        changed: list[dict[str, Any]] = []
        for payment, group in by_payment.items():
            stored = self.stored[payment]
            observed = [_observed(row) for row in stored]
            results, before, after = judge(observed, [a.event.observed() for a in group])
            if after is not None:  # the payment is known: nothing of it waits any more
                results = [APPLIED if v is WAITING else v for v in results]
                if before is None:
                    self._apply_waiting(stored)
            verdicts.update((id(a), v) for a, v in zip(group, results, strict=True))
            if after is not None and after != before:
                cause = max(
                    (a for a, v in zip(group, results, strict=True) if v is APPLIED),
                    key=lambda a: a.delivery.received_at,
                )
                changed.append(_transaction_row(payment, after, cause))
        return verdicts, changed

    def _apply_waiting(self, stored: Iterable[StoredEvent]) -> None:
        for row in stored:
            if row.verdict == WAITING:
                self.updates[row.id] = EventUpdate(row.id, 0, None, APPLIED.value)

    def _event_rows(self, verdicts: list[EventVerdict]) -> list[EventRow]:
        """New rows (a repeat within the batch counts on its row); repeats of stored rows."""
        rows: dict[tuple[str, str, str], EventRow] = {}
        for arrival, verdict in zip(self.arrivals, verdicts, strict=True):
            event, at = arrival.event, arrival.delivery.received_at
            key = (event.provider, event.event_id, arrival.digest)
            if verdict is not DUPLICATE:
                rows[key] = _event_row(arrival, verdict)
            elif key in rows:
                rows[key]["deliveries"] += 1
                rows[key]["last_received_at"] = max(rows[key]["last_received_at"], at)
            else:
                row_id = self.known[key[:2]][arrival.digest]
                assert row_id is not None
                update_ = self.updates.get(row_id)
                added = update_.added if update_ else 0
                verdict_ = update_.verdict if update_ else None
                self.updates[row_id] = EventUpdate(row_id, added + 1, at, verdict_)
        return list(rows.values())


class SqlAlchemyEventSteps:
    """`EventSteps` through SQLAlchemy Core: SQLite, whose writer lock serialises batches."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def read(
        self, events: Sequence[tuple[str, str]], payments: Sequence[Payment]
    ) -> list[StoredEvent]:
        c = provider_events.c
        columns = (
            c.id,
            c.provider,
            c.event_id,
            c.content_digest,
            c.transaction_id,
            c.occurred_at,
            c.observation,
            c.verdict,
        )
        rows: list[StoredEvent] = []
        by_event = tuple_(c.provider, c.event_id).in_(events)
        by_payment = tuple_(c.provider, c.transaction_id).in_(payments)
        for condition, values in ((by_event, events), (by_payment, payments)):
            if values:
                result = await self._conn.execute(select(*columns).where(condition))
                rows += [StoredEvent(*row) for row in result]
        return rows

    async def write(
        self,
        events: Sequence[EventRow],
        updates: Sequence[EventUpdate],
        payments: Sequence[dict[str, Any]],
    ) -> None:
        if events:
            statement = sqlite.insert(provider_events).on_conflict_do_nothing(
                index_elements=["provider", "event_id", "content_digest"]
            )
            await self._conn.execute(statement, list(events))
        if updates:
            await self._conn.execute(
                _UPDATE_EVENT,
                [
                    {"row": u.id, "added": u.added, "at": u.last_received_at, "new": u.verdict}
                    for u in updates
                ],
            )
        if payments:
            upsert = sqlite.insert(transactions)
            refreshed = {name: upsert.excluded[name] for name in REFRESHED}
            upsert = upsert.on_conflict_do_update(
                index_elements=["transaction_id", "provider"],
                set_={**refreshed, **dict.fromkeys(FENCED)},
            )
            await self._conn.execute(upsert, list(payments))


_UPDATE_EVENT = (
    update(provider_events)
    .where(provider_events.c.id == bindparam("row"))
    .values(
        deliveries=provider_events.c.deliveries + bindparam("added"),
        last_received_at=func.coalesce(
            bindparam("at", type_=provider_events.c.last_received_at.type),
            provider_events.c.last_received_at,
        ),
        verdict=func.coalesce(bindparam("new"), provider_events.c.verdict),
    )
)


def _observed(row: StoredEvent) -> Observed:
    assert row.observation is not None
    return Observed(_parsed(row.observation), row.occurred_at, row.event_id)


_parsed = functools.lru_cache(maxsize=16_384)(Observation.from_json)
"""A payment's stored observations are read again by every batch that touches it: each text is
parsed once while it stays among the recent (Observation is immutable; about 6 MB at most)."""


def _payment(event: ProviderEvent) -> Payment:
    assert event.transaction_id is not None
    return (event.provider, event.transaction_id)


def _lock_key(key: tuple[str, str]) -> int:
    """A payment's (provider, id) or an event's (provider, event id), as an advisory lock key."""
    digest = hashlib.sha256("\x1f".join(key).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _event_row(arrival: _Arrival, verdict: EventVerdict) -> dict[str, Any]:
    event = arrival.event
    observation = event.observation
    return {
        "provider": event.provider,
        "event_id": event.event_id,
        "content_digest": arrival.digest,
        "event_type": event.event_type,
        "transaction_id": event.transaction_id,
        "occurred_at": event.occurred_at,
        "received_at": arrival.delivery.received_at,
        "last_received_at": arrival.delivery.received_at,
        "deliveries": 1,
        "verdict": verdict.value,
        "observation": observation.to_json() if observation is not None else None,
        "reason": event.ignored_reason,
        "raw_body": event.raw,
    }


def _transaction_row(
    payment: Payment, snapshot: PaymentSnapshot, cause: _Arrival
) -> dict[str, Any]:
    provider, transaction_id = payment
    currency = snapshot.currency or "XXX"
    amount_minor = snapshot.amount_minor or 0
    return {
        "transaction_id": transaction_id,
        "provider": provider,
        "source_account": snapshot.source_account,
        "destination_account": snapshot.destination_account,
        "amount": _major(provider, amount_minor, currency),
        "currency": currency,
        "amount_minor": snapshot.amount_minor,
        "amount_refunded": _major(provider, snapshot.amount_refunded_minor, currency),
        "payment_state": snapshot.payment_state.value,
        "disputed": snapshot.disputed,
        "status": TransactionStatus.PROCESSING.value,
        "created_at": cause.delivery.received_at,
        "due_at": cause.delivery.due_at,
        "attempts": 0,
    }


def _major(provider: str, minor: int, currency: str) -> Decimal:
    try:
        return currencies.to_major(provider, minor, currency)
    except currencies.UnknownCurrency:  # "XXX": no event of the payment named a currency
        return Decimal(minor)
