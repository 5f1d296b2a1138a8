"""The ingest steps on PostgreSQL, written against asyncpg directly.

A batch is at most four statements whatever its size, each a prepared statement over arrays
(`unnest`): the new rows, the stored content and the stored body hashes of re-delivered ids,
the deliveries log (an upsert: a repeated body counts, it is not stored again). Through
SQLAlchemy the same work was a quarter of the API's CPU under load (py-spy, see
benchmarks/README.md), most of it spent binding rows one by one. The statements are written
from the table definitions, so a new column needs no edit here.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import cache
from typing import Any

from sqlalchemy import Column, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payhook.transactions.models import GENERIC, deliveries, transactions

Row = Mapping[str, Any]
KEY = transactions.c.transaction_id
# A transaction is unique per (id, provider); this endpoint's rows have the provider GENERIC.
CONFLICT_TARGET = f"{KEY.name}, {transactions.c.provider.name}"
_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


async def driver_connection(conn: AsyncConnection) -> Any:
    """The asyncpg connection under a SQLAlchemy one (its pool still owns and returns it)."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


@asynccontextmanager
async def driver_transaction(engine: AsyncEngine) -> AsyncIterator[Any]:
    """A pooled connection's asyncpg connection, inside one database transaction."""
    async with engine.connect() as conn:
        try:
            driver = await driver_connection(conn)
            async with driver.transaction():
                yield driver
        except BaseException:
            # The driver connection bypassed SQLAlchemy's error handling: never pool it again.
            await conn.invalidate()
            raise


class AsyncpgIngest:
    """`IngestSteps` on one asyncpg connection, inside the caller's transaction."""

    def __init__(self, driver: Any) -> None:
        self._driver = driver

    async def insert_new(self, rows: Sequence[Row]) -> set[str]:
        """INSERT ... ON CONFLICT DO NOTHING; the ids that made a row."""
        columns = tuple(rows[0])
        statement = _unnest_insert(transactions, columns, CONFLICT_TARGET)
        found = await self._driver.fetch(statement, *arrays(rows, columns))
        return {row[0] for row in found}

    async def stored(self, columns: Sequence[str], ids: Sequence[str]) -> list[Row]:
        found = await self._driver.fetch(_select_by_key(tuple(columns)), list(ids))
        return [dict(row) for row in found]

    async def stored_bodies(self, ids: Sequence[str]) -> list[tuple[str, str]]:
        found = await self._driver.fetch(SELECT_BODIES, list(ids))
        return [(row[0], row[1]) for row in found]

    async def insert_deliveries(self, rows: Sequence[Row]) -> None:
        """Each (transaction, body) once: a repeat adds to the stored row's count."""
        columns = tuple(rows[0])
        statement = _unnest_insert(deliveries, columns, None) + DELIVERY_REPEATS
        await self._driver.execute(statement, *arrays(rows, columns))


SELECT_BODIES = (
    f"SELECT transaction_id, body_sha256 FROM {deliveries.name} "  # noqa: S608
    "WHERE transaction_id = ANY($1::text[]) AND body_sha256 IS NOT NULL"
)
DELIVERY_REPEATS = (
    " ON CONFLICT (transaction_id, body_sha256) DO UPDATE SET"
    f" repeats = {deliveries.name}.repeats + EXCLUDED.repeats,"
    " last_received_at = EXCLUDED.last_received_at"
)


def arrays(rows: Sequence[Row], columns: Sequence[str]) -> list[list[Any]]:
    """The rows as one list a column: the arguments of an `unnest` statement."""
    return [[row[name] for row in rows] for name in columns]


def array_type(column: Column[Any]) -> str:
    """The PostgreSQL array type of a column's values, e.g. `VARCHAR[]`."""
    return scalar_type(column) + "[]"


def scalar_type(column: Column[Any]) -> str:
    """The PostgreSQL type of a column's values, e.g. `VARCHAR`."""
    # Without a length: casting to VARCHAR(n) would truncate silently, where the INSERT refuses.
    return re.sub(r"\(\d+\)", "", column.type.compile(dialect=_DIALECT))


@cache
def _unnest_insert(table: Table, columns: tuple[str, ...], conflict: str | None) -> str:
    statement = unnest_insert(table, columns)
    if conflict is not None:
        statement += f" ON CONFLICT ({conflict}) DO NOTHING RETURNING {KEY.name}"
    return statement


def unnest_insert(table: Table, columns: Sequence[str], first: int = 1) -> str:
    """`INSERT INTO table (columns) SELECT * FROM unnest($first, ...)`: one array a column."""
    typed = ", ".join(
        f"${position}::{array_type(table.c[name])}" for position, name in enumerate(columns, first)
    )
    # Every name here comes from the table definition, none from a request.
    names = ", ".join(columns)
    return f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({typed})"  # noqa: S608


@cache
def _select_by_key(columns: tuple[str, ...]) -> str:
    names = ", ".join(columns)
    return (
        f"SELECT {names} FROM {transactions.name} "  # noqa: S608 (names from the table)
        f"WHERE {KEY.name} = ANY($1::{array_type(KEY)}) "
        f"AND {transactions.c.provider.name} = '{GENERIC}'"
    )
