"""Tables. The transactions row is also the job: its schedule lives in the same row."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    literal_column,
    text,
    tuple_,
)
from sqlalchemy.orm import Mapped, mapped_column

from payhook.db import Base, ExactDecimal, UTCDateTime

AutoId = BigInteger().with_variant(Integer(), "sqlite")


class TransactionStatus(StrEnum):
    PROCESSING = "PROCESSING"
    PROCESSED = "PROCESSED"
    FAILED = "FAILED"


class DeliveryOutcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


class AttemptOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # Failed, but given back: the destination was down, so the attempt was not spent.
    DEFERRED = "deferred"


GENERIC = ""
"""The `provider` of a transaction from `/v1/webhooks/transactions` (shown as null)."""


class Transaction(Base):
    """One payment: from the generic endpoint, or a provider's payment folded from its events."""

    __tablename__ = "transactions"

    # Unique per (provider, id): a generic "pi_1" and Stripe's "pi_1" are two transactions.
    transaction_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32), primary_key=True, server_default=GENERIC)
    # Always set by the generic endpoint; a provider may not say (Stripe without a customer).
    source_account: Mapped[str | None] = mapped_column(String(255))
    destination_account: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[Decimal] = mapped_column(ExactDecimal())
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claim_token: Mapped[str | None] = mapped_column(String(36))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    # The payment's snapshot (payhook.providers.state); NULL for the generic endpoint.
    payment_state: Mapped[str | None] = mapped_column(String(24))
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    amount_refunded: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    disputed: Mapped[bool | None] = mapped_column(Boolean)

    __table_args__ = (
        # Only pending rows are ever claimed, so only they are indexed by due time.
        Index(
            "ix_transactions_pending_due_at",
            "due_at",
            postgresql_where=text(f"status = '{TransactionStatus.PROCESSING}'"),
            sqlite_where=text(f"status = '{TransactionStatus.PROCESSING}'"),
        ),
    )


def _belongs_to_a_transaction() -> ForeignKeyConstraint:
    return ForeignKeyConstraint(
        ["transaction_id", "provider"], ["transactions.transaction_id", "transactions.provider"]
    )


class Delivery(Base):
    """Every webhook delivery received, with its raw body: the evidence behind each transaction."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    transaction_id: Mapped[str] = mapped_column(String(255), index=True)
    # Deliveries are the generic endpoint's: always its provider, kept for the foreign key.
    provider: Mapped[str] = mapped_column(String(32), server_default=GENERIC)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(16))
    # NULL once purged past retention (`payhook purge`); the row itself stays as evidence.
    raw_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The scheme that verified it ("none" when unsigned); only verified deliveries are stored.
    signature: Mapped[str | None] = mapped_column(String(32))
    # One row per distinct body per transaction (SHA-256 of the raw body), counting its repeats:
    # a replayed request adds 1 to `repeats`, not a row. Past MAX_BODIES_PER_TRANSACTION bodies,
    # deliveries are counted in an "overflow:<outcome>" row without a body. NULL before 0004.
    body_sha256: Mapped[str | None] = mapped_column(String(64))
    repeats: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    last_received_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("uq_deliveries_transaction_id_body", "transaction_id", "body_sha256", unique=True),
        _belongs_to_a_transaction(),
    )


class ProcessingAttempt(Base):
    """One run of the processing step for one transaction."""

    __tablename__ = "processing_attempts"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    transaction_id: Mapped[str] = mapped_column(String(255), index=True)
    provider: Mapped[str] = mapped_column(String(32), server_default=GENERIC)
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    # What the step reported of the far side (forwarding: the destination's answer).
    destination_status: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    answer: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (_belongs_to_a_transaction(),)


class OperatorAction(Base):
    """The audit log: who did what to which transaction (or to many, by filter), when and why."""

    __tablename__ = "operator_actions"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    transaction_id: Mapped[str | None] = mapped_column(String(255), index=True)
    provider: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    detail: Mapped[str | None] = mapped_column(Text)  # JSON


class ConsoleSession(Base):
    """A console login: the SHA-256 of its cookie's secret, and when it ends (server-side)."""

    __tablename__ = "console_sessions"

    secret_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class Deployment(Base):
    """The database's identity, made once by its first migration: the Celery queue is named
    after it, so deployments sharing one Redis never take each other's batches."""

    __tablename__ = "deployment"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ProviderEventRecord(Base):
    """Every event a provider sent, once per distinct content, with the verdict it got.

    `(provider, event_id)` is the provider's dedupe key: the first content is the event, a
    later different content under the same id is kept as a `conflict` row for review, and
    the same content again only counts one more delivery. `observation` is what the event
    says about its payment (JSON of `payhook.providers.model.Observation`); the payment's
    snapshot is folded from the observations of its non-conflict rows.
    """

    __tablename__ = "provider_events"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(255))
    content_digest: Mapped[str] = mapped_column(String(64))  # SHA-256 of the raw body, hex
    event_type: Mapped[str] = mapped_column(String(255))
    transaction_id: Mapped[str | None] = mapped_column(String(255))
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    last_received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deliveries: Mapped[int] = mapped_column(Integer, default=1)
    verdict: Mapped[str] = mapped_column(String(16))
    observation: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)  # why an event was ignored
    raw_body: Mapped[bytes | None] = mapped_column(LargeBinary)  # NULL once purged

    __table_args__ = (
        UniqueConstraint("provider", "event_id", "content_digest"),
        Index("ix_provider_events_payment", "provider", "transaction_id"),
    )


transactions = cast(Table, Transaction.__table__)
deliveries = cast(Table, Delivery.__table__)
processing_attempts = cast(Table, ProcessingAttempt.__table__)
operator_actions = cast(Table, OperatorAction.__table__)
console_sessions = cast(Table, ConsoleSession.__table__)
provider_events = cast(Table, ProviderEventRecord.__table__)

# The status as a literal, not a bound parameter: only then can PostgreSQL match the partial
# index `... WHERE status = 'PROCESSING'` in a prepared statement's generic plan. With a
# parameter, the scheduler's queries fell back to scanning the whole table five times a second
# once the plan was cached (found by benchmarks/run.py: ingest fell from 6,600 to 3,700/s).
IS_PROCESSING: ColumnElement[bool] = transactions.c.status == literal_column(
    f"'{TransactionStatus.PROCESSING}'"
)
deployment = cast(Table, Deployment.__table__)
ROW_KEY = tuple_(transactions.c.transaction_id, transactions.c.provider)
"""A transaction's identity: unique per (id, provider)."""
