"""The records that travel between the ingest path, the scheduler, the runners and a user's step.

Plain frozen dataclasses, no SQL: a `PROCESSING_STEP` imports `ClaimedTransaction` from here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from urllib.parse import quote

from payhook.transactions.models import GENERIC, DeliveryOutcome, TransactionStatus
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
    """A due transaction leased to one executor; `claim_token` fences its completion.

    The stored fields are the row as the claim read it: a forwarded delivery's body is built
    from them, so its state and its idempotency key come from the same moment.
    """

    transaction_id: str
    source_account: str | None  # a provider may not name the accounts
    destination_account: str | None
    amount: Decimal
    currency: str
    created_at: datetime
    due_at: datetime
    attempt: int
    claim_token: str
    claimed_at: datetime
    provider: str | None = None  # None: from the generic endpoint
    payment_state: str | None = None  # a provider payment's state when it was claimed
    processed_at: datetime | None = None  # when it was last processed (a provider payment)
    amount_refunded: Decimal | None = None  # a provider payment's, in major units
    disputed: bool | None = None  # a provider payment's

    @property
    def key(self) -> tuple[str, str]:
        """The row's identity: a transaction is unique per (id, provider)."""
        return (self.transaction_id, self.provider or GENERIC)

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt, so an external API applies the effect once.

        A generic transaction: `payhook:<id>`. A provider's payment is processed again whenever
        what the step is given changes (its state, amounts, dispute), so its key names that
        snapshot: `payhook-<provider>:<id>:<state>:<digest of the snapshot>`. A second partial
        refund or a dispute opened on a captured payment is new to the receiver, never a
        repeat it drops. Generic and provider keys have prefixes of their own, so no id sent
        to the generic endpoint can take a provider payment's key. Printable ASCII, so it fits
        an HTTP header (forwarding sends it as `webhook-id`): a key that is not is
        percent-encoded under the prefix's `-utf8` twin, which no other key can have.
        """
        if self.provider is None:
            return _printable("payhook", self.transaction_id)
        return _printable(
            f"payhook-{self.provider}",
            f"{self.transaction_id}:{self.payment_state}:{self._snapshot_digest()}",
        )

    def _snapshot_digest(self) -> str:
        """Ten hex digits over what a provider payment's step is given besides its id."""
        fields = (
            self.payment_state,
            _plain(self.amount),
            self.currency,
            _plain(self.amount_refunded),
            self.disputed,
            self.source_account,
            self.destination_account,
        )
        return hashlib.sha256(repr(fields).encode()).hexdigest()[:10]


def _printable(prefix: str, key: str) -> str:
    if key.isascii() and key.isprintable():
        return f"{prefix}:{key}"
    return f"{prefix}-utf8:{quote(key, safe='')}"


def _plain(amount: Decimal | None) -> str | None:
    """An amount the same however the database wrote it (10.50 and 10.5 alike)."""
    return None if amount is None else format(amount.normalize(), "f")


@dataclass(frozen=True, slots=True)
class AttemptReport:
    """What a step may tell about its attempt for the timeline: the far side's answer."""

    status: int | None = None  # the HTTP status; None when nothing answered
    latency_seconds: float | None = None
    answer: str | None = None  # the first KB of the answer, or what went wrong


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt of the processing step came to."""

    claimed: ClaimedTransaction
    finished_at: datetime
    error: str | None = None
    retry_at: datetime | None = None  # with an error: try again then; without: give up
    # False: the attempt is given back (the destination was down, or it was never sent).
    counted: bool = True
    report: AttemptReport | None = None
