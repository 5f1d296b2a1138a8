"""All SQL of provider events: one group-committed ingest for every provider, on both databases.

One batch (every request that arrived while the previous batch was being written) is one
database transaction:

1. lock the touched payments (PostgreSQL advisory locks in one sorted order; SQLite's writer
   lock already serialises batches), so two API processes never fold the same payment apart;
2. find which events are known: same id and content -> `duplicate` (a counter goes up), same
   id, other content -> `conflict` (kept for review, never folded);
3. read every stored observation of the touched payments, judge the new events in arrival order
   (`payhook.providers.state.judge`: applied, stale or waiting) and insert them;
4. upsert the transaction of every payment whose snapshot changed: status PROCESSING, due
   PROCESSING_DELAY_SECONDS after this receipt, any in-flight claim fenced off (token cleared)
   and the attempts reset, so the step runs again on the newest state;
5. a payment seen for the first time turns its `waiting` events into `applied`.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payhook.providers import currencies
from payhook.providers.model import (
    EventReceipt,
    EventVerdict,
    Observation,
    Observed,
    ProviderEvent,
)
from payhook.providers.state import PaymentSnapshot, fold, judge
from payhook.transactions import postgres
from payhook.transactions.models import TransactionStatus, provider_events, transactions

Payment = tuple[str, str]  # (provider, transaction_id)


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


class ProviderEventRepository:
    """Stores provider events and keeps each payment's transaction folded from them."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._insert = postgresql.insert if self._postgres else sqlite.insert

    async def ingest(self, batch: Sequence[ProviderDelivery]) -> list[list[EventReceipt]]:
        """Store a batch atomically; per delivery, one receipt per event."""
        arrivals = [
            _Arrival(event, hashlib.sha256(event.raw).hexdigest(), delivery)
            for delivery in batch
            for event in delivery.events
        ]
        async with self._engine.begin() as conn:
            if self._postgres:
                await _lock_payments(conn, _payments(a.event for a in arrivals))
            verdicts = await self._store(conn, arrivals)
        receipts = iter(
            EventReceipt(a.event.event_id, a.event.event_type, a.event.transaction_id, verdict)
            for a, verdict in zip(arrivals, verdicts, strict=True)
        )
        return [[next(receipts) for _ in delivery.events] for delivery in batch]

    async def _store(self, conn: AsyncConnection, arrivals: list[_Arrival]) -> list[EventVerdict]:
        known = await _known_digests(conn, arrivals)
        verdicts: list[EventVerdict | None] = []
        fresh: list[_Arrival] = []
        for arrival in arrivals:
            verdict = _dedupe(arrival, known)
            verdicts.append(verdict)
            if verdict is None:
                fresh.append(arrival)
        judged = await self._judge(conn, fresh)
        final = [
            verdict or judged[id(arrival)]
            for arrival, verdict in zip(arrivals, verdicts, strict=True)
        ]
        await self._insert_events(conn, arrivals, final)
        return final

    async def _judge(self, conn: AsyncConnection, fresh: list[_Arrival]) -> dict[int, EventVerdict]:
        """Verdicts of the new events; the changed payments' transactions are written."""
        verdicts = {id(a): EventVerdict.IGNORED for a in fresh if a.event.ignored}
        by_payment: dict[Payment, list[_Arrival]] = defaultdict(list)
        for arrival in fresh:
            if not arrival.event.ignored:
                by_payment[_payment(arrival.event)].append(arrival)
        stored = await _stored_observations(conn, by_payment)
        changed: list[tuple[Payment, PaymentSnapshot, _Arrival]] = []
        appeared: list[Payment] = []
        for payment, group in by_payment.items():
            before = fold(stored[payment])
            results, after = judge(stored[payment], [a.event.observed() for a in group])
            verdicts.update((id(a), v) for a, v in zip(group, results, strict=True))
            if after is not None and after != before:
                last = max(
                    (a for a, v in zip(group, results, strict=True) if v is EventVerdict.APPLIED),
                    key=lambda a: a.delivery.received_at,
                )
                changed.append((payment, after, last))
                if before is None:
                    appeared.append(payment)
        await self._upsert_transactions(conn, changed)
        await _apply_waiting(conn, appeared)
        return verdicts

    async def _insert_events(
        self, conn: AsyncConnection, arrivals: list[_Arrival], verdicts: list[EventVerdict]
    ) -> None:
        pairs = list(zip(arrivals, verdicts, strict=True))
        rows = [_event_row(a, v) for a, v in pairs if v is not EventVerdict.DUPLICATE]
        repeats = [a for a, v in pairs if v is EventVerdict.DUPLICATE]
        if rows:
            statement = self._insert(provider_events).on_conflict_do_nothing(
                index_elements=["provider", "event_id", "content_digest"]
            )
            await conn.execute(statement, rows)
        if repeats:
            await conn.execute(_COUNT_REPEAT, [_repeat_row(a) for a in repeats])

    async def _upsert_transactions(
        self, conn: AsyncConnection, changed: list[tuple[Payment, PaymentSnapshot, _Arrival]]
    ) -> None:
        if not changed:
            return
        statement = self._insert(transactions)
        refreshed = {name: statement.excluded[name] for name in _REFRESHED}
        statement = statement.on_conflict_do_update(
            index_elements=["transaction_id", "provider"],
            set_={**refreshed, "claim_token": None, "lease_expires_at": None, "last_error": None},
        )
        await conn.execute(statement, [_transaction_row(*item) for item in changed])


# What a changed snapshot rewrites; created_at and processed_at stay as they were.
_REFRESHED = (
    "source_account",
    "destination_account",
    "amount",
    "currency",
    "amount_minor",
    "amount_refunded",
    "payment_state",
    "disputed",
    "status",
    "due_at",
    "attempts",
)

_COUNT_REPEAT = (
    update(provider_events)
    .where(
        provider_events.c.provider == bindparam("p"),
        provider_events.c.event_id == bindparam("e"),
        provider_events.c.content_digest == bindparam("d"),
    )
    .values(deliveries=provider_events.c.deliveries + 1, last_received_at=bindparam("at"))
)


def _payment(event: ProviderEvent) -> Payment:
    assert event.transaction_id is not None
    return (event.provider, event.transaction_id)


def _payments(events: Iterable[ProviderEvent]) -> list[Payment]:
    return sorted({_payment(event) for event in events if not event.ignored})


_LOCK = text("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS bigint[])) AS k")


async def _lock_payments(conn: AsyncConnection, payments: list[Payment]) -> None:
    """Transaction-scoped advisory locks, always taken in ascending order (no deadlock)."""
    keys = sorted({_lock_key(payment) for payment in payments})
    if keys:
        await conn.execute(_LOCK, {"keys": keys})


def _lock_key(payment: Payment) -> int:
    digest = hashlib.sha256("\x1f".join(payment).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def _known_digests(
    conn: AsyncConnection, arrivals: list[_Arrival]
) -> dict[tuple[str, str], set[str]]:
    keys = sorted({(a.event.provider, a.event.event_id) for a in arrivals})
    known: dict[tuple[str, str], set[str]] = defaultdict(set)
    if not keys:
        return known
    if conn.dialect.name == "postgresql":
        result: Iterable[Sequence[Any]] = await _fetch(conn, _PG_KNOWN, *_columns(keys))
    else:
        key = tuple_(provider_events.c.provider, provider_events.c.event_id)
        result = await conn.execute(
            select(
                provider_events.c.provider,
                provider_events.c.event_id,
                provider_events.c.content_digest,
            ).where(key.in_(keys))
        )
    for provider, event_id, digest in result:
        known[(provider, event_id)].add(digest)
    return known


def _dedupe(arrival: _Arrival, known: dict[tuple[str, str], set[str]]) -> EventVerdict | None:
    """Duplicate or conflict by what is stored (or earlier in this batch); None: a new event."""
    digests = known[(arrival.event.provider, arrival.event.event_id)]
    if arrival.digest in digests:
        return EventVerdict.DUPLICATE
    first = not digests
    digests.add(arrival.digest)
    return None if first else EventVerdict.CONFLICT


async def _stored_observations(
    conn: AsyncConnection, payments: Iterable[Payment]
) -> dict[Payment, list[Observed]]:
    stored: dict[Payment, list[Observed]] = defaultdict(list)
    wanted = sorted(payments)
    if not wanted:
        return stored
    conflict = EventVerdict.CONFLICT.value
    columns = provider_events.c
    if conn.dialect.name == "postgresql":
        result: Iterable[Sequence[Any]] = await _fetch(
            conn, _PG_OBSERVATIONS, *_columns(wanted), conflict
        )
    else:
        result = await conn.execute(
            select(
                columns.provider,
                columns.transaction_id,
                columns.event_id,
                columns.occurred_at,
                columns.observation,
            ).where(
                tuple_(columns.provider, columns.transaction_id).in_(wanted),
                columns.observation.is_not(None),
                columns.verdict != conflict,
            )
        )
    for provider, transaction_id, event_id, occurred_at, observation in result:
        observed = Observed(Observation.from_json(observation), occurred_at, event_id)
        stored[(provider, transaction_id)].append(observed)
    return stored


async def _apply_waiting(conn: AsyncConnection, payments: list[Payment]) -> None:
    if not payments:
        return
    if conn.dialect.name == "postgresql":
        applied, waiting = EventVerdict.APPLIED.value, EventVerdict.WAITING.value
        await _fetch(conn, _PG_APPLY_WAITING, *_columns(payments), applied, waiting)
        return
    columns = provider_events.c
    await conn.execute(
        update(provider_events)
        .where(
            tuple_(columns.provider, columns.transaction_id).in_(payments),
            columns.verdict == EventVerdict.WAITING.value,
        )
        .values(verdict=EventVerdict.APPLIED.value)
    )


# PostgreSQL: the keys as two arrays joined through `unnest`, so each statement has one text
# whatever the batch size. A tuple `IN` list renders a new text (and a new prepared statement
# and plan) for every batch size; with the lock these were half of a batch's time under
# `make bench --only stripe` (benchmarks/README.md).
_PG_KNOWN = (
    "SELECT e.provider, e.event_id, e.content_digest FROM provider_events AS e "
    "JOIN unnest($1::text[], $2::text[]) AS k(provider, key) "
    "ON e.provider = k.provider AND e.event_id = k.key"
)
_PG_OBSERVATIONS = (
    "SELECT e.provider, e.transaction_id, e.event_id, e.occurred_at, e.observation "
    "FROM provider_events AS e JOIN unnest($1::text[], $2::text[]) AS k(provider, key) "
    "ON e.provider = k.provider AND e.transaction_id = k.key "
    "WHERE e.observation IS NOT NULL AND e.verdict <> $3"
)
_PG_APPLY_WAITING = (
    "UPDATE provider_events AS e SET verdict = $3 "
    "FROM unnest($1::text[], $2::text[]) AS k(provider, key) "
    "WHERE e.provider = k.provider AND e.transaction_id = k.key AND e.verdict = $4"
)


async def _fetch(conn: AsyncConnection, statement: str, *args: Any) -> list[Any]:
    """One statement on the asyncpg connection under `conn`, inside its transaction."""
    driver = await postgres.driver_connection(conn)
    rows: list[Any] = await driver.fetch(statement, *args)
    return rows


def _columns(keys: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    firsts: list[str] = []
    seconds: list[str] = []
    for first, second in keys:
        firsts.append(first)
        seconds.append(second)
    return firsts, seconds


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


def _repeat_row(arrival: _Arrival) -> dict[str, Any]:
    event = arrival.event
    return {
        "p": event.provider,
        "e": event.event_id,
        "d": arrival.digest,
        "at": arrival.delivery.received_at,
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
