from __future__ import annotations

import pytest

from payhook.config import Settings, normalise_database_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgresql://u@h/db?sslmode=require", "postgresql+asyncpg://u@h/db?ssl=require"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:///./payhook.db", "sqlite+aiosqlite:///./payhook.db"),
    ],
)
def test_database_urls_from_hosting_platforms(given: str, expected: str) -> None:
    assert normalise_database_url(given) == expected


@pytest.mark.parametrize("url", ["mysql://h/db", "not a url"])
def test_unsupported_database_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="DATABASE_URL"):
        normalise_database_url(url)


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOST", "PORT", "DATABASE_URL", "PROCESSING_DELAY_SECONDS", "WEB_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.host, settings.port, settings.web_concurrency) == ("127.0.0.1", 8000, 1)
    assert settings.processing_delay_seconds == 30
    assert settings.database_url == "sqlite+aiosqlite:///./payhook.db"


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCESSING_DELAY_SECONDS", "2.5")
    monkeypatch.setenv("PORT", "9000")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.processing_delay_seconds, settings.port) == (2.5, 9000)
