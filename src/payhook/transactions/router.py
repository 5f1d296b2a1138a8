"""`GET /v1/transactions/{transaction_id}`: a transaction's status and timing."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import TypeAdapter, ValidationError

from payhook.errors import NotFound
from payhook.jsonfmt import json_response
from payhook.runtime import RepositoryDep
from payhook.transactions.schemas import Identifier, TransactionOut, problem_response

router = APIRouter(tags=["transactions"])
# What a stored id can be. Any other id is not stored, so it is a 404 (the original contract's
# answer for an unknown id) given before the id reaches SQL, where PostgreSQL would refuse a NUL
# and the answer would be a false "storage unavailable".
_STORABLE_ID: TypeAdapter[str] = TypeAdapter(Identifier)


@router.get(
    "/v1/transactions/{transaction_id:path}",
    summary="Show one transaction",
    response_model=list[TransactionOut],
    responses={
        200: {"description": "A list holding the one transaction."},
        404: problem_response("No transaction has this id."),
        503: problem_response("Storage is unavailable. Retry after Retry-After."),
    },
)
async def get_transaction(transaction_id: str, repository: RepositoryDep) -> Response:
    """The transaction as a one-element list (the original contract's shape)."""
    row = await repository.get(transaction_id) if _storable(transaction_id) else None
    if row is None:
        raise NotFound(f"No transaction has id {transaction_id!r}.", transaction_id=transaction_id)
    # The exact number stored, in plain notation: 150.50 stays 150.50, 1E-18 is 0.000...001.
    return json_response([TransactionOut.model_validate(row._mapping)])


def _storable(transaction_id: str) -> bool:
    try:
        _STORABLE_ID.validate_python(transaction_id)
    except ValidationError:
        return False
    return True
