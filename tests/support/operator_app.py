"""The app in-process for operator tests: an httpx client on it, and ways to set rows up fast."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import insert, text, update

import payhook.migrate
from payhook.app import create_app
from payhook.config import Settings
from payhook.db import create_engine
from payhook.transactions.models import processing_attempts, transactions

TOKEN = "operator-test-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}", "X-Operator": "alice"}


def operator_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "admin_token": TOKEN,
        "processing_delay_seconds": 3600,
        **overrides,
    }
    return Settings(_env_file=None, **values)


@asynccontextmanager
async def app_client(
    settings: Settings, *, run_executor: bool = False
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to a started app (lifespan run) on `settings`."""
    await payhook.migrate.upgrade(settings)
    app = create_app(settings, run_executor=run_executor)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://payhook.test") as c:
            yield c


def body(transaction_id: str, amount: str = "150.50", **fields: str) -> dict[str, Any]:
    document: dict[str, Any] = {
        "transaction_id": transaction_id,
        "source_account": "acc_src",
        "destination_account": "acc_dst",
        "amount": amount,
        "currency": "INR",
        **fields,
    }
    return document


async def post(client: httpx.AsyncClient, transaction_id: str, **fields: str) -> httpx.Response:
    """Post a webhook; the amount goes on the wire as a JSON number."""
    document = body(transaction_id, **fields)
    raw = (
        "{"
        + ",".join(f'"{k}":{v}' if k == "amount" else f'"{k}":"{v}"' for k, v in document.items())
        + "}"
    )
    headers = {"content-type": "application/json"}
    return await client.post("/v1/webhooks/transactions", content=raw.encode(), headers=headers)


async def execute(settings: Settings, sql: str, **params: Any) -> None:
    """Change rows behind the service's back, to set a scene quickly."""
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql), params)
    finally:
        await engine.dispose()


async def make_failed(settings: Settings, *ids: str) -> None:
    for transaction_id in ids:
        await execute(
            settings,
            "UPDATE transactions SET status = 'FAILED', attempts = 4, last_error = 'boom' "
            "WHERE transaction_id = :id",
            id=transaction_id,
        )


async def set_due(settings: Settings, transaction_id: str, due_at: datetime) -> None:
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                update(transactions)
                .where(transactions.c.transaction_id == transaction_id)
                .values(due_at=due_at)
            )
    finally:
        await engine.dispose()


async def add_failed_attempt(settings: Settings, transaction_id: str, error: str) -> None:
    now = datetime.now(UTC)
    row = {
        "transaction_id": transaction_id,
        "attempt": 1,
        "started_at": now,
        "finished_at": now,
        "outcome": "failed",
        "error": error,
    }
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(processing_attempts), [row])
    finally:
        await engine.dispose()
