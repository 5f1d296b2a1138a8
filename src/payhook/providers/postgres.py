"""The provider-event ingest on PostgreSQL: three statements a batch, on asyncpg directly.

Whatever the batch's size: BEGIN with the advisory locks of its payments and event ids, one read
(the stored rows of its event ids and of its payments), one write (the new events, the changed
stored events and the payments' transactions, as data-modifying CTEs). Each is a prepared
statement over arrays (`unnest`), so its text, plan and cache entry are the same for every
batch. Through SQLAlchemy the same work took eight statements, a new text for every batch size,
and most of a batch's time went to binding rows one by one (benchmarks/README.md, Stripe
ingest).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from functools import cache
from typing import Any

import orjson
from sqlalchemy import Column, LargeBinary, Table
from sqlalchemy.ext.asyncio import AsyncEngine

from payhook.providers.records import EventRow, EventUpdate, Payment, StoredEvent
from payhook.transactions import postgres
from payhook.transactions.models import provider_events, transactions

EVENT_COLUMNS = tuple(c.name for c in provider_events.c if c.name != "id")
TRANSACTION_COLUMNS = (
    "transaction_id",
    "provider",
    "source_account",
    "destination_account",
    "amount",
    "currency",
    "amount_minor",
    "amount_refunded",
    "payment_state",
    "disputed",
    "status",
    "created_at",
    "due_at",
    "attempts",
)
REFRESHED = tuple(c for c in TRANSACTION_COLUMNS if c not in ("transaction_id", "provider"))
"""What a changed snapshot rewrites: created_at and due_at too, from the receipt of the event
that changed it (the delay, and lateness, count from there)."""
FENCED = ("claim_token", "lease_expires_at", "last_error")
"""Cleared by a change: the step in flight is fenced off and runs again on the new state."""

BEGIN_LOCKED = (
    "BEGIN; SELECT count(pg_advisory_xact_lock(k)) FROM unnest('{{{listed}}}'::bigint[]) AS k"
)
_STORED = ", ".join(StoredEvent._fields)

READ = (
    f"SELECT {_STORED} FROM provider_events "  # noqa: S608 (names, no values)
    "WHERE (provider, event_id) IN (SELECT * FROM unnest($1::text[], $2::text[])) "
    f"UNION SELECT {_STORED} FROM provider_events "
    "WHERE (provider, transaction_id) IN (SELECT * FROM unnest($3::text[], $4::text[]))"
)


@asynccontextmanager
async def locked_transaction(engine: AsyncEngine, keys: Sequence[int]) -> AsyncIterator[Any]:
    """A pooled connection's asyncpg connection in a transaction holding `keys`' advisory locks.

    BEGIN and the locks go in one round trip (the simple-query protocol takes both statements
    at once); the keys are integers, written into the text. They are taken in ascending order,
    so two batches wanting some of the same keys never deadlock.
    """
    listed = ",".join(str(int(key)) for key in sorted(keys))
    begin = BEGIN_LOCKED.format(listed=listed)
    async with engine.connect() as conn:
        try:
            driver = await postgres.driver_connection(conn)
            await driver.execute(begin)
            yield driver
            await driver.execute("COMMIT")
        except BaseException:
            # Closing the connection rolls the transaction back; it is never pooled again.
            await conn.invalidate()
            raise


class AsyncpgEventSteps:
    """`EventSteps` on one asyncpg connection, inside the caller's transaction."""

    def __init__(self, driver: Any) -> None:
        self._driver = driver

    async def read(
        self, events: Sequence[tuple[str, str]], payments: Sequence[Payment]
    ) -> list[StoredEvent]:
        rows = await self._driver.fetch(READ, *_columns(events, 2), *_columns(payments, 2))
        return [StoredEvent(*row) for row in rows]

    async def write(
        self,
        events: Sequence[EventRow],
        updates: Sequence[EventUpdate],
        payments: Sequence[dict[str, Any]],
    ) -> None:
        await self._driver.execute(_write(), _json(events), *_columns(updates, 4), _json(payments))


@cache
def _write() -> str:
    new_events = _json_insert(provider_events, EVENT_COLUMNS, 1)
    first = 2
    changed = (
        "UPDATE provider_events AS e SET deliveries = e.deliveries + u.added, "  # noqa: S608
        "last_received_at = coalesce(u.at, e.last_received_at), "
        "verdict = coalesce(u.verdict, e.verdict) "
        f"FROM unnest(${first}::bigint[], ${first + 1}::integer[], "
        f"${first + 2}::timestamptz[], ${first + 3}::text[]) AS u(id, added, at, verdict) "
        "WHERE e.id = u.id"
    )
    upsert = _json_insert(transactions, TRANSACTION_COLUMNS, first + 4)
    refreshed = ", ".join(f"{name} = EXCLUDED.{name}" for name in REFRESHED)
    fenced = ", ".join(f"{name} = NULL" for name in FENCED)
    upsert += f" ON CONFLICT (transaction_id, provider) DO UPDATE SET {refreshed}, {fenced}"
    return (
        f"WITH new_events AS ({new_events} "
        "ON CONFLICT (provider, event_id, content_digest) DO NOTHING), "
        f"changed_events AS ({changed}), "
        f"payments AS ({upsert}) "
        "SELECT 1"
    )


def _json_insert(table: Table, columns: Sequence[str], position: int) -> str:
    """`INSERT INTO table (columns)` from the rows given as one JSON array at `$position`.

    One JSON text instead of an array a column: asyncpg checks every element of an array
    parameter for being a nested array, and for these rows that took a third of the write's
    CPU (py-spy --native). Bytes travel as base64, decimals as strings (exact).
    """
    declared = ", ".join(
        f"{name} {'text' if _is_bytes(table.c[name]) else postgres.scalar_type(table.c[name])}"
        for name in columns
    )
    values = ", ".join(
        f"decode({name}, 'base64')" if _is_bytes(table.c[name]) else name for name in columns
    )
    names = ", ".join(columns)
    return (
        f"INSERT INTO {table.name} ({names}) SELECT {values} "  # noqa: S608 (names, no values)
        f"FROM json_to_recordset(${position}::json) AS r({declared})"
    )


def _is_bytes(column: Column[Any]) -> bool:
    return isinstance(column.type, LargeBinary)


def _json(rows: Sequence[Mapping[str, Any]]) -> str:
    return orjson.dumps(rows, default=_json_value).decode()


def _json_value(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not stored as JSON")


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows of `width` values as `width` lists: one `unnest` array a column."""
    columns: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns
