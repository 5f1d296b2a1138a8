"""The ceiling: a FastAPI no-op that validates the same request model and stores nothing.

payhook's ingest rate is reported as a ratio to this app's, measured in the same run, so the
figures mean the same on a faster or slower machine.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

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


@app.post("/v1/webhooks/stripe")
async def receive_stripe(request: Request) -> dict[str, object]:
    """The ceiling for provider events: read and parse the same body, store nothing."""
    event = json.loads(await request.body())
    return {"received": True, "events": [{"id": event["id"], "verdict": "applied"}]}
