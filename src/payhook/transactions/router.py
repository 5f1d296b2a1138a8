"""`GET /v1/transactions/{transaction_id}`: a transaction's status and timing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import AfterValidator
from simplejson import dumps

from payhook.errors import NotFound
from payhook.runtime import RepositoryDep
from payhook.timefmt import isoformat_z
from payhook.transactions.schemas import (
    CONTROL_FREE_PATTERN,
    TransactionOut,
    no_control_characters,
    problem_response,
)

router = APIRouter(tags=["transactions"])
# What a stored id can be (see Identifier); anything else is answered 422 before it reaches SQL,
# where PostgreSQL would refuse a NUL and the answer would be a false "storage unavailable".
TransactionIdPath = Annotated[
    str,
    Path(min_length=1, max_length=255, json_schema_extra={"pattern": CONTROL_FREE_PATTERN}),
    AfterValidator(no_control_characters),
]


@router.get(
    "/v1/transactions/{transaction_id:path}",
    summary="Show one transaction",
    response_model=list[TransactionOut],
    responses={
        200: {"description": "A list holding the one transaction."},
        404: problem_response("No transaction has this id."),
        # FastAPI would document its own JSON shape; the app answers every 422 as problem+json.
        422: problem_response("The path is not a transaction id."),
        503: problem_response("Storage is unavailable. Retry after Retry-After."),
    },
)
async def get_transaction(transaction_id: TransactionIdPath, repository: RepositoryDep) -> Response:
    """The transaction as a one-element list (the original contract's shape)."""
    row = await repository.get(transaction_id)
    if row is None:
        raise NotFound(f"No transaction has id {transaction_id!r}.", transaction_id=transaction_id)
    view = {
        "transaction_id": row.transaction_id,
        "source_account": row.source_account,
        "destination_account": row.destination_account,
        "amount": row.amount,
        "currency": row.currency,
        "status": row.status,
        "created_at": isoformat_z(row.created_at),
        "processed_at": None if row.processed_at is None else isoformat_z(row.processed_at),
    }
    # simplejson writes a Decimal as the exact number it holds: 150.50 stays 150.50.
    return Response(dumps([view], use_decimal=True), media_type="application/json")
