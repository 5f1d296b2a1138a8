from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from payhook.cli import main
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
    settings = Settings(_env_file=None)
    assert (settings.host, settings.port, settings.web_concurrency) == ("127.0.0.1", 8000, 1)
    assert settings.processing_delay_seconds == 30
    assert settings.database_url == "sqlite+aiosqlite:///./payhook.db"


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCESSING_DELAY_SECONDS", "2.5")
    monkeypatch.setenv("PORT", "9000")
    settings = Settings(_env_file=None)
    assert (settings.processing_delay_seconds, settings.port) == (2.5, 9000)


FORWARDING: dict[str, Any] = {
    "destination_url": "https://example.com/hooks",
    "destination_secret": "whsec_c2VjcmV0",
}


def forwarding(**overrides: Any) -> Settings:
    return Settings(_env_file=None, **{**FORWARDING, **overrides})


def test_forwarding_and_a_processing_step_are_refused_together() -> None:
    with pytest.raises(ValueError, match="set DESTINATION_URL or PROCESSING_STEP, not both"):
        forwarding(processing_step="tests.support.steps:record_and_script")


@pytest.mark.parametrize("secret", [None, "", "c2VjcmV0", "whsec_", "whsec_not base64!"])
def test_forwarding_needs_a_standard_webhooks_secret(secret: str | None) -> None:
    with pytest.raises(ValueError, match=r"DESTINATION_SECRET=whsec_<base64>"):
        forwarding(destination_secret=secret)


def test_the_destination_timeout_fits_in_the_processing_timeout() -> None:
    with pytest.raises(ValueError, match="DESTINATION_TIMEOUT_SECONDS must be below"):
        forwarding(destination_timeout_seconds=30)


def test_forwarding_settings() -> None:
    settings = forwarding()
    assert str(settings.destination_url) == "https://example.com/hooks"
    assert settings.destination_max_in_flight == 128
    assert settings.destination_max_per_second is None
    assert Settings(_env_file=None).destination_url is None


def test_payhook_refuses_to_start_with_a_one_line_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESTINATION_URL", "https://example.com/hooks")
    monkeypatch.setenv("PROCESSING_STEP", "tests.support.steps:record_and_script")

    result = CliRunner().invoke(main, ["worker"])

    assert result.exit_code == 1
    assert result.output == (
        "Error: set DESTINATION_URL or PROCESSING_STEP, not both: forwarding is the step\n"
    )
