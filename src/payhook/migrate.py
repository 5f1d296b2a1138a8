"""Schema migrations (Alembic), run by `payhook migrate` and by `serve` on the embedded default."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from payhook.config import Settings
from payhook.db import create_engine


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "payhook:migrations")
    return config


async def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the database at DATABASE_URL up to `revision`."""
    config = alembic_config()

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    await _with_connection(settings, run)


async def is_current(settings: Settings) -> bool:
    """Whether the database is at the newest revision this code knows."""
    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())

    def check(connection: Connection) -> bool:
        return set(MigrationContext.configure(connection).get_current_heads()) == heads

    return bool(await _with_connection(settings, check))


async def _with_connection(settings: Settings, work: Any) -> Any:
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(work)
    finally:
        await engine.dispose()
