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
        # Linear: one pass with a set (list.count per key was quadratic, and stalled the loop).
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r} in one JSON object")
            seen.add(key)
    return result


def _number(text: str) -> Decimal:
    # Decimal("1e9999999999999999999") raises InvalidOperation (an ArithmeticError, not a
    # ValueError): an exponent beyond what Decimal holds is refused here like NaN.
    try:
        return Decimal(text)
    except ArithmeticError:
        raise ValueError(f"{text[:40]!r} is not a number payhook accepts") from None


def decode_json(raw: bytes) -> Any:
    """Parse a JSON document strictly: UTF-8 only (RFC 8259), exact numbers, no NaN/Infinity,
    no duplicate keys. (json.loads on bytes would also take UTF-16 and UTF-32.)"""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The body is not valid JSON: it is not UTF-8.") from None
    if text.startswith("\ufeff"):  # what json.loads refuses before it decodes (RFC 8259, 8.1)
        raise InvalidRequest("The body is not valid JSON: it starts with a byte order mark.")
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"The body is not valid JSON: {exc}") from None


# Built once: json.loads with options builds a new decoder on every call.
_DECODER = json.JSONDecoder(
    parse_float=_number,
    parse_int=_number,
    parse_constant=_refuse_constant,
    object_pairs_hook=_object_without_duplicate_keys,
)


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
