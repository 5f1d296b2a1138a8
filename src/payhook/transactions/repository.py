"""All SQL about transactions, in one place. Each public method is one database transaction."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import Row, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payhook.db import storable_text
from payhook.transactions import postgres
from payhook.transactions.models import (
    GENERIC,
    IS_PROCESSING,
    ROW_KEY,
    AttemptOutcome,
    DeliveryOutcome,
    TransactionStatus,
    deliveries,
    deployment,
    processing_attempts,
    transactions,
)
from payhook.transactions.records import (
    AttemptReport,
    ClaimedTransaction,
    IngestResult,
    NewDelivery,
    Outcome,
)
from payhook.transactions.schemas import TransactionContent

# Distinct bodies kept per transaction id: enough evidence for any honest sender (a provider
# re-sends one body; a conflict is a second), and a bound for a hostile or broken one.
MAX_BODIES_PER_TRANSACTION = 16
OVERFLOW = "overflow:"

# What a re-delivery is compared with: the stored columns TransactionContent names.
STORED_COLUMNS = ("transaction_id", *TransactionContent.model_fields)


class IngestSteps(Protocol):
    """The three statements of one ingest batch, as a dialect runs them."""

    async def insert_new(self, rows: Sequence[Mapping[str, Any]]) -> set[str]: ...

    async def stored(
        self, columns: Sequence[str], ids: Sequence[str]
    ) -> Sequence[Mapping[str, Any]]: ...

    async def stored_bodies(self, ids: Sequence[str]) -> Sequence[tuple[str, str]]: ...

    async def insert_deliveries(self, rows: Sequence[Mapping[str, Any]]) -> None: ...


class SqlAlchemyIngest:
    """`IngestSteps` through SQLAlchemy Core (SQLite, or any dialect without a fast path)."""

    def __init__(self, conn: AsyncConnection, dialect_insert: Callable[..., Any]) -> None:
        self._conn = conn
        self._insert = dialect_insert

    async def insert_new(self, rows: Sequence[Mapping[str, Any]]) -> set[str]:
        statement = (
            self._insert(transactions)
            .on_conflict_do_nothing(
                index_elements=[transactions.c.transaction_id, transactions.c.provider]
            )
            .returning(transactions.c.transaction_id)
        )
        result = await self._conn.execute(statement, list(rows))
        return set(result.scalars().all())

    async def stored(
        self, columns: Sequence[str], ids: Sequence[str]
    ) -> Sequence[Mapping[str, Any]]:
        result = await self._conn.execute(
            select(*(transactions.c[name] for name in columns)).where(
                transactions.c.transaction_id.in_(ids), transactions.c.provider == GENERIC
            )
        )
        return cast(Sequence[Mapping[str, Any]], result.mappings().all())

    async def stored_bodies(self, ids: Sequence[str]) -> Sequence[tuple[str, str]]:
        result = await self._conn.execute(
            select(deliveries.c.transaction_id, deliveries.c.body_sha256).where(
                deliveries.c.transaction_id.in_(ids), deliveries.c.body_sha256.is_not(None)
            )
        )
        return [(row[0], row[1]) for row in result]

    async def insert_deliveries(self, rows: Sequence[Mapping[str, Any]]) -> None:
        statement = self._insert(deliveries)
        statement = statement.on_conflict_do_update(
            index_elements=[deliveries.c.transaction_id, deliveries.c.body_sha256],
            set_={
                "repeats": deliveries.c.repeats + statement.excluded.repeats,
                "last_received_at": statement.excluded.last_received_at,
            },
        )
        await self._conn.execute(statement, list(rows))


class TransactionRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._insert = _dialect_insert(engine)

    async def dispose(self) -> None:
        """Close the connection pool."""
        await self._engine.dispose()

    async def ingest(self, batch: Sequence[NewDelivery]) -> list[IngestResult]:
        """Store a batch of deliveries atomically; a new id makes a row, a known one is compared.

        One algorithm on every database: insert the new ids, read what is stored for the others,
        judge each delivery against it, log every delivery. Only how the statements run differs.
        """
        firsts: dict[str, NewDelivery] = {}
        for item in batch:
            firsts.setdefault(item.transaction.transaction_id, item)
        async with self._ingest_steps() as steps:
            # Rows in key order: two processes' batches naming the same new ids in other orders
            # would otherwise each wait on the other's uncommitted row (a deadlock on
            # PostgreSQL, every request of the aborted batch a 503).
            new = [_new_row(firsts[key]) for key in sorted(firsts)]
            inserted = await steps.insert_new(new)
            known = list(firsts.keys() - inserted)
            found = await steps.stored(STORED_COLUMNS, known) if known else []
            stored = {
                row["transaction_id"]: TransactionContent.model_validate(row) for row in found
            }
            if len(firsts) < len(batch):
                # An id delivered twice in this batch: the later delivery is judged against the
                # first, which made the row (only then: it is a model validation per row).
                for key in inserted:
                    stored[key] = _content_of(firsts[key])
            results = [_judge(item, firsts, inserted, stored) for item in batch]
            kept = await steps.stored_bodies(known) if known else []
            rows = [
                _delivery_row(item, result) for item, result in zip(batch, results, strict=True)
            ]
            await steps.insert_deliveries(bounded_deliveries(rows, kept))
        return results

    @asynccontextmanager
    async def _ingest_steps(self) -> AsyncIterator[IngestSteps]:
        """The dialect's way to run the ingest statements, inside one database transaction."""
        if self._engine.dialect.name != "postgresql":
            async with self._engine.begin() as conn:
                yield SqlAlchemyIngest(conn, self._insert)
            return
        async with postgres.driver_transaction(self._engine) as driver:
            yield postgres.AsyncpgIngest(driver)

    async def deployment_id(self) -> str:
        """This database's deployment id (see `payhook.transactions.models.Deployment`)."""
        async with self._engine.connect() as conn:
            found = await conn.execute(select(deployment.c.id).limit(1))
            return str(found.scalar_one())

    async def get(
        self, transaction_id: str, provider: str = GENERIC
    ) -> Row[tuple[object, ...]] | None:
        """The transaction with this id from `provider` (by default the generic endpoint's)."""
        async with self._engine.connect() as conn:
            conn = await conn.execution_options(readonly=True)
            result = await conn.execute(
                select(transactions).where(
                    transactions.c.transaction_id == transaction_id,
                    transactions.c.provider == provider,
                )
            )
            return result.first()

    async def find(self, transaction_id: str) -> Sequence[Row[tuple[object, ...]]]:
        """Every transaction with this id: the generic endpoint's first, then by provider."""
        async with self._engine.connect() as conn:
            conn = await conn.execution_options(readonly=True)
            result = await conn.execute(
                select(transactions)
                .where(transactions.c.transaction_id == transaction_id)
                .order_by(transactions.c.provider)
            )
            return result.all()

    async def next_due_at(self, now: datetime) -> datetime | None:
        """When the earliest claimable transaction falls due (possibly already past)."""
        async with self._engine.connect() as conn:
            conn = await conn.execution_options(readonly=True)
            result = await conn.execute(
                select(func.min(transactions.c.due_at)).where(IS_PROCESSING, _unleased(now))
            )
            due: datetime | None = result.scalar()
            return due

    async def claim_due(
        self,
        now: datetime,
        *,
        limit: int,
        lease_seconds: float,
        token: str,
        count_attempt: bool = True,
    ) -> list[ClaimedTransaction]:
        """Lease up to `limit` due rows to `token`; rows locked by others are skipped.

        `count_attempt`: the claim starts an attempt (the embedded runner), else it only
        dispatches the rows, and `start_dispatched` counts the attempt.
        """
        due = (
            select(transactions.c.transaction_id, transactions.c.provider)
            .where(IS_PROCESSING, transactions.c.due_at <= now, _unleased(now))
            .order_by(transactions.c.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(transactions)
            .where(ROW_KEY.in_(due))
            .values(
                attempts=transactions.c.attempts + (1 if count_attempt else 0),
                claim_token=token,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
            )
            .returning(*CLAIM_COLUMNS)
        )
        async with self._engine.begin() as conn:
            rows = (await conn.execute(statement)).all()
        return [_claimed(row, token, now) for row in rows]

    async def start_dispatched(
        self, ids: Sequence[str], dispatch_token: str, now: datetime, *, lease_seconds: float
    ) -> list[ClaimedTransaction]:
        """Take over rows dispatched under `dispatch_token` with a fresh token and lease: the
        attempt starts here (a dispatch that never got this far spent none).

        A redelivered or duplicated message finds the token already replaced and gets nothing.
        """
        run_token = str(uuid.uuid4())
        statement = (
            update(transactions)
            .where(
                transactions.c.transaction_id.in_(ids),
                transactions.c.claim_token == dispatch_token,
                IS_PROCESSING,
            )
            .values(
                attempts=transactions.c.attempts + 1,
                claim_token=run_token,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
            )
            .returning(*CLAIM_COLUMNS)
        )
        async with self._engine.begin() as conn:
            rows = (await conn.execute(statement)).all()
        return [_claimed(row, run_token, now) for row in rows]

    async def release(self, claimed: Sequence[ClaimedTransaction]) -> None:
        """Hand back dispatch claims that never reached a worker (they counted no attempt), so
        they are due again at once."""
        by_token: dict[str, list[tuple[str, str]]] = {}
        for item in claimed:
            by_token.setdefault(item.claim_token, []).append(item.key)
        async with self._engine.begin() as conn:
            for token, keys in by_token.items():
                await conn.execute(
                    update(transactions)
                    .where(ROW_KEY.in_(keys), transactions.c.claim_token == token)
                    .values(claim_token=None, lease_expires_at=None)
                )

    async def record_outcomes(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Apply outcomes under their claim's fence; False where the claim was lost meanwhile."""
        async with self._engine.begin() as conn:
            applied = await self._mark_processed(conn, [o for o in outcomes if o.error is None])
            for outcome in outcomes:
                if outcome.error is not None and await self._mark_failed_attempt(conn, outcome):
                    applied.add(outcome.claimed.key)
            # An attempt given back before anything was sent leaves no trace in the timeline.
            kept = [
                o
                for o in outcomes
                if o.claimed.key in applied and (o.counted or o.report is not None)
            ]
            if kept:
                await conn.execute(insert(processing_attempts), [_attempt_row(o) for o in kept])
        return [o.claimed.key in applied for o in outcomes]

    async def _mark_processed(
        self, conn: AsyncConnection, done: Sequence[Outcome]
    ) -> set[tuple[str, str]]:
        applied: set[tuple[str, str]] = set()
        by_token: dict[str, list[Outcome]] = {}
        for outcome in done:
            by_token.setdefault(outcome.claimed.claim_token, []).append(outcome)
        for token, outcomes in by_token.items():
            # One statement per claim: processed_at is when the last of these steps finished.
            keys = [o.claimed.key for o in outcomes]
            finished_at = max(o.finished_at for o in outcomes)
            result = await conn.execute(
                update(transactions)
                .where(
                    ROW_KEY.in_(keys),
                    transactions.c.claim_token == token,
                    IS_PROCESSING,
                )
                .values(
                    status=TransactionStatus.PROCESSED.value,
                    processed_at=finished_at,
                    claim_token=None,
                    lease_expires_at=None,
                    last_error=None,
                )
                .returning(transactions.c.transaction_id, transactions.c.provider)
            )
            applied.update((row[0], row[1]) for row in result)
        return applied

    async def _mark_failed_attempt(self, conn: AsyncConnection, outcome: Outcome) -> bool:
        claimed = outcome.claimed
        retry = outcome.retry_at is not None
        values: dict[str, object] = {
            "claim_token": None,
            "lease_expires_at": None,
            # Errors and answers are the far side's text: a NUL in one would fail the whole
            # batch's write on PostgreSQL, and with it every outcome recorded beside it.
            "last_error": storable_text(outcome.error),
        }
        if retry:
            values["due_at"] = outcome.retry_at
        else:
            values["status"] = TransactionStatus.FAILED.value
        if not outcome.counted:
            # Given back: the claim counted this attempt, so un-count it.
            values["attempts"] = transactions.c.attempts - 1
        result = await conn.execute(
            update(transactions)
            .where(
                transactions.c.transaction_id == claimed.transaction_id,
                transactions.c.provider == claimed.key[1],
                transactions.c.claim_token == claimed.claim_token,
                IS_PROCESSING,
            )
            .values(**values)
        )
        return bool(result.rowcount)


# The stored columns a ClaimedTransaction carries; the claim's own fields come from the claim.
_CLAIM_FIELDS = {"attempt", "claim_token", "claimed_at"}
CLAIM_COLUMNS = (
    *(transactions.c[f.name] for f in fields(ClaimedTransaction) if f.name not in _CLAIM_FIELDS),
    transactions.c.attempts,
)


def _claimed(row: Row[Any], token: str, now: datetime) -> ClaimedTransaction:
    stored = dict(row._mapping)
    attempt = stored.pop("attempts")
    stored["provider"] = stored["provider"] or None  # the generic endpoint's: no provider
    return ClaimedTransaction(**stored, attempt=attempt, claim_token=token, claimed_at=now)


def _unleased(now: datetime) -> Any:
    return or_(transactions.c.lease_expires_at.is_(None), transactions.c.lease_expires_at <= now)


def _dialect_insert(engine: AsyncEngine) -> Callable[..., Any]:
    return sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert


def _new_row(item: NewDelivery) -> dict[str, object]:
    return {
        **item.transaction.model_dump(),  # pydantic-core's copy: a quarter of dict(model)'s CPU
        "created_at": item.received_at,
        "due_at": item.due_at,
        "status": TransactionStatus.PROCESSING.value,
        "attempts": 0,
    }


def _delivery_row(item: NewDelivery, result: IngestResult) -> dict[str, Any]:
    return {
        "transaction_id": item.transaction.transaction_id,
        "received_at": item.received_at,
        "outcome": result.outcome.value,
        "raw_body": item.raw_body,
        "signature": item.signature,
        "body_sha256": hashlib.sha256(item.raw_body).hexdigest(),
        "repeats": 1,
        "last_received_at": item.received_at,
    }


def bounded_deliveries(
    rows: Sequence[dict[str, Any]], kept: Iterable[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The batch's delivery rows, one per (transaction, body): a body already stored (`kept`)
    or repeated in the batch adds to a count; past MAX_BODIES_PER_TRANSACTION bodies per
    transaction, deliveries are counted in an "overflow:<outcome>" row that keeps no body."""
    hashes: dict[str, set[str]] = {}
    for key, digest in kept:
        hashes.setdefault(key, set()).add(digest)
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = row["transaction_id"]
        seen = hashes.setdefault(key, set())
        bodies = sum(1 for digest in seen if not digest.startswith(OVERFLOW))
        if row["body_sha256"] not in seen and bodies >= MAX_BODIES_PER_TRANSACTION:
            row = {**row, "body_sha256": f"{OVERFLOW}{row['outcome']}", "raw_body": None}
        seen.add(row["body_sha256"])
        same = merged.get((key, row["body_sha256"]))
        if same is None:
            merged[(key, row["body_sha256"])] = dict(row)
        else:
            same["repeats"] += 1
            same["last_received_at"] = row["received_at"]
    return [merged[key] for key in sorted(merged)]  # key order, as the new rows (no deadlock)


def _content_of(item: NewDelivery) -> TransactionContent:
    return TransactionContent(
        **item.transaction.model_dump(exclude={"transaction_id"}),
        status=TransactionStatus.PROCESSING,
    )


def _judge(
    item: NewDelivery,
    firsts: dict[str, NewDelivery],
    inserted: set[str],
    stored: dict[str, TransactionContent],
) -> IngestResult:
    key = item.transaction.transaction_id
    if key in inserted and firsts[key] is item:
        return IngestResult(DeliveryOutcome.ACCEPTED, TransactionStatus.PROCESSING)  # _new_row's
    content = stored[key]
    if item.transaction.same_content(content):
        return IngestResult(DeliveryOutcome.DUPLICATE, content.status)
    return IngestResult(DeliveryOutcome.CONFLICT, content.status)


def _attempt_row(outcome: Outcome) -> dict[str, object]:
    report = outcome.report or AttemptReport()
    latency = report.latency_seconds
    return {
        "transaction_id": outcome.claimed.transaction_id,
        "provider": outcome.claimed.key[1],
        "attempt": outcome.claimed.attempt,
        "started_at": outcome.claimed.claimed_at,
        "finished_at": outcome.finished_at,
        "outcome": _attempt_outcome(outcome).value,
        "error": storable_text(outcome.error),
        "destination_status": report.status,
        "latency_ms": None if latency is None else round(latency * 1000, 3),
        "answer": storable_text(report.answer),
    }


def _attempt_outcome(outcome: Outcome) -> AttemptOutcome:
    if outcome.error is None:
        return AttemptOutcome.SUCCEEDED
    return AttemptOutcome.FAILED if outcome.counted else AttemptOutcome.DEFERRED
