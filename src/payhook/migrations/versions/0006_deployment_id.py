"""The database's deployment id, which names its Celery queue.

Revision ID: 0006_deployment_id
Revises: 0005_delivery_repeats
Create Date: 2026-11-27
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from payhook.db import UTCDateTime

revision = "0006_deployment_id"
down_revision = "0005_delivery_repeats"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "deployment",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment")),
    )
    # Made here, once per database: every API and worker of this database reads the same one.
    op.bulk_insert(table, [{"id": str(uuid.uuid4()), "created_at": datetime.now(UTC)}])


def downgrade() -> None:
    op.drop_table("deployment")
