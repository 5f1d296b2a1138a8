"""Pydantic shapes of the operator API: filters, pages, timelines, replays."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from payhook.transactions.models import TransactionStatus

MAX_BULK_RETRY = 10_000


class TransactionFilter(BaseModel):
    """Which transactions: every given condition must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: TransactionStatus | None = None
    created_after: AwareDatetime | None = Field(None, description="inclusive")
    created_before: AwareDatetime | None = Field(None, description="exclusive")
    account: str | None = Field(None, max_length=255, description="source or destination")
    currency: str | None = Field(None, min_length=3, max_length=3)
    late: bool | None = Field(
        None,
        description="still PROCESSING more than late_after_seconds past due, "
        "or processed more than late_after_seconds after due",
    )
    late_after_seconds: float = Field(5.0, ge=0, le=86_400)
    conflicted: bool | None = Field(None, description="has a conflicting delivery")
    q: str | None = Field(None, max_length=255, description="transaction_id starts with this")


class ListQuery(TransactionFilter):
    """A filter plus the page wanted, newest first."""

    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, max_length=2048, description="next_cursor of the last page")


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

    reason: str | None = Field(None, max_length=1000)


class BulkRetryIn(BaseModel):
    """Replay the FAILED transactions matching `filter` (its status is ignored), or these `ids`."""

    model_config = ConfigDict(extra="forbid")

    filter: TransactionFilter = TransactionFilter()
    ids: list[str] | None = Field(None, max_length=MAX_BULK_RETRY)
    reason: str | None = Field(None, max_length=1000)
    limit: int = Field(1000, ge=1, le=MAX_BULK_RETRY)


class RetryOut(BaseModel):
    retried: int
    transaction_ids: list[str]
