"""Settings refuse webhook configurations that would accept forged deliveries by mistake."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from payhook.config import Environment, Settings, SignatureScheme


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize("secret", [None, "", " , "])
def test_signing_scheme_without_secret_is_refused(secret: str | None) -> None:
    with pytest.raises(ValidationError, match="needs a WEBHOOK_SECRET"):
        settings(webhook_signature_scheme="stripe", webhook_secret=secret)


def test_production_refuses_unsigned_webhooks() -> None:
    with pytest.raises(ValidationError, match="refuses unsigned webhooks"):
        settings(environment="production")


def test_production_accepts_unsigned_webhooks_when_the_operator_opts_in() -> None:
    """The opt-in is kept as given: production, no signing scheme, unsigned deliveries allowed."""
    configured = settings(environment="production", allow_unsigned_webhooks=True)
    assert configured.environment is Environment.PRODUCTION
    assert configured.webhook_signature_scheme is SignatureScheme.NONE
    assert configured.allow_unsigned_webhooks is True


def test_production_with_a_signing_scheme_starts() -> None:
    configured = settings(
        environment="production", webhook_signature_scheme="razorpay", webhook_secret="s3cret"
    )
    assert configured.webhook_signature_scheme is SignatureScheme.RAZORPAY


def test_secrets_are_split_on_commas_for_rotation() -> None:
    configured = settings(webhook_signature_scheme="stripe", webhook_secret="whsec_new, whsec_old")
    assert configured.webhook_secrets == ("whsec_new", "whsec_old")


def test_secret_is_hidden_from_repr() -> None:
    configured = settings(webhook_signature_scheme="stripe", webhook_secret="whsec_hidden")
    assert "whsec_hidden" not in repr(configured)


def test_configuration_error_does_not_print_the_secret() -> None:
    with pytest.raises(ValidationError) as caught:
        settings(environment="production", webhook_secret="whsec_must_not_leak")
    assert "whsec_must_not_leak" not in str(caught.value)


def test_production_refuses_a_short_admin_token() -> None:
    signed = {"webhook_signature_scheme": "razorpay", "webhook_secret": "s"}
    with pytest.raises(ValidationError, match="at least 32 characters"):
        settings(environment="production", admin_token="1234", **signed)
    assert settings(environment="production", admin_token="x" * 32, **signed).admin_token_value
    assert settings(admin_token="1234").admin_token_value == "1234"  # local use
