"""Deliveries: each distinct body stored once per transaction, with a count of its repeats.

Revision ID: 0005_delivery_repeats
Revises: 0004_forwarding_attempts
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from payhook.db import UTCDateTime

revision = "0005_delivery_repeats"
down_revision = "0004_forwarding_attempts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns and a constant default: no table rewrite. Rows from before keep a NULL
    # hash (which the unique index does not compare) and count as one delivery each.
    op.add_column("deliveries", sa.Column("body_sha256", sa.String(64), nullable=True))
    op.add_column(
        "deliveries",
        sa.Column("repeats", sa.Integer(), nullable=False, server_default=sa.text("1")),
    )
    op.add_column("deliveries", sa.Column("last_received_at", UTCDateTime(), nullable=True))
    op.create_index(
        "uq_deliveries_transaction_id_body",
        "deliveries",
        ["transaction_id", "body_sha256"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_deliveries_transaction_id_body", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("last_received_at")
        batch.drop_column("repeats")
        batch.drop_column("body_sha256")
