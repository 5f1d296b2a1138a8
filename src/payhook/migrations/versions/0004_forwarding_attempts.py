"""Forwarding: each processing attempt's destination status, latency and answer excerpt.

Revision ID: 0004_forwarding_attempts
Revises: 0003_console_sessions
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_forwarding_attempts"
down_revision = "0003_console_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns need no table rewrite on either database; old attempts read as unknown.
    op.add_column("processing_attempts", sa.Column("destination_status", sa.Integer()))
    op.add_column("processing_attempts", sa.Column("latency_ms", sa.Float()))
    op.add_column("processing_attempts", sa.Column("answer", sa.Text()))


def downgrade() -> None:
    for column in ("answer", "latency_ms", "destination_status"):
        op.drop_column("processing_attempts", column)
