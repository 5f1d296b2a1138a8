"""Operator console: the audit log of operator actions, and each delivery's signature verdict.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from payhook.db import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # A nullable column needs no table rewrite on either database; old rows read as unknown.
    op.add_column("deliveries", sa.Column("signature", sa.String(32), nullable=True))
    op.create_table(
        "operator_actions",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("transaction_id", sa.String(255), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_actions")),
    )
    op.create_index(
        op.f("ix_operator_actions_transaction_id"), "operator_actions", ["transaction_id"]
    )
    op.create_index(op.f("ix_operator_actions_at"), "operator_actions", ["at"])


def downgrade() -> None:
    op.drop_table("operator_actions")
    op.drop_column("deliveries", "signature")
