"""Pydantic shapes of the operator API: filters, pages, timelines, replays."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from payhook.transactions.models import TransactionStatus
from payhook.transactions.schemas import CONTROL_FREE_PATTERN, Identifier, no_control_characters

MAX_BULK_RETRY = 10_000
MAX_CURSOR_LENGTH = 2048
# A cursor is opaque: no pattern tells one this service issued from a forged one (those are
# answered 400). The format names that; the pattern is its alphabet (unpadded base64url).
CURSOR_FORMAT = "payhook-cursor"
CURSOR_PATTERN = r"^[A-Za-z0-9_-]*$"

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
]
Reason = Annotated[
    str,
    Field(max_length=1000, json_schema_extra={"pattern": r"^[^\u0000]*$"}),
    AfterValidator(_no_nul),
]
# Converted to UTC here: a driver converting 0001-01-01T00:00+05:00 itself fails mid-query.
Instant = Annotated[AwareDatetime, AfterValidator(_in_utc)]


class TransactionFilter(BaseModel):
    """Which transactions: every given condition must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: TransactionStatus | None = None
    created_after: Instant | None = Field(None, description="inclusive")
    created_before: Instant | None = Field(None, description="exclusive")
    account: SearchText | None = Field(None, description="source or destination")
    currency: CurrencyCode | None = None
    late: bool | None = Field(
        None,
        description="still PROCESSING more than late_after_seconds past due, "
        "or processed more than late_after_seconds after due",
    )
    late_after_seconds: float = Field(5.0, ge=0, le=86_400)
    conflicted: bool | None = Field(None, description="has a conflicting delivery")
    q: SearchText | None = Field(None, description="transaction_id starts with this")


class ListQuery(TransactionFilter):
    """A filter plus the page wanted, newest first."""

    limit: int = Field(50, ge=1, le=500)
    cursor: Cursor | None = Field(None, description="next_cursor of the last page")


class TransactionSummary(BaseModel):
    transaction_id: str
    source_account: str
    destination_account: str
    amount: Decimal
    currency: str
    status: TransactionStatus
    created_at: datetime
    due_at: datetime
    processed_at: datetime | None
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
    kind: Literal["delivery", "attempt", "operator_action"]
    outcome: str | None = None
    signature: str | None = Field(None, description="deliveries: the scheme that verified it")
    raw_body: str | None = Field(None, description="deliveries, with ?raw=true")
    raw_body_purged: bool | None = None
    attempt: int | None = None
    finished_at: datetime | None = None
    error: str | None = None
    action: str | None = None
    actor: str | None = None
    reason: str | None = None
    detail: dict[str, Any] | None = None


class Timeline(BaseModel):
    transaction: TransactionSummary
    events: list[TimelineEvent]


class RetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason | None = None


class BulkRetryIn(BaseModel):
    """Replay the FAILED transactions matching `filter` (its status is ignored), or these `ids`."""

    model_config = ConfigDict(extra="forbid")

    filter: TransactionFilter = TransactionFilter()
    ids: list[Identifier] | None = Field(None, max_length=MAX_BULK_RETRY)
    reason: Reason | None = None
    limit: int = Field(1000, ge=1, le=MAX_BULK_RETRY)


class RetryOut(BaseModel):
    retried: int
    transaction_ids: list[str]
