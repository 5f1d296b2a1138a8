"""All SQL the operators need: listing, timelines, replays with their audit rows, purge."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import simplejson
from sqlalchemy import ColumnElement, Row, and_, exists, func, insert, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payhook.operators.schemas import TransactionFilter, TransactionSummary
from payhook.transactions.models import (
    IS_PROCESSING,
    DeliveryOutcome,
    TransactionStatus,
    console_sessions,
    deliveries,
    operator_actions,
    processing_attempts,
    transactions,
)

AnyRow = Row[*tuple[Any, ...]]
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

    async def history(self, transaction_id: str, *, raw: bool) -> History | None:
        """The transaction with its deliveries, attempts and operator actions, oldest first."""
        body = deliveries.c.raw_body if raw else deliveries.c.raw_body.is_(None).label("purged")
        async with self._read() as conn:
            row = (
                await conn.execute(
                    select(*SUMMARY_COLUMNS).where(transactions.c.transaction_id == transaction_id)
                )
            ).first()
            if row is None:
                return None
            found = await conn.execute(
                select(
                    deliveries.c.received_at,
                    deliveries.c.outcome,
                    deliveries.c.signature,
                    deliveries.c.repeats,
                    deliveries.c.last_received_at,
                    body,
                )
                .where(deliveries.c.transaction_id == transaction_id)
                .order_by(deliveries.c.id)
            )
            runs = await conn.execute(
                select(processing_attempts)
                .where(processing_attempts.c.transaction_id == transaction_id)
                .order_by(processing_attempts.c.id)
            )
            actions = await conn.execute(
                select(operator_actions)
                .where(operator_actions.c.transaction_id == transaction_id)
                .order_by(operator_actions.c.id)
            )
            return History(row, found.all(), runs.all(), actions.all())

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
            .join(transactions, transactions.c.transaction_id == deliveries.c.transaction_id)
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
                transactions.c.transaction_id, transactions.c.attempts, transactions.c.last_error
            )
            .where(transactions.c.status == TransactionStatus.FAILED.value, *conditions)
            .order_by(transactions.c.created_at)
            .limit(limit)
        )
        async with self._engine.begin() as conn:
            before = {row.transaction_id: row for row in await conn.execute(chosen)}
            done = await self._requeue(conn, list(before), action.at) if before else []
            rows = [_audit(action, key, _previous(before[key])) for key in done]
            if bulk_detail is not None:
                rows.append(_audit(action, None, {**bulk_detail, "retried": len(done)}))
            if rows:
                await conn.execute(insert(operator_actions), rows)
        return done

    async def _requeue(self, conn: AsyncConnection, ids: list[str], now: datetime) -> list[str]:
        result = await conn.execute(
            update(transactions)
            .where(
                transactions.c.transaction_id.in_(ids),
                transactions.c.status == TransactionStatus.FAILED.value,
            )
            .values(
                status=TransactionStatus.PROCESSING.value,
                due_at=now,
                attempts=0,
                claim_token=None,
                lease_expires_at=None,
            )
            .returning(transactions.c.transaction_id)
        )
        return sorted(result.scalars().all())

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

    async def status(self, transaction_id: str) -> str | None:
        async with self._read() as conn:
            found = await conn.execute(
                select(transactions.c.status).where(transactions.c.transaction_id == transaction_id)
            )
            status: str | None = found.scalar()
            return status

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
        """Forget raw bodies received before `cutoff`, in batches; rows and statuses stay."""
        purged = 0
        while True:
            batch = select(deliveries.c.id).where(
                deliveries.c.received_at < cutoff, deliveries.c.raw_body.is_not(None)
            )
            async with self._engine.begin() as conn:
                ids = (await conn.execute(batch.limit(PURGE_BATCH))).scalars().all()
                if ids:
                    await conn.execute(
                        update(deliveries).where(deliveries.c.id.in_(ids)).values(raw_body=None)
                    )
            purged += len(ids)
            if len(ids) < PURGE_BATCH:
                break
        detail = {"cutoff": cutoff.isoformat(), "purged": purged}
        async with self._engine.begin() as conn:
            await conn.execute(insert(operator_actions), [_audit(action, None, detail)])
        return purged

    def id_in(self, ids: Sequence[str]) -> list[ColumnElement[bool]]:
        """The condition selecting exactly these transactions."""
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
            found.append(transactions.c.transaction_id.startswith(where.q, autoescape=True))
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
    return exists().where(
        deliveries.c.transaction_id == transactions.c.transaction_id,
        deliveries.c.outcome == DeliveryOutcome.CONFLICT.value,
    )


def _previous(row: AnyRow) -> dict[str, Any]:
    return {"previous_attempts": row.attempts, "last_error": row.last_error}


def _audit(action: Action, transaction_id: str | None, detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "transaction_id": transaction_id,
        "action": action.action,
        "actor": action.actor,
        "reason": action.reason,
        "at": action.at,
        "detail": simplejson.dumps(detail, use_decimal=True, default=str),
    }
