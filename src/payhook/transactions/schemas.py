"""Pydantic shapes of what comes in and what goes out. Money stays `Decimal` end to end."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, Literal

import pycountry
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from payhook.providers.model import PaymentState
from payhook.timefmt import isoformat_z
from payhook.transactions.models import GENERIC, TransactionStatus

MAX_INTEGER_DIGITS = 20
MAX_FRACTION_DIGITS = 18


# Bidirectional formatting characters let an id display as another one ("Trojan Source").
BIDI_CONTROLS = r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_BIDI = re.compile(f"[{BIDI_CONTROLS}]")
# What no_control_characters refuses (category Cc, bidi controls), as a published pattern.
CONTROL_FREE_PATTERN = rf"^[^\u0000-\u001f\u007f-\u009f{BIDI_CONTROLS}]*$"


def no_control_characters(value: str) -> str:
    if any(unicodedata.category(char) == "Cc" for char in value) or _BIDI.search(value):
        raise ValueError("must not contain control characters")
    return value


# Identifiers (transaction ids, accounts) must not look like another identifier. Refused: control
# characters (Cc), format characters (Cf: bidi controls, zero-width U+200B/U+200D/U+2060, the BOM,
# the soft hyphen, tag characters), every space but U+0020 (NBSP and kin, line separators),
# a leading or trailing space, and text that is not in Unicode NFC (an NFD "é" is the NFC "é"
# to a reader). Refused, not normalised: the stored id stays byte for byte what the provider
# sent and signed, and a provider's ids are ASCII in practice.
_LOOK_ALIKE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def _refused_alone(char: str) -> bool:
    """A character an identifier never holds (whatever surrounds it); a space only at the ends."""
    if char == " ":
        return False
    return unicodedata.category(char) in _LOOK_ALIKE_CATEGORIES or not unicodedata.is_normalized(
        "NFC", char
    )


def plain_identifier(value: str) -> str:
    # Printable ASCII (the ids and accounts of nearly every request) holds no refused character
    # and is NFC already: two C-level checks instead of two Unicode lookups a character, which
    # were about a tenth of the webhook's CPU under wrk (py-spy, benchmarks/README.md).
    plain_ascii = value.isascii() and value.isprintable()
    if not plain_ascii and any(_refused_alone(char) for char in value):
        if any(unicodedata.category(char) == "Cc" for char in value) or _BIDI.search(value):
            raise ValueError("must not contain control characters")
        raise ValueError(
            "must not contain format characters (zero-width, soft hyphen, BOM, tags), spaces "
            "other than U+0020, or characters that change under Unicode NFC"
        )
    if value != value.strip(" "):
        raise ValueError("must not begin or end with a space")
    if not plain_ascii and not unicodedata.is_normalized("NFC", value):
        raise ValueError("must be in Unicode normalisation form NFC")
    return value


def _class_escape(code: int) -> str:
    return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)


@cache
def identifier_pattern() -> str:
    """plain_identifier's rule as a JSON Schema pattern (exact but for NFC across characters,
    a combining mark that composes with the one before it), for clients and schema fuzzers."""
    ranges: list[tuple[int, int]] = []
    for code in range(0x110000):
        if 0xD800 <= code <= 0xDFFF or not _refused_alone(chr(code)):
            continue
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    refused = "".join(
        _class_escape(a) if a == b else f"{_class_escape(a)}-{_class_escape(b)}" for a, b in ranges
    )
    edge = f"[^ {refused}]"
    return f"^{edge}([^{refused}]*{edge})?$"


def _publish_identifier_pattern(schema: dict[str, Any]) -> None:
    schema["pattern"] = identifier_pattern()


def _json_number(value: Any) -> Any:
    # bool is an int in Python, and strings would be coerced: both are refused as amounts.
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise ValueError("must be a JSON number")
    return value


def _exact_amount(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite number")
    if not value > 0:
        raise ValueError("must be greater than 0")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > MAX_FRACTION_DIGITS:
        raise ValueError(f"must have at most {MAX_FRACTION_DIGITS} digits after the decimal point")
    if value.adjusted() >= MAX_INTEGER_DIGITS:
        raise ValueError(f"must be below 10^{MAX_INTEGER_DIGITS}")
    return value


@cache
def known_currencies() -> frozenset[str]:
    """ISO 4217 alphabetic codes, from the pycountry database."""
    return frozenset(currency.alpha_3 for currency in pycountry.currencies)


def _list_known_currencies(schema: dict[str, Any]) -> None:
    # Published as an enum so clients (and schema fuzzers) know which codes are accepted.
    schema["enum"] = sorted(known_currencies())


def _known_currency(value: str) -> str:
    if value not in known_currencies():
        raise ValueError("must be a known ISO 4217 currency code, such as USD or INR")
    return value


Identifier = Annotated[
    str,
    Field(min_length=1, max_length=255, strict=True, json_schema_extra=_publish_identifier_pattern),
    AfterValidator(plain_identifier),
]
Amount = Annotated[
    Decimal,
    BeforeValidator(_json_number),
    AfterValidator(_exact_amount),
    # multipleOf 1e-18 is as close as JSON Schema gets to "at most 18 fraction digits".
    WithJsonSchema(
        {
            "type": "number",
            "exclusiveMinimum": 0,
            "exclusiveMaximum": 10**MAX_INTEGER_DIGITS,
            "multipleOf": 10.0**-MAX_FRACTION_DIGITS,
            "examples": [1500, 150.5],
        }
    ),
]
Currency = Annotated[
    str,
    Field(
        min_length=3,
        max_length=3,
        pattern="^[A-Z]{3}$",
        strict=True,
        examples=["INR"],
        json_schema_extra=_list_known_currencies,
    ),
    AfterValidator(_known_currency),
]


class TransactionIn(BaseModel):
    """A transaction webhook as a payment provider posts it. Unknown extra fields are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    transaction_id: Identifier
    source_account: Identifier
    destination_account: Identifier
    amount: Amount
    currency: Currency

    def same_content(self, other: TransactionContent) -> bool:
        """Whether a re-delivery carries what is stored (amounts compare by value: 1.5 == 1.50)."""
        return all(
            getattr(self, name) == getattr(other, name)
            for name in TransactionContent.model_fields
            if name != "status"
        )


class TransactionContent(BaseModel):
    """The stored fields a re-delivery is compared with (every one but `status`)."""

    model_config = ConfigDict(frozen=True)

    source_account: str
    destination_account: str
    amount: Decimal
    currency: str
    status: TransactionStatus


class Acknowledgement(BaseModel):
    """The body of a `202 Accepted`."""

    transaction_id: str
    status: TransactionStatus
    duplicate: bool


# Responses write a Decimal as the exact JSON number it holds (simplejson), not pydantic's string.
ExactAmountOut = Annotated[Decimal, WithJsonSchema({"type": "number", "examples": [150.5]})]


def _none_if_generic(value: Any) -> Any:
    return None if value == GENERIC else value


class TransactionOut(BaseModel):
    """One transaction as `GET /v1/transactions/{id}` shows it.

    The last four are null for the generic endpoint's transactions. A provider's payment may
    not name its accounts (null then); its amounts are in major units by the provider's rules.
    """

    transaction_id: str
    source_account: str | None
    destination_account: str | None
    amount: ExactAmountOut
    currency: str
    status: TransactionStatus
    created_at: datetime
    processed_at: datetime | None
    provider: Annotated[str | None, BeforeValidator(_none_if_generic)] = Field(
        examples=["stripe"], description="null for /v1/webhooks/transactions"
    )
    payment_state: PaymentState | None
    amount_refunded: ExactAmountOut | None
    disputed: bool | None


def _whole_seconds(moment: datetime) -> str:
    return isoformat_z(moment, "seconds")


class Health(BaseModel):
    status: Literal["HEALTHY"]
    # To the second: `2024-01-15T10:30:00Z`, the original contract's form.
    current_time: Annotated[
        datetime,
        PlainSerializer(_whole_seconds, return_type=str),
        WithJsonSchema({"type": "string", "format": "date-time", "title": "Current Time"}),
    ]


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str


def problem_response(description: str) -> dict[str, Any]:
    """An OpenAPI `responses` entry for an error answered as problem+json."""
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": Problem.model_json_schema()}},
    }
