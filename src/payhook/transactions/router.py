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
        200: {
            "description": "Every transaction with this id: the generic endpoint's and each "
            "provider's (a transaction is unique per provider and id)."
        },
        404: problem_response("No transaction has this id."),
        503: problem_response("Storage is unavailable. Retry after Retry-After."),
    },
)
async def get_transaction(transaction_id: str, repository: RepositoryDep) -> Response:
    """Every transaction with this id, as a list (the original contract's list-of-one shape)."""
    rows = await repository.find(transaction_id) if _storable(transaction_id) else []
    if not rows:
        raise NotFound(f"No transaction has id {transaction_id!r}.", transaction_id=transaction_id)
    # The exact number stored, in plain notation: 150.50 stays 150.50, 1E-18 is 0.000...001.
    return json_response([TransactionOut.model_validate(row._mapping) for row in rows])


def _storable(transaction_id: str) -> bool:
    try:
        _STORABLE_ID.validate_python(transaction_id)
    except ValidationError:
        return False
    return True
