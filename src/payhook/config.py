"""The one settings class. Every setting is an environment variable of the same name."""

from __future__ import annotations

import base64
from enum import StrEnum
from functools import cached_property
from typing import Annotated

from pydantic import (
    AnyHttpUrl,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from payhook.webhooks.allowlist import parse_networks


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


class ExecutorKind(StrEnum):
    """Where processing steps run: `auto` is Celery when REDIS_URL is set, else embedded."""

    AUTO = "auto"
    EMBEDDED = "embedded"
    CELERY = "celery"


class SignatureScheme(StrEnum):
    """How the webhook sender signs its requests (see `payhook.webhooks.signatures`)."""

    NONE = "none"
    STANDARD_WEBHOOKS = "standard-webhooks"
    STRIPE = "stripe"
    RAZORPAY = "razorpay"


PositiveSeconds = Annotated[float, Field(gt=0)]
DEFAULT_PROCESSING_STEP = "payhook.processing.steps:simulated_external_call"
# A guessable operator token is the whole console: production refuses shorter ones.
MIN_PRODUCTION_ADMIN_TOKEN = 32


class Settings(BaseSettings):
    """Configuration of the API and the executors, read from the environment (and `.env`)."""

    # hide_input_in_errors: a validation error would otherwise print every input, secrets too.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    environment: Environment = Environment.DEVELOPMENT
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    web_concurrency: int = Field(1, ge=1)
    # A request's head, then its body, must arrive within these: a sender trickling bytes
    # (slowloris) cannot hold a connection or a worker for longer.
    request_head_timeout_seconds: PositiveSeconds = 10.0
    request_body_timeout_seconds: PositiveSeconds = 10.0
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.AUTO

    database_url: str = "sqlite:///./payhook.db"
    db_pool_size: int = Field(10, ge=1)
    # A database that does not answer within this (a partition, not a refusal) is unavailable:
    # a webhook gets 503 + Retry-After, /health/ready 503, and new connections give up.
    database_timeout_seconds: PositiveSeconds = 5.0

    processing_delay_seconds: float = Field(30.0, ge=0)
    processing_step: str = DEFAULT_PROCESSING_STEP
    processing_timeout_seconds: PositiveSeconds = 30.0
    max_retries: int = Field(3, ge=0)
    retry_backoff_seconds: PositiveSeconds = 2.0
    retry_backoff_max_seconds: PositiveSeconds = 300.0

    executor: ExecutorKind = ExecutorKind.AUTO
    redis_url: str | None = None
    worker_concurrency: int = Field(16, ge=1)
    celery_batch_size: int = Field(100, ge=1)

    executor_concurrency: int = Field(256, ge=1)
    executor_batch_size: int = Field(500, ge=1)
    executor_poll_seconds: PositiveSeconds = 0.2
    ingest_max_batch: int = Field(512, ge=1)

    webhook_signature_scheme: SignatureScheme = SignatureScheme.NONE
    # Comma-separated, so a rotation can list the new secret and the old one side by side.
    webhook_secret: SecretStr | None = None
    webhook_tolerance_seconds: int = Field(300, ge=1)
    allow_unsigned_webhooks: bool = False
    # Provider endpoints (/v1/webhooks/<provider>) answer 404 until their secret is set;
    # comma-separated like WEBHOOK_SECRET. The tolerance above applies to them too.
    stripe_webhook_secret: SecretStr | None = None
    razorpay_webhook_secret: SecretStr | None = None
    # Adyen: the HMAC key(s) in hex as the Customer Area shows them, and the optional basic-auth
    # credentials Adyen is configured to send (both or neither).
    adyen_hmac_key: SecretStr | None = None
    adyen_basic_auth_username: str | None = None
    adyen_basic_auth_password: SecretStr | None = None
    # PayPal: the webhook id(s) of the listener (comma-separated, e.g. sandbox and live), and the
    # hosts a PAYPAL-CERT-URL may name (HTTPS only). Change the hosts only to test against a fake.
    paypal_webhook_id: str | None = None
    paypal_cert_hosts: str = (
        "api.paypal.com,api-m.paypal.com,api.sandbox.paypal.com,api-m.sandbox.paypal.com"
    )
    # A CA bundle to trust for that fetch instead of the system's (a fake PayPal in tests, or a
    # TLS-inspecting proxy); unset: the usual public CAs.
    paypal_cert_ca_file: FilePath | None = None
    # `payhook send --provider paypal` plays PayPal: it signs with this RSA key (PEM) and names
    # this URL, where the matching certificate must be served (tests use a fake PayPal host).
    paypal_send_key_file: FilePath | None = None
    paypal_send_cert_url: str | None = None
    # Comma-separated CIDR lists. Empty WEBHOOK_ALLOWED_IPS lets every address post webhooks;
    # X-Forwarded-For is believed only from a peer in TRUSTED_PROXIES.
    webhook_allowed_ips: str = ""
    trusted_proxies: str = ""

    # Forwarding (payhook.forwarding): with DESTINATION_URL set, each due transaction is posted
    # there, signed with DESTINATION_SECRET; that is the processing step.
    destination_url: AnyHttpUrl | None = None
    destination_secret: SecretStr | None = None
    destination_timeout_seconds: PositiveSeconds = 10.0
    # A request counts from its slot to payhook reading the answer, so under a burst payhook's
    # own busy loop adds to each (10-15 ms on 2 cores); 64 capped one process below its ingest
    # rate at 5 ms answers (benchmarks/README.md). The window still halves on any outage.
    destination_max_in_flight: int = Field(128, ge=1)
    destination_max_per_second: float | None = Field(None, gt=0)
    # This many connection errors, timeouts or 5xx in a row mean the destination is down:
    # deliveries then wait (without spending attempts) for a probe, first after
    # DESTINATION_PROBE_SECONDS, doubling up to DESTINATION_PROBE_MAX_SECONDS.
    destination_failure_threshold: int = Field(3, ge=1)
    destination_probe_seconds: PositiveSeconds = 5.0
    destination_probe_max_seconds: PositiveSeconds = 60.0
    # Comma-separated host names (`*.example.com` for subdomains) the service answers to; a
    # request naming another Host gets 400. `*`, the default for local use, answers any host.
    allowed_hosts: str = "*"

    # Operator endpoints (listing, replay, /metrics, the console) exist only when this is set.
    admin_token: SecretStr | None = None

    @field_validator("log_level")
    @classmethod
    def _upper_level(cls, value: str) -> str:
        return value.upper()

    @field_validator("webhook_allowed_ips", "trusted_proxies")
    @classmethod
    def _cidr_list(cls, value: str, info: ValidationInfo) -> str:
        try:
            parse_networks(value)
        except ValueError as exc:
            raise ValueError(f"{str(info.field_name).upper()}: {exc}") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, value: str) -> str:
        return normalise_database_url(value)

    @model_validator(mode="after")
    def _webhooks_are_signed(self) -> Settings:
        scheme = self.webhook_signature_scheme
        if scheme is not SignatureScheme.NONE and not self.webhook_secrets:
            raise ValueError(f"WEBHOOK_SIGNATURE_SCHEME={scheme.value} needs a WEBHOOK_SECRET")
        if (
            scheme is SignatureScheme.NONE
            and self.environment is Environment.PRODUCTION
            and not self.allow_unsigned_webhooks
        ):
            raise ValueError(
                "ENVIRONMENT=production refuses unsigned webhooks: set WEBHOOK_SIGNATURE_SCHEME "
                "and WEBHOOK_SECRET, or ALLOW_UNSIGNED_WEBHOOKS=true to accept the risk"
            )
        return self

    @model_validator(mode="after")
    def _admin_token_is_long_in_production(self) -> Settings:
        token = self.admin_token_value
        if (
            token is not None
            and self.environment is Environment.PRODUCTION
            and len(token) < MIN_PRODUCTION_ADMIN_TOKEN
        ):
            raise ValueError(
                f"ENVIRONMENT=production needs an ADMIN_TOKEN of at least "
                f"{MIN_PRODUCTION_ADMIN_TOKEN} characters (openssl rand -hex 32)"
            )
        return self

    @property
    def allowed_host_names(self) -> tuple[str, ...]:
        """ALLOWED_HOSTS split on commas; `("*",)` answers every host."""
        return tuple(h.strip() for h in self.allowed_hosts.split(",") if h.strip()) or ("*",)

    @property
    def webhook_secrets(self) -> tuple[str, ...]:
        """WEBHOOK_SECRET split on commas: any one of them verifies, the first one signs."""
        return split_secrets(self.webhook_secret)

    @property
    def razorpay_webhook_secrets(self) -> tuple[str, ...]:
        """RAZORPAY_WEBHOOK_SECRET split on commas; empty while the Razorpay endpoint is off."""
        return split_secrets(self.razorpay_webhook_secret)

    @property
    def adyen_hmac_keys(self) -> tuple[str, ...]:
        """ADYEN_HMAC_KEY split on commas; empty while the Adyen endpoint is off."""
        return split_secrets(self.adyen_hmac_key)

    @property
    def adyen_basic_auth(self) -> tuple[str, str] | None:
        """The basic-auth credentials Adyen must send, or None when not configured."""
        if self.adyen_basic_auth_username is None or self.adyen_basic_auth_password is None:
            return None
        return self.adyen_basic_auth_username, self.adyen_basic_auth_password.get_secret_value()

    @property
    def paypal_webhook_ids(self) -> tuple[str, ...]:
        """PAYPAL_WEBHOOK_ID split on commas; empty while the PayPal endpoint is off."""
        parts = (self.paypal_webhook_id or "").split(",")
        return tuple(part.strip() for part in parts if part.strip())

    @property
    def paypal_cert_host_list(self) -> tuple[str, ...]:
        """PAYPAL_CERT_HOSTS split on commas (host or host:port, lower case)."""
        return tuple(h.strip().lower() for h in self.paypal_cert_hosts.split(",") if h.strip())

    @model_validator(mode="after")
    def _adyen_settings_are_usable(self) -> Settings:
        for key in self.adyen_hmac_keys:
            try:
                bytes.fromhex(key)
            except ValueError:
                raise ValueError(
                    "ADYEN_HMAC_KEY must be hexadecimal (comma-separated keys)"
                ) from None
        username, password = self.adyen_basic_auth_username, self.adyen_basic_auth_password
        if (username is None) != (password is None):
            raise ValueError("ADYEN_BASIC_AUTH_USERNAME and ADYEN_BASIC_AUTH_PASSWORD go together")
        return self

    @property
    def stripe_webhook_secrets(self) -> tuple[str, ...]:
        """STRIPE_WEBHOOK_SECRET split on commas; empty while the Stripe endpoint is off."""
        return split_secrets(self.stripe_webhook_secret)

    @model_validator(mode="after")
    def _celery_needs_redis(self) -> Settings:
        if self.executor is ExecutorKind.CELERY and not self.redis_url:
            raise ValueError("EXECUTOR=celery needs REDIS_URL")
        return self

    @model_validator(mode="after")
    def _forwarding_is_complete(self) -> Settings:
        if self.destination_url is None:
            return self
        if self.processing_step != DEFAULT_PROCESSING_STEP:
            raise ValueError(
                "set DESTINATION_URL or PROCESSING_STEP, not both: forwarding is the step"
            )
        if not _is_whsec(self.destination_secret):
            raise ValueError("DESTINATION_URL needs DESTINATION_SECRET=whsec_<base64> to sign with")
        if self.destination_timeout_seconds >= self.processing_timeout_seconds:
            raise ValueError("DESTINATION_TIMEOUT_SECONDS must be below PROCESSING_TIMEOUT_SECONDS")
        if self.destination_probe_max_seconds < self.destination_probe_seconds:
            raise ValueError(
                "DESTINATION_PROBE_MAX_SECONDS must be at least DESTINATION_PROBE_SECONDS"
            )
        return self

    @property
    def admin_token_value(self) -> str | None:
        """ADMIN_TOKEN, or None when unset or blank (operator routes then answer 404)."""
        if self.admin_token is None:
            return None
        return self.admin_token.get_secret_value().strip() or None

    @property
    def uses_celery(self) -> bool:
        """Whether due transactions go to Celery workers rather than the embedded executor."""
        if self.executor is ExecutorKind.AUTO:
            return self.redis_url is not None
        return self.executor is ExecutorKind.CELERY

    @cached_property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def lease_seconds(self) -> float:
        """How long a claim protects a row: the step timeout plus room to record the outcome."""
        return self.processing_timeout_seconds + 10.0


def split_secrets(value: SecretStr | None) -> tuple[str, ...]:
    """A comma-separated secret setting as its non-blank parts (several during a rotation)."""
    if value is None:
        return ()
    parts = value.get_secret_value().split(",")
    return tuple(part.strip() for part in parts if part.strip())


_SCHEMES = {
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


def whsec_key(secret: str) -> bytes:
    """The key a Standard Webhooks secret (`whsec_<base64>`) stands for; ValueError if malformed."""
    encoded = secret.removeprefix("whsec_")
    # Padding is optional in the wild (the reference library appends it too). binascii.Error
    # is a ValueError, and so is the error for a non-ASCII string.
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)


def settings_problem(error: ValidationError) -> str:
    """A settings error as one line per problem, naming the variable: what `payhook` prints."""
    lines = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        names = ".".join(str(part) for part in item["loc"]).upper()
        lines.append(f"{names}: {message}" if names else message)
    return "\n".join(lines)


def _is_whsec(secret: SecretStr | None) -> bool:
    if secret is None or not secret.get_secret_value().startswith("whsec_"):
        return False
    try:
        return bool(whsec_key(secret.get_secret_value()))
    except ValueError:
        return False


def normalise_database_url(url: str) -> str:
    """Map the URL forms hosting platforms hand out onto the async drivers payhook uses."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _SCHEMES:
        raise ValueError(f"DATABASE_URL must be a postgresql:// or sqlite:// URL, not {scheme!r}")
    driver = _SCHEMES[scheme]
    if driver.startswith("postgresql"):
        # libpq's sslmode is spelled ssl for asyncpg.
        rest = rest.replace("sslmode=", "ssl=")
    return f"{driver}://{rest}"
