"""The ceiling: a FastAPI no-op that validates the same request model and stores nothing.

payhook's ingest rate is reported as a ratio to this app's, measured in the same run, so the
figures mean the same on a faster or slower machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from payhook.app import freeze_startup_objects
from payhook.transactions.schemas import TransactionIn


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    # The same garbage-collector set-up as payhook, so the ceiling is not lowered by GC pauses.
    freeze_startup_objects()
    yield


app = FastAPI(lifespan=lifespan)


@app.post("/v1/webhooks/transactions", status_code=202)
async def receive(transaction: TransactionIn) -> dict[str, object]:
    return {
        "transaction_id": transaction.transaction_id,
        "status": "PROCESSING",
        "duplicate": False,
    }
