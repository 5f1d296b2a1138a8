"""Initial schema: transactions (the row is the job), deliveries, processing attempts.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from payhook.db import ExactDecimal, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PENDING = sa.text("status = 'PROCESSING'")


def upgrade() -> None:
    op.create_table(
        "transactions",
        sa.Column("transaction_id", sa.String(255), nullable=False),
        sa.Column("source_account", sa.String(255), nullable=False),
        sa.Column("destination_account", sa.String(255), nullable=False),
        sa.Column("amount", ExactDecimal(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("processed_at", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claim_token", sa.String(36), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("transaction_id", name=op.f("pk_transactions")),
    )
    op.create_index(op.f("ix_transactions_created_at"), "transactions", ["created_at"])
    op.create_index(op.f("ix_transactions_status"), "transactions", ["status"])
    op.create_index(
        "ix_transactions_pending_due_at",
        "transactions",
        ["due_at"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_table(
        "deliveries",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("transaction_id", sa.String(255), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("raw_body", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.transaction_id"],
            name=op.f("fk_deliveries_transaction_id_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
    )
    op.create_index(op.f("ix_deliveries_transaction_id"), "deliveries", ["transaction_id"])
    op.create_table(
        "processing_attempts",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("transaction_id", sa.String(255), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.transaction_id"],
            name=op.f("fk_processing_attempts_transaction_id_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_processing_attempts")),
    )
    op.create_index(
        op.f("ix_processing_attempts_transaction_id"), "processing_attempts", ["transaction_id"]
    )


def downgrade() -> None:
    op.drop_table("processing_attempts")
    op.drop_table("deliveries")
    op.drop_table("transactions")
