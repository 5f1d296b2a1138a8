"""The ingest hot path on PostgreSQL, written against asyncpg directly.

A batch is three statements whatever its size, each a prepared statement over arrays
(`unnest`): the new rows, the stored content of re-delivered ids, the deliveries log. Through
SQLAlchemy the same work was a quarter of the API's CPU under load (py-spy, see
benchmarks/README.md), most of it spent binding rows one by one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from payhook.transactions.schemas import TransactionContent

INSERT_NEW = """
INSERT INTO transactions (transaction_id, source_account, destination_account, amount, currency,
                          created_at, due_at, status, attempts)
SELECT i.*, 'PROCESSING', 0
FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::text[], $6::timestamptz[],
            $7::timestamptz[]) AS i
ON CONFLICT (transaction_id) DO NOTHING
RETURNING transaction_id
"""

SELECT_STORED = """
SELECT transaction_id, source_account, destination_account, amount, currency, status
FROM transactions
WHERE transaction_id = ANY($1::text[])
"""

INSERT_DELIVERIES = """
INSERT INTO deliveries (transaction_id, received_at, outcome, raw_body, signature)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::bytea[], $5::text[])
"""


async def driver_connection(conn: AsyncConnection) -> Any:
    """The asyncpg connection under a SQLAlchemy one (its pool still owns and returns it)."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


async def insert_new(driver: Any, columns: Sequence[Sequence[Any]]) -> set[str]:
    """INSERT ... ON CONFLICT DO NOTHING for the columns given; the ids that made a row."""
    rows = await driver.fetch(INSERT_NEW, *map(list, columns))
    return {row[0] for row in rows}


async def stored_content(driver: Any, ids: Iterable[str]) -> dict[str, TransactionContent]:
    rows = await driver.fetch(SELECT_STORED, list(ids))
    return {row["transaction_id"]: TransactionContent.model_validate(dict(row)) for row in rows}


async def insert_deliveries(driver: Any, columns: Sequence[Sequence[Any]]) -> None:
    await driver.execute(INSERT_DELIVERIES, *map(list, columns))
