"""Alembic environment: runs on the connection that `payhook.migrate` hands it."""

from __future__ import annotations

from alembic import context

from payhook.db import Base
from payhook.transactions import models  # noqa: F401  (registers the tables)

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
