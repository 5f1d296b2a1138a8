"""Engine, metadata and the column types that keep money exact and time in UTC on both databases."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy import DateTime, MetaData, Numeric, String, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator, TypeEngine

from payhook.config import Settings

# What a failed database call can look like besides SQLAlchemy's own errors: a dropped socket,
# a timeout. Callers turn these into a 503 or a retry, never into a lost transaction.
STORAGE_ERRORS = (
    SQLAlchemyError,
    asyncpg.PostgresError,  # the PostgreSQL ingest path talks to asyncpg directly
    asyncpg.InterfaceError,
    # The driver's own state broken by a connection cut mid-operation (a PostgreSQL restart in
    # the fault suite): the statement never ran; the connection is invalidated, not pooled.
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
    ConnectionError,
)

UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
"""What neither database keeps in text: a NUL (PostgreSQL refuses it) and a lone surrogate (no
UTF-8 holds one)."""


def storable_text(text: str | None) -> str | None:
    """`text` with each NUL and lone surrogate read as U+FFFD, the replacement character."""
    return None if text is None else UNSTORABLE_TEXT.sub("\ufffd", text)


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ExactDecimal(TypeDecorator[Decimal]):
    """NUMERIC on PostgreSQL; text on SQLite, whose NUMERIC affinity would turn 0.1 into a float."""

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String())
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        return format(value, "f")

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(value)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out; SQLite stores it as sortable naive UTC text."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def create_engine(settings: Settings) -> AsyncEngine:
    """The async engine for DATABASE_URL, with SQLite set up for durable, serialised writes."""
    if settings.is_sqlite:
        engine = create_async_engine(
            settings.database_url, connect_args={"timeout": 30}, pool_size=settings.db_pool_size
        )
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=False,
        pool_timeout=settings.database_timeout_seconds,
        connect_args={
            "command_timeout": 15,
            "timeout": settings.database_timeout_seconds,
            "server_settings": {
                "application_name": "payhook",
                # Plan each execution with the table as it is now. A generic plan cached while
                # the table was empty kept scanning all of it once it held 100,000 rows: ingest
                # fell from 6,600 to 3,700/s within 30 s (benchmarks/README.md).
                "plan_cache_mode": "force_custom_plan",
            },
        },
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN is emitted where SQLAlchemy begins.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a 202 survives power loss, not only a process crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers take the lock up front so a read-then-write never fails with SQLITE_BUSY midway.
        readonly = connection.get_execution_options().get("readonly", False)
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")
