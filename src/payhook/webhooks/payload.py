"""From raw request bytes to a validated `TransactionIn`, parsing exactly once.

JSON numbers are read as `Decimal`, so an amount is never a binary float; NaN, Infinity and
duplicate keys are refused rather than silently accepted or overwritten.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, NoReturn

from pydantic import ValidationError

from payhook.errors import InvalidRequest, ValidationFailed
from payhook.transactions.schemas import TransactionIn


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number payhook accepts")


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        keys = [key for key, _ in pairs]
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"duplicate key {duplicate!r} in one JSON object")
    return result


def decode_json(raw: bytes) -> Any:
    """Parse a JSON document strictly: exact numbers, no NaN/Infinity, no duplicate keys."""
    try:
        return json.loads(
            raw,
            parse_float=Decimal,
            parse_int=Decimal,
            parse_constant=_refuse_constant,
            object_pairs_hook=_object_without_duplicate_keys,
        )
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"The body is not valid JSON: {exc}") from None


def parse_transaction(raw: bytes) -> TransactionIn:
    """Decode and validate a webhook body, or raise the 4xx that explains why not."""
    document = decode_json(raw)
    if not isinstance(document, dict):
        raise ValidationFailed(
            "The body must be a JSON object.",
            errors=[{"field": "body", "message": "must be a JSON object"}],
        )
    try:
        return TransactionIn.model_validate(document)
    except ValidationError as exc:
        errors = [_field_error(error) for error in exc.errors(include_url=False)]
        raise ValidationFailed.of(errors) from None


def _field_error(error: Any) -> dict[str, str]:
    field = ".".join(str(part) for part in error["loc"]) or "body"
    message = str(error["msg"]).removeprefix("Value error, ")
    return {"field": field, "message": message}
