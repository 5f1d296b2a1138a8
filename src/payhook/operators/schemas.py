"""Pydantic shapes of the operator API: filters, pages, timelines, replays."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from payhook.providers.model import PaymentState
from payhook.providers.registry import PROVIDERS
from payhook.transactions.models import TransactionStatus
from payhook.transactions.schemas import (
    CONTROL_FREE_PATTERN,
    Identifier,
    TransactionOut,
    no_control_characters,
)

MAX_BULK_RETRY = 10_000
MAX_CURSOR_LENGTH = 2048
# A cursor is opaque (payhook.operators.service.encode_cursor), but its shape is exact: unpadded
# base64url of at least 8 bytes (11 characters), and every string of this shape is accepted.
CURSOR_FORMAT = "payhook-cursor"
# 11 + 4k characters, or 12 + 4k, or 14 + 4k: never 4k + 1, which no byte string encodes to.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{11}(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-](?:[A-Za-z0-9_-]{2})?)?$"

Cursor = Annotated[
    str,
    Field(
        max_length=MAX_CURSOR_LENGTH,
        pattern=CURSOR_PATTERN,
        json_schema_extra={"format": CURSOR_FORMAT},
    ),
]


def _in_utc(value: datetime) -> datetime:
    """The instant in UTC; one beyond year 1..9999 in UTC is before or after every row."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# Strings that reach SQL: PostgreSQL refuses NUL in text, which would read as storage failing.
SearchText = Annotated[
    str,
    Field(max_length=255, json_schema_extra={"pattern": CONTROL_FREE_PATTERN}),
    AfterValidator(no_control_characters),
]
CurrencyCode = Annotated[
    str,
    Field(min_length=3, max_length=3, json_schema_extra={"pattern": CONTROL_FREE_PATTERN}),
    AfterValidator(no_control_characters),
    AfterValidator(str.upper),  # stored upper case: "usd" must find USD, not nothing
]
# What a stored id can be: an operator path naming anything else is a 422 before it reaches SQL,
# where PostgreSQL would refuse a NUL and the answer would be a false "storage unavailable".
TransactionIdPath = Annotated[Identifier, Path()]
Reason = Annotated[
    str,
    Field(max_length=1000, json_schema_extra={"pattern": r"^[^\u0000]*$"}),
    AfterValidator(_no_nul),
]


NO_PROVIDER = "none"
"""The `provider` value naming the generic endpoint's transactions."""
PROVIDER_NAMES = (*PROVIDERS, NO_PROVIDER)
"""What `provider` may name: a provider payhook knows, or `none` for the generic endpoint."""


def _known_provider(name: str) -> str:
    if name not in PROVIDER_NAMES:
        raise ValueError(f"unknown provider; one of {', '.join(PROVIDER_NAMES)}")
    return name


ProviderName = Annotated[
    str,
    Field(max_length=32, json_schema_extra={"enum": list(PROVIDER_NAMES)}),
    AfterValidator(_known_provider),
]

# A transaction is unique per (provider, id): without `provider`, the generic endpoint's one with
# this id is meant, else the first provider's (by name); `none` names the generic endpoint's.
ProviderQuery = Annotated[
    ProviderName | None,
    Query(description="whose transaction: stripe, ..., or none for the generic endpoint's"),
]


def _flag(value: Any) -> Any:
    # Lax bool parsing takes 0, 1.0, "yes", "off"...: a query says true or false, JSON a boolean.
    if isinstance(value, bool) or value in ("true", "false"):
        return value
    raise ValueError("must be true or false")


def _json_integer(value: Any) -> Any:
    # JSON Schema's integer is any number without a fraction (300.0 too); not "300", not true.
    if type(value) is float and value.is_integer():
        return int(value)
    if type(value) is not int:
        raise ValueError("must be a JSON integer")
    return value


# RFC 3339 date-time, as the document's `format: date-time` says; lax parsing would also take
# "150.5" as seconds since 1970.
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _date_time(value: Any) -> Any:
    if isinstance(value, str) and not _DATE_TIME.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time, such as 2026-01-31T12:00:00Z")
    return value


def _empty_means_unset(data: Any) -> Any:
    """`status=` (an empty form field, a template copied as written) is the same as no `status`."""
    if isinstance(data, dict):
        return {key: value for key, value in data.items() if value != ""}
    return data


def _document_empty(schema: dict[str, Any]) -> None:
    """Publish that an empty string is accepted (and means "no filter") beside the real type."""
    alternatives = schema.pop("anyOf", None)
    if alternatives is None:
        kept = ("title", "description", "default")
        alternatives = [{key: schema.pop(key) for key in list(schema) if key not in kept}]
    schema["anyOf"] = [*alternatives, {"type": "string", "maxLength": 0}]


def _optional(description: str | None = None, default: Any = None) -> Any:
    """A filter field that may be left out, or given empty, for "no filter"."""
    return Field(default, description=description, json_schema_extra=_document_empty)


Flag = Annotated[bool, BeforeValidator(_flag)]
# Converted to UTC here: a driver converting 0001-01-01T00:00+05:00 itself fails mid-query.
Instant = Annotated[AwareDatetime, BeforeValidator(_date_time), AfterValidator(_in_utc)]


class TransactionFilter(BaseModel):
    """Which transactions: every given condition must hold; an empty value means no condition."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: TransactionStatus | None = _optional()
    created_after: Instant | None = _optional("inclusive")
    created_before: Instant | None = _optional("exclusive")
    account: SearchText | None = _optional("source or destination")
    currency: CurrencyCode | None = _optional()
    late: Flag | None = _optional(
        "still PROCESSING more than late_after_seconds past due, "
        "or processed more than late_after_seconds after due"
    )
    late_after_seconds: Annotated[float, Field(ge=0, le=86_400)] = _optional(default=5.0)
    conflicted: Flag | None = _optional("has a conflicting delivery")
    q: SearchText | None = _optional("transaction_id starts with this")
    provider: ProviderName | None = _optional(
        "a provider's payments (stripe, ...), or `none` for the generic endpoint's"
    )
    payment_state: PaymentState | None = _optional("a provider payment's state")

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, data: Any) -> Any:
        return _empty_means_unset(data)


class FilterIn(TransactionFilter):
    """The filter as a JSON body, where every value must have its JSON type.

    Lax parsing, right for query strings, would take "5" for 5, "true" for true or 1700000000
    for a time here. (`type() in`, not isinstance: a bool is an int, and is not a number here.)
    """

    @model_validator(mode="before")
    @classmethod
    def _json_types(cls, data: Any) -> Any:
        data = _empty_means_unset(data)
        if isinstance(data, dict):
            for name, (kinds, kind) in _FILTER_JSON_TYPES.items():
                value = data.get(name)
                if value is not None and type(value) not in kinds:
                    raise ValueError(f"{name} must be a JSON {kind}")
        return data


_FILTER_JSON_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "created_after": ((str,), "string"),
    "created_before": ((str,), "string"),
    "late_after_seconds": ((int, float), "number"),
    "late": ((bool,), "boolean"),
    "conflicted": ((bool,), "boolean"),
}


class ListQuery(TransactionFilter):
    """A filter plus the page wanted, newest first."""

    limit: Annotated[int, Field(ge=1, le=500)] = _optional(default=50)
    cursor: Cursor | None = _optional("next_cursor of the last page")


class TransactionSummary(TransactionOut):
    """A transaction as operators see it: what anyone sees, and its schedule."""

    due_at: datetime
    attempts: int
    last_error: str | None


class TransactionPage(BaseModel):
    items: list[TransactionSummary]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null at the end"
    )


class TimelineEvent(BaseModel):
    """One thing that happened to a transaction; `kind` says which fields are set."""

    at: datetime
    kind: Literal["delivery", "provider_event", "attempt", "operator_action"]
    outcome: str | None = Field(
        None, description="deliveries: accepted, duplicate, conflict; provider events: the verdict"
    )
    event_id: str | None = Field(None, description="provider events: the provider's event id")
    event_type: str | None = Field(None, description="provider events: e.g. charge.refunded")
    deliveries: int | None = Field(None, description="provider events: times received")
    signature: str | None = Field(None, description="deliveries: the scheme that verified it")
    raw_body: str | None = Field(None, description="deliveries, with ?raw=true")
    raw_body_purged: bool | None = Field(
        None, description="deliveries: no body kept (purged, or past the per-transaction bound)"
    )
    repeats: int | None = Field(
        None, description="deliveries: how often this same body arrived (the first at `at`)"
    )
    last_received_at: datetime | None = Field(None, description="deliveries: the last repeat")
    attempt: int | None = Field(
        None, description="attempts: numbered across replays (a replay resets only the budget)"
    )
    finished_at: datetime | None = None
    error: str | None = None
    destination_status: int | None = Field(
        None, description="attempts, when forwarding: the HTTP status DESTINATION_URL answered"
    )
    latency_ms: float | None = Field(None, description="attempts: how long the answer took")
    answer: str | None = Field(None, description="attempts: the first KB of the answer")
    action: str | None = None
    actor: str | None = None
    reason: str | None = None
    detail: dict[str, Any] | None = None


class Timeline(BaseModel):
    transaction: TransactionSummary
    events: list[TimelineEvent]
    next_offset: int | None = Field(
        None, description="pass as ?offset= for the next page of events; null at the end"
    )


class ConflictingDelivery(BaseModel):
    """A re-delivery refused with 409: what it carried, beside what is stored."""

    delivery_id: int
    received_at: datetime
    signature: str | None
    body: str | None = Field(description="the raw body as received; null once purged")
    differs: list[str] = Field(description="the fields whose value is not the stored one")
    stored: TransactionSummary


class ConflictPage(BaseModel):
    items: list[ConflictingDelivery]
    next_before: int | None = Field(description="pass as the next page's `before`; null at the end")


class RetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason | None = None


# Conditions that narrow a bulk replay (a filter's status does not: only FAILED ones replay).
NARROWING = (
    "created_after",
    "created_before",
    "account",
    "currency",
    "late",
    "conflicted",
    "q",
    "provider",
    "payment_state",
)


def _names_what_to_replay(schema: dict[str, Any]) -> None:
    # What the validator below requires, as JSON Schema: ids, "all": true, or a narrowing filter.
    # Null and "" both mean "no condition" (TransactionFilter), so neither narrows.
    narrowing = [
        {"required": [name], "properties": {name: {"not": {"enum": [None, ""]}}}}
        for name in NARROWING
    ]
    schema["anyOf"] = [
        {"required": ["ids"], "properties": {"ids": {"type": "array"}}},
        {"required": ["all"], "properties": {"all": {"const": True}}},
        {"required": ["filter"], "properties": {"filter": {"anyOf": narrowing}}},
    ]


class BulkRetryIn(BaseModel):
    """Replay the FAILED transactions matching `filter` (its status is ignored), or these `ids`;
    with neither, `"all": true` must say that every FAILED one is meant."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_names_what_to_replay)

    filter: FilterIn = FilterIn()
    ids: list[Identifier] | None = Field(None, max_length=MAX_BULK_RETRY)
    all: bool = Field(
        False, strict=True, description="required (true) when neither ids nor a filter narrows"
    )
    reason: Reason | None = None
    limit: Annotated[int, BeforeValidator(_json_integer)] = Field(1000, ge=1, le=MAX_BULK_RETRY)

    @model_validator(mode="after")
    def _says_what_to_replay(self) -> BulkRetryIn:
        narrowed = any(getattr(self.filter, name) is not None for name in NARROWING)
        if self.ids is None and not narrowed and not self.all:
            raise ValueError(
                'name the transactions: "ids", a filter that narrows, or "all": true for every '
                "FAILED one"
            )
        return self


class RetryOut(BaseModel):
    retried: int
    transaction_ids: list[str]
