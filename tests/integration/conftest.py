from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from payhook.config import Settings
from payhook.db import create_engine
from payhook.transactions.repository import TransactionRepository


@pytest.fixture
async def repository(database_url: str) -> AsyncIterator[TransactionRepository]:
    engine = create_engine(Settings(_env_file=None, database_url=database_url))
    try:
        yield TransactionRepository(engine)
    finally:
        await engine.dispose()
