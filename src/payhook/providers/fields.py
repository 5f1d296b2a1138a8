"""Reading verified provider bodies: JSON without floats, typed field access, minor units.

A verified body whose shape payhook does not expect raises `Unmappable`; the event is then
recorded `ignored` with that reason, never answered with a 4xx (the provider would retry a
delivery that can never succeed). Only a body that is not JSON at all is the sender's fault.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import simplejson

from payhook.db import storable_text
from payhook.errors import InvalidRequest
from payhook.providers import currencies

JsonObject = Mapping[str, Any]
# Amounts beyond this are no real payment, and would not fit a BIGINT column of minor units.
MAX_MINOR = 10**18 - 1


class Unmappable(ValueError):
    """A verified body (or item) whose shape does not say what payhook needs."""


def load_json(raw: bytes) -> Any:
    """The body parsed with exact decimals; InvalidRequest (400) when it is not JSON at all."""
    try:
        return simplejson.loads(raw, use_decimal=True, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("The body is not valid JSON.") from None


# The JSON escapes of what no text column takes: NUL (PostgreSQL refuses it) and UTF-16
# surrogates (a lone one is no character; UTF-8 cannot encode it). A pair also matches: harmless.
_UNSTORABLE_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def storable(document: Any, raw: bytes) -> Any:
    """`document` (parsed from `raw`) with each NUL and lone surrogate in its strings and keys
    read as U+FFFD, the replacement character.

    A verified body may carry them as JSON escapes; stored as they are, its event would fail
    to store on every redelivery (PostgreSQL refuses a NUL in text, no UTF-8 holds a lone
    surrogate), and a verified event must never be refused. The same body always reads the
    same, so redeliveries still match; the raw body is kept unchanged as the evidence. The
    check is one search of the raw bytes: only a body with such an escape is walked.
    """
    if b"\\u" not in raw or _UNSTORABLE_ESCAPE.search(raw) is None:
        return document
    return _replaced(document)


def _replaced(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {_replaced(key): _replaced(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_replaced(item) for item in value]
    return value


def dump_json(value: Any) -> bytes:
    """Compact, key-sorted JSON (Decimals exact): the stored evidence of one Adyen item."""
    text = simplejson.dumps(value, use_decimal=True, sort_keys=True, separators=(",", ":"))
    return text.encode()


def obj(value: Any, name: str) -> JsonObject:
    """`value` as a JSON object, or Unmappable naming `name`."""
    if not isinstance(value, Mapping):
        raise Unmappable(f"{name} is not an object")
    return value


def member(parent: JsonObject, key: str) -> JsonObject:
    """The object at `parent[key]`."""
    return obj(parent.get(key), key)


def text(parent: JsonObject, key: str) -> str:
    """A required non-empty string field."""
    value = parent.get(key)
    if not isinstance(value, str) or not value:
        raise Unmappable(f"{key} is missing or not a string")
    return value


def optional_text(parent: JsonObject, key: str) -> str | None:
    """A string field that may be absent, null or empty (then None)."""
    value = parent.get(key)
    return value if isinstance(value, str) and value else None


def integer(parent: JsonObject, key: str) -> int:
    """A required integer from 0 to MAX_MINOR (a JSON boolean or fraction is not one)."""
    value = parent.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MINOR:
        raise Unmappable(f"{key} is not an integer from 0 to {MAX_MINOR}")
    return value


def unix_seconds(parent: JsonObject, key: str) -> int | None:
    """A Unix-seconds field, None when absent or unusable."""
    value = parent.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**33:
        return None
    return value


def unix_time(parent: JsonObject, key: str) -> datetime | None:
    """A Unix-seconds field as an aware UTC datetime, None when absent or unusable."""
    seconds = unix_seconds(parent, key)
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def iso_time(parent: JsonObject, key: str) -> datetime | None:
    """An RFC 3339 field as an aware UTC datetime, None when absent or unusable."""
    value = parent.get(key)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else None


def currency_code(value: Any) -> str:
    """An ISO 4217 alphabetic code, upper-cased; Unmappable otherwise."""
    if not isinstance(value, str) or len(value) != 3 or not value.isalpha():
        raise Unmappable("currency is not a three-letter code")
    return value.upper()


def known_currency(provider: str, value: Any) -> str:
    """`value` as an upper-case code whose exponent `provider` (or ISO 4217) gives."""
    code = currency_code(value)
    try:
        currencies.exponent(provider, code)
    except currencies.UnknownCurrency as exc:
        raise Unmappable(str(exc)) from None
    return code


def minor_of_major(provider: str, value: Any, currency: str) -> int:
    """A decimal string in major units (PayPal's `"21.12"`) as exact minor units.

    More fractional digits than the currency has (`"10.999"` USD, `"5.5"` JPY) is Unmappable:
    rounding money silently is how 100x bugs start.
    """
    if not isinstance(value, str):
        raise Unmappable("the amount value is not a decimal string")
    try:
        minor = currencies.parse_major(provider, value, currency)[1]
    except ValueError as exc:
        raise Unmappable(f"amount {exc}") from None
    if minor > MAX_MINOR:
        raise Unmappable(f"amount {value} is larger than any payment")
    return minor


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
