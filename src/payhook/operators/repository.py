"""All SQL the operators need: listing, timelines, replays with their audit rows, purge."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import simplejson
from sqlalchemy import (
    ColumnElement,
    Row,
    Table,
    and_,
    exists,
    func,
    insert,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payhook.operators.schemas import NO_PROVIDER, TransactionFilter, TransactionSummary
from payhook.providers.model import EventVerdict
from payhook.transactions.models import (
    GENERIC,
    IS_PROCESSING,
    ROW_KEY,
    DeliveryOutcome,
    TransactionStatus,
    console_sessions,
    deliveries,
    operator_actions,
    processing_attempts,
    provider_events,
    transactions,
)

AnyRow = Row[*tuple[Any, ...]]
RowKey = tuple[str, str]  # (transaction_id, provider): a transaction's identity
# A page's position: the (created_at, transaction_id) of the last row shown.
Keyset = tuple[datetime, str]
PURGE_BATCH = 1000

# The columns TransactionSummary shows, in its order.
SUMMARY_COLUMNS = tuple(transactions.c[name] for name in TransactionSummary.model_fields)


@dataclass(frozen=True, slots=True)
class Action:
    """An operator action to write to the audit log."""

    action: str
    actor: str
    reason: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class History:
    """Everything stored about one transaction."""

    transaction: AnyRow
    deliveries: Sequence[AnyRow]
    attempts: Sequence[AnyRow]
    actions: Sequence[AnyRow]
    provider_events: Sequence[AnyRow]


class OperatorRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"

    async def page(
        self,
        where: TransactionFilter,
        after: Keyset | None,
        limit: int,
        now: datetime,
    ) -> Sequence[AnyRow]:
        """Up to `limit` matching transactions, newest first, after the keyset `after`."""
        conditions = self.conditions(where, now)
        if after is not None:
            at, key = after
            conditions.append(
                or_(
                    transactions.c.created_at < at,
                    and_(transactions.c.created_at == at, transactions.c.transaction_id < key),
                )
            )
        statement = (
            select(*SUMMARY_COLUMNS)
            .where(*conditions)
            .order_by(transactions.c.created_at.desc(), transactions.c.transaction_id.desc())
            .limit(limit)
        )
        async with self._read() as conn:
            return (await conn.execute(statement)).all()

    async def history(
        self, transaction_id: str, provider: str | None, *, raw: bool
    ) -> History | None:
        """The transaction with its deliveries, provider events, attempts and operator actions.

        Without `provider`: the generic endpoint's transaction with this id, else the first
        provider's by name.
        """
        async with self._read() as conn:
            row = (await conn.execute(_one(transaction_id, provider))).first()
            if row is None:
                return None
            key = (transaction_id, row.provider or GENERIC)
            found = await conn.execute(_deliveries_of(key, raw=raw))
            events = await conn.execute(_provider_events_of(key, raw=raw))
            runs = await conn.execute(
                select(processing_attempts)
                .where(_of(processing_attempts, key))
                .order_by(processing_attempts.c.id)
            )
            actions = await conn.execute(
                select(operator_actions)
                .where(
                    operator_actions.c.transaction_id == transaction_id,
                    func.coalesce(operator_actions.c.provider, GENERIC) == key[1],
                )
                .order_by(operator_actions.c.id)
            )
            return History(row, found.all(), runs.all(), actions.all(), events.all())

    async def conflicts(self, before: int | None, limit: int) -> Sequence[AnyRow]:
        """Conflicting deliveries, newest first, with their raw bodies and the stored values."""
        statement = (
            select(
                deliveries.c.id,
                deliveries.c.received_at,
                deliveries.c.raw_body,
                deliveries.c.signature,
                *SUMMARY_COLUMNS,
            )
            .join(
                transactions,
                and_(
                    transactions.c.transaction_id == deliveries.c.transaction_id,
                    transactions.c.provider == deliveries.c.provider,
                ),
            )
            .where(deliveries.c.outcome == DeliveryOutcome.CONFLICT.value)
            .order_by(deliveries.c.id.desc())
            .limit(limit)
        )
        if before is not None:
            statement = statement.where(deliveries.c.id < before)
        async with self._read() as conn:
            return (await conn.execute(statement)).all()

    async def retry(
        self,
        conditions: Sequence[ColumnElement[bool]],
        limit: int,
        action: Action,
        bulk_detail: dict[str, Any] | None = None,
    ) -> list[str]:
        """Put matching FAILED rows back to PROCESSING, due now, with the audit rows, atomically.

        The UPDATE repeats `status = 'FAILED'`: of two concurrent replays only one changes a row.
        """
        chosen = (
            select(
                transactions.c.transaction_id,
                transactions.c.provider,
                transactions.c.attempts,
                transactions.c.last_error,
            )
            .where(transactions.c.status == TransactionStatus.FAILED.value, *conditions)
            .order_by(transactions.c.created_at)
            .limit(limit)
        )
        async with self._engine.begin() as conn:
            before = {(row.transaction_id, row.provider): row for row in await conn.execute(chosen)}
            done = await self._requeue(conn, list(before), action.at) if before else []
            rows = [_audit(action, key, _previous(before[key])) for key in done]
            if bulk_detail is not None:
                rows.append(_audit(action, None, {**bulk_detail, "retried": len(done)}))
            if rows:
                await conn.execute(insert(operator_actions), rows)
        return [transaction_id for transaction_id, _ in done]

    async def _requeue(
        self, conn: AsyncConnection, keys: list[RowKey], now: datetime
    ) -> list[RowKey]:
        result = await conn.execute(
            update(transactions)
            .where(ROW_KEY.in_(keys), transactions.c.status == TransactionStatus.FAILED.value)
            .values(
                status=TransactionStatus.PROCESSING.value,
                due_at=now,
                attempts=0,
                claim_token=None,
                lease_expires_at=None,
            )
            .returning(transactions.c.transaction_id, transactions.c.provider)
        )
        return sorted((row[0], row[1]) for row in result)

    async def open_session(self, secret_hash: str, now: datetime, expires_at: datetime) -> None:
        """Store a console session; sessions that have ended are deleted on the way."""
        sessions = console_sessions
        async with self._engine.begin() as conn:
            await conn.execute(sessions.delete().where(sessions.c.expires_at <= now))
            await conn.execute(
                insert(sessions).values(
                    secret_hash=secret_hash, created_at=now, expires_at=expires_at
                )
            )

    async def session_active(self, secret_hash: str, now: datetime) -> bool:
        sessions = console_sessions
        async with self._read() as conn:
            found = await conn.execute(
                select(sessions.c.secret_hash).where(
                    sessions.c.secret_hash == secret_hash, sessions.c.expires_at > now
                )
            )
            return found.first() is not None

    async def close_session(self, secret_hash: str) -> None:
        async with self._engine.begin() as conn:
            sessions = console_sessions
            await conn.execute(sessions.delete().where(sessions.c.secret_hash == secret_hash))

    async def status(self, transaction_id: str, provider: str | None) -> str | None:
        async with self._read() as conn:
            row = (await conn.execute(_one(transaction_id, provider))).first()
            return None if row is None else str(row.status)

    async def resolve(self, transaction_id: str, provider: str | None) -> RowKey | None:
        """Which transaction an operator means by an id (and maybe a provider); see history."""
        async with self._read() as conn:
            row = (await conn.execute(_one(transaction_id, provider))).first()
            return None if row is None else (row.transaction_id, row.provider or GENERIC)

    def key_is(self, key: RowKey) -> list[ColumnElement[bool]]:
        """The condition selecting exactly this transaction."""
        return [transactions.c.transaction_id == key[0], transactions.c.provider == key[1]]

    async def counts_by_status(self) -> dict[str, int]:
        async with self._read() as conn:
            rows = await conn.execute(
                select(transactions.c.status, func.count()).group_by(transactions.c.status)
            )
            return {row[0]: int(row[1]) for row in rows}

    async def due_backlog(self, now: datetime) -> tuple[int, datetime | None]:
        """How many PROCESSING rows are due, and the earliest due time among them."""
        async with self._read() as conn:
            row = (
                await conn.execute(
                    select(func.count(), func.min(transactions.c.due_at)).where(
                        IS_PROCESSING, transactions.c.due_at <= now
                    )
                )
            ).one()
            return int(row[0]), row[1]

    async def purge_raw_bodies(self, cutoff: datetime, action: Action) -> int:
        """Forget raw bodies received before `cutoff`, in batches; rows and statuses stay.

        Deliveries and provider events alike: their dedupe keys and verdicts are kept.
        """
        purged = 0
        for table in (deliveries, provider_events):
            purged += await self._purge(table, cutoff)
        detail = {"cutoff": cutoff.isoformat(), "purged": purged}
        async with self._engine.begin() as conn:
            await conn.execute(insert(operator_actions), [_audit(action, None, detail)])
        return purged

    async def _purge(self, table: Table, cutoff: datetime) -> int:
        purged = 0
        batch = select(table.c.id).where(
            table.c.received_at < cutoff, table.c.raw_body.is_not(None)
        )
        while True:
            async with self._engine.begin() as conn:
                ids = (await conn.execute(batch.limit(PURGE_BATCH))).scalars().all()
                if ids:
                    await conn.execute(
                        update(table).where(table.c.id.in_(ids)).values(raw_body=None)
                    )
            purged += len(ids)
            if len(ids) < PURGE_BATCH:
                return purged

    def id_in(self, ids: Sequence[str]) -> list[ColumnElement[bool]]:
        """The condition selecting these ids (every provider's transaction with one)."""
        return [transactions.c.transaction_id.in_(ids)]

    def conditions(self, where: TransactionFilter, now: datetime) -> list[ColumnElement[bool]]:
        """The filter as SQL conditions."""
        found: list[ColumnElement[bool]] = []
        if where.status is not None:
            found.append(transactions.c.status == where.status.value)
        if where.created_after is not None:
            found.append(transactions.c.created_at >= where.created_after)
        if where.created_before is not None:
            found.append(transactions.c.created_at < where.created_before)
        if where.account is not None:
            found.append(
                or_(
                    transactions.c.source_account == where.account,
                    transactions.c.destination_account == where.account,
                )
            )
        if where.currency is not None:
            found.append(transactions.c.currency == where.currency)
        if where.q:
            # LIKE finds the prefix (by index on PostgreSQL); SQLite's LIKE ignores ASCII case,
            # so the prefix is also compared exactly: a bulk replay by `q` must not take ids
            # that only look alike.
            found.append(transactions.c.transaction_id.startswith(where.q, autoescape=True))
            found.append(func.substr(transactions.c.transaction_id, 1, len(where.q)) == where.q)
        if where.provider is not None:
            found.append(transactions.c.provider == _stored_provider(where.provider))
        if where.payment_state is not None:
            found.append(transactions.c.payment_state == where.payment_state.value)
        if where.late is not None:
            late = self._late(where.late_after_seconds, now)
            found.append(late if where.late else not_(late))
        if where.conflicted is not None:
            found.append(_conflicted() if where.conflicted else not_(_conflicted()))
        return found

    def _late(self, threshold: float, now: datetime) -> ColumnElement[bool]:
        waiting = and_(IS_PROCESSING, transactions.c.due_at < now - timedelta(seconds=threshold))
        finished_late = and_(
            transactions.c.processed_at.is_not(None),
            self._seconds_between(transactions.c.due_at, transactions.c.processed_at) > threshold,
        )
        return or_(waiting, finished_late)

    def _seconds_between(self, start: Any, end: Any) -> ColumnElement[float]:
        # SQLite keeps times as text; julianday() turns them into days.
        if self._sqlite:
            days: ColumnElement[float] = func.julianday(end) - func.julianday(start)
            return days * 86_400
        seconds: ColumnElement[float] = func.extract("epoch", end - start)  # type: ignore[assignment]
        return seconds

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection (on SQLite it then takes no write lock)."""
        async with self._engine.connect() as conn:
            yield await conn.execution_options(readonly=True)


def _conflicted() -> ColumnElement[bool]:
    """A conflicting delivery, or for a provider's payment a conflicting event."""
    delivery = exists().where(
        deliveries.c.transaction_id == transactions.c.transaction_id,
        deliveries.c.provider == transactions.c.provider,
        deliveries.c.outcome == DeliveryOutcome.CONFLICT.value,
    )
    event = exists().where(
        provider_events.c.transaction_id == transactions.c.transaction_id,
        provider_events.c.provider == transactions.c.provider,
        provider_events.c.verdict == EventVerdict.CONFLICT.value,
    )
    return or_(delivery, event)


def _stored_provider(name: str) -> str:
    return GENERIC if name == NO_PROVIDER else name


def _one(transaction_id: str, provider: str | None) -> Any:
    """The transaction an id names: of `provider`, else the generic one, else the first."""
    statement = select(*SUMMARY_COLUMNS).where(transactions.c.transaction_id == transaction_id)
    if provider is not None:
        statement = statement.where(transactions.c.provider == _stored_provider(provider))
    return statement.order_by(transactions.c.provider).limit(1)


def _of(table: Any, key: RowKey) -> ColumnElement[bool]:
    return and_(table.c.transaction_id == key[0], table.c.provider == key[1])


def _deliveries_of(key: RowKey, *, raw: bool) -> Any:
    body = deliveries.c.raw_body if raw else deliveries.c.raw_body.is_(None).label("purged")
    statement = select(
        deliveries.c.received_at,
        deliveries.c.outcome,
        deliveries.c.signature,
        deliveries.c.repeats,
        deliveries.c.last_received_at,
        body,
    )
    return statement.where(_of(deliveries, key)).order_by(deliveries.c.id)


def _provider_events_of(key: RowKey, *, raw: bool) -> Any:
    columns = provider_events.c
    body = columns.raw_body if raw else columns.raw_body.is_(None).label("purged")
    statement = select(
        columns.received_at,
        columns.event_id,
        columns.event_type,
        columns.verdict,
        columns.deliveries,
        columns.reason,
        body,
    )
    return statement.where(_of(provider_events, key)).order_by(columns.id)


def _previous(row: AnyRow) -> dict[str, Any]:
    return {"previous_attempts": row.attempts, "last_error": row.last_error}


def _audit(action: Action, key: RowKey | None, detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "transaction_id": key[0] if key else None,
        "provider": (key[1] or None) if key else None,
        "action": action.action,
        "actor": action.actor,
        "reason": action.reason,
        "at": action.at,
        "detail": simplejson.dumps(detail, use_decimal=True, default=str),
    }
