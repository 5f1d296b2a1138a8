"""The records that travel between the ingest path, the scheduler, the runners and a user's step.

Plain frozen dataclasses, no SQL: a `PROCESSING_STEP` imports `ClaimedTransaction` from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from payhook.transactions.models import DeliveryOutcome, TransactionStatus
from payhook.transactions.schemas import TransactionIn


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A validated webhook waiting to be stored."""

    transaction: TransactionIn
    raw_body: bytes
    received_at: datetime
    due_at: datetime
    signature: str | None = None  # the scheme that verified it


@dataclass(frozen=True, slots=True)
class IngestResult:
    outcome: DeliveryOutcome
    status: TransactionStatus


@dataclass(frozen=True, slots=True)
class ClaimedTransaction:
    """A due transaction leased to one executor; `claim_token` fences its completion."""

    transaction_id: str
    source_account: str
    destination_account: str
    amount: Decimal
    currency: str
    created_at: datetime
    due_at: datetime
    attempt: int
    claim_token: str
    claimed_at: datetime

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt, so an external API applies the effect once."""
        return f"payhook:{self.transaction_id}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt of the processing step came to."""

    claimed: ClaimedTransaction
    finished_at: datetime
    error: str | None = None
    retry_at: datetime | None = None  # with an error: try again then; without: give up
