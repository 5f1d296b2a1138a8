"""Provider payments: a transaction is unique per (provider, id), and every provider event is kept.

transactions gains `provider` ('' for the generic endpoint: existing rows keep their ids and
their meaning) in its primary key, the payment's snapshot columns, and nullable accounts (a
provider may not name them). deliveries and processing_attempts refer to (id, provider).
provider_events is new.

Revision ID: 0007_provider_events
Revises: 0006_deployment_id
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from payhook.db import ExactDecimal, UTCDateTime

revision = "0007_provider_events"
down_revision = "0006_deployment_id"
branch_labels = None
depends_on = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PENDING = sa.text("status = 'PROCESSING'")
CHILDREN = ("deliveries", "processing_attempts")


def upgrade() -> None:
    for child in CHILDREN:
        with op.batch_alter_table(child) as batch:
            batch.drop_constraint(f"fk_{child}_transaction_id_transactions", type_="foreignkey")
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("provider", sa.String(32), nullable=False, server_default=""))
        batch.add_column(sa.Column("payment_state", sa.String(24), nullable=True))
        batch.add_column(sa.Column("amount_minor", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("amount_refunded", ExactDecimal(), nullable=True))
        batch.add_column(sa.Column("disputed", sa.Boolean(), nullable=True))
        for column in ("source_account", "destination_account"):
            batch.alter_column(column, existing_type=sa.String(255), nullable=True)
        batch.drop_constraint("pk_transactions", type_="primary")
        batch.create_primary_key("pk_transactions", ["transaction_id", "provider"])
    for child in CHILDREN:
        with op.batch_alter_table(child) as batch:
            batch.add_column(
                sa.Column("provider", sa.String(32), nullable=False, server_default="")
            )
            batch.create_foreign_key(
                f"fk_{child}_transaction_id_transactions",
                "transactions",
                ["transaction_id", "provider"],
                ["transaction_id", "provider"],
            )
    op.add_column("operator_actions", sa.Column("provider", sa.String(32), nullable=True))
    _create_provider_events()


def _create_provider_events() -> None:
    op.create_table(
        "provider_events",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("content_digest", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(255), nullable=False),
        sa.Column("transaction_id", sa.String(255), nullable=True),
        sa.Column("occurred_at", UTCDateTime(), nullable=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("last_received_at", UTCDateTime(), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("observation", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("raw_body", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_events")),
        sa.UniqueConstraint(
            "provider", "event_id", "content_digest", name=op.f("uq_provider_events_provider")
        ),
    )
    op.create_index("ix_provider_events_payment", "provider_events", ["provider", "transaction_id"])
    op.create_index(op.f("ix_provider_events_received_at"), "provider_events", ["received_at"])


def downgrade() -> None:
    op.drop_table("provider_events")
    op.drop_column("operator_actions", "provider")
    # Only the generic endpoint's rows fit the old schema; provider payments go with it.
    op.execute("DELETE FROM processing_attempts WHERE provider <> ''")
    op.execute("DELETE FROM transactions WHERE provider <> ''")
    for child in CHILDREN:
        with op.batch_alter_table(child) as batch:
            batch.drop_constraint(f"fk_{child}_transaction_id_transactions", type_="foreignkey")
            batch.drop_column("provider")
    with op.batch_alter_table("transactions") as batch:
        batch.drop_constraint("pk_transactions", type_="primary")
        batch.create_primary_key("pk_transactions", ["transaction_id"])
        for column in ("disputed", "amount_refunded", "amount_minor", "payment_state", "provider"):
            batch.drop_column(column)
        for column in ("source_account", "destination_account"):
            batch.alter_column(column, existing_type=sa.String(255), nullable=False)
    for child in CHILDREN:
        with op.batch_alter_table(child) as batch:
            batch.create_foreign_key(
                f"fk_{child}_transaction_id_transactions",
                "transactions",
                ["transaction_id"],
                ["transaction_id"],
            )
