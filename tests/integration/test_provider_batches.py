"""One group-committed batch of provider events, on SQLite and PostgreSQL.

Over HTTP a batch is whatever arrived while the previous one was written, so which events share
one cannot be chosen there; here the batches are built by hand, to pin down what happens when
a payment, its late events and their re-deliveries meet inside one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from payhook.config import Settings
from payhook.db import create_engine
from payhook.providers.model import EventVerdict, ProviderEvent
from payhook.providers.repository import ProviderDelivery, ProviderEventRepository
from payhook.providers.stripe import event_from_body
from payhook.transactions.models import provider_events, transactions

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent.parent / "fixtures" / "stripe"
PI = "pi_3QbKzTLkdIwHu7ix0qa1b2Cd"
APPLIED, WAITING, DUPLICATE = EventVerdict.APPLIED, EventVerdict.WAITING, EventVerdict.DUPLICATE


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(Settings(_env_file=None, database_url=database_url))
    yield engine
    await engine.dispose()


def event(name: str) -> ProviderEvent:
    return event_from_body((FIXTURES / f"{name}.json").read_bytes())


def delivered(*events: ProviderEvent, seconds: float = 0.0) -> ProviderDelivery:
    at = datetime(2026, 11, 27, tzinfo=UTC) + timedelta(seconds=seconds)
    return ProviderDelivery(list(events), at, at + timedelta(seconds=5))


async def ingest(engine: AsyncEngine, *batch: ProviderDelivery) -> list[EventVerdict]:
    receipts = await ProviderEventRepository(engine).ingest(list(batch))
    return [receipt.verdict for per_delivery in receipts for receipt in per_delivery]


async def rows(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    async with engine.connect() as conn:
        found = await conn.execute(select(provider_events))
        return {row.event_type: dict(row._mapping) for row in found}


async def payment_state(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        found = await conn.execute(
            select(transactions.c.payment_state).where(transactions.c.transaction_id == PI)
        )
        return str(found.scalar_one())


async def test_a_refund_before_its_payment_in_one_batch_is_applied(engine: AsyncEngine) -> None:
    refund, paid = event("refund.created"), event("payment_intent.succeeded")
    assert await ingest(engine, delivered(refund), delivered(paid, seconds=1)) == [
        APPLIED,
        APPLIED,
    ]
    stored = await rows(engine)
    assert stored["refund.created"]["verdict"] == "applied"
    assert await payment_state(engine) == "partially_refunded"


async def test_a_repeat_within_a_batch_counts_on_the_one_row(engine: AsyncEngine) -> None:
    paid = event("payment_intent.succeeded")
    verdicts = await ingest(engine, delivered(paid), delivered(paid, seconds=2))
    assert verdicts == [APPLIED, DUPLICATE]
    row = (await rows(engine))["payment_intent.succeeded"]
    assert row["deliveries"] == 2
    assert row["last_received_at"] == delivered(paid, seconds=2).received_at
    assert row["received_at"] == delivered(paid).received_at


async def test_a_stored_waiting_event_repeated_as_its_payment_arrives(
    engine: AsyncEngine,
) -> None:
    """One stored row gets both changes at once: one more delivery, and `applied`."""
    refund, paid = event("refund.created"), event("payment_intent.succeeded")
    assert await ingest(engine, delivered(refund)) == [WAITING]
    verdicts = await ingest(engine, delivered(refund, seconds=3), delivered(paid, seconds=4))
    assert verdicts == [DUPLICATE, APPLIED]
    row = (await rows(engine))["refund.created"]
    assert (row["verdict"], row["deliveries"]) == ("applied", 2)
    assert row["last_received_at"] == delivered(refund, seconds=3).received_at
    assert await payment_state(engine) == "partially_refunded"


async def test_a_conflict_and_an_ignored_type_in_the_batch_of_their_payment(
    engine: AsyncEngine,
) -> None:
    paid, other = event("payment_intent.succeeded"), event("customer.created")
    altered = event_from_body(paid.raw.replace(b'"livemode": false', b'"livemode": true'))
    assert altered.raw != paid.raw
    verdicts = await ingest(engine, delivered(paid), delivered(other), delivered(altered))
    assert verdicts == [APPLIED, EventVerdict.IGNORED, EventVerdict.CONFLICT]
    async with engine.connect() as conn:
        kept = (await conn.execute(select(provider_events.c.verdict))).scalars().all()
    assert sorted(kept) == ["applied", "conflict", "ignored"]
