"""The ceiling: a FastAPI no-op that validates the same request model and stores nothing.

payhook's ingest rate is reported as a ratio to this app's, measured in the same run, so the
figures mean the same on a faster or slower machine.
"""

from __future__ import annotations

from fastapi import FastAPI

from payhook.transactions.schemas import TransactionIn

app = FastAPI()


@app.post("/v1/webhooks/transactions", status_code=202)
async def receive(transaction: TransactionIn) -> dict[str, object]:
    return {
        "transaction_id": transaction.transaction_id,
        "status": "PROCESSING",
        "duplicate": False,
    }
