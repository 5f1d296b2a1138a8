"""Webhook signatures: verify the sender before a single byte of the body is parsed.

One class per scheme (WEBHOOK_SIGNATURE_SCHEME), built once at start from the settings. Every
verifier works on the raw body bytes, compares in constant time (`hmac.compare_digest`) and fails
closed: a missing, malformed, wrong or stale signature raises `SignatureInvalid`, whose detail
never contains a secret or an expected signature. Several secrets (rotation) verify alike; the
first one signs. `sign` produces the headers a provider would send, for tests and `payhook send`.
"""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from payhook.config import Settings, SignatureScheme, whsec_key
from payhook.errors import SignatureInvalid

Clock = Callable[[], float]
Headers = Mapping[str, str]
"""Request headers; lookups use lower-case names (Starlette's `Headers` ignores case anyway)."""


class Verifier(Protocol):
    """Checks one request's signature; `sign` makes the headers that pass `verify`."""

    def verify(self, headers: Headers, body: bytes) -> None: ...

    def sign(self, body: bytes, *, timestamp: int, msg_id: str) -> dict[str, str]: ...


class Unsigned:
    """WEBHOOK_SIGNATURE_SCHEME=none: every request passes. For local use only."""

    def verify(self, headers: Headers, body: bytes) -> None:
        """Accept without checking anything."""

    def sign(self, body: bytes, *, timestamp: int, msg_id: str) -> dict[str, str]:
        """No headers: nothing is signed."""
        return {}


class StandardWebhooks:
    """Standard Webhooks (Svix and others): `webhook-id`, `webhook-timestamp`, `webhook-signature`.

    HMAC-SHA256 over `<id>.<timestamp>.<body>`; the signature header is a space-separated list of
    `v1,<base64>`; secrets are `whsec_<base64>` and the decoded bytes are the key.
    """

    def __init__(self, secrets: Sequence[str], tolerance: int, clock: Clock = time.time) -> None:
        self._keys = _required([_standard_key(secret) for secret in secrets])
        self._tolerance = tolerance
        self._clock = clock

    def verify(self, headers: Headers, body: bytes) -> None:
        """Raise SignatureInvalid unless a `v1` signature of a configured secret matches."""
        msg_id = _header(headers, "webhook-id")
        timestamp = _header(headers, "webhook-timestamp")
        signatures = _header(headers, "webhook-signature")
        if not msg_id.isascii() or not msg_id.isprintable():
            raise SignatureInvalid("The webhook-id header must be printable ASCII.")
        _check_timestamp(timestamp, self._tolerance, self._clock())
        message = f"{msg_id}.{timestamp}.".encode() + body
        candidates = _standard_candidates(signatures)
        _require_match((_digest(key, message) for key in self._keys), candidates)

    def sign(self, body: bytes, *, timestamp: int, msg_id: str) -> dict[str, str]:
        """The three headers a Standard Webhooks sender attaches, signed with the first secret."""
        digest = _digest(self._keys[0], f"{msg_id}.{timestamp}.".encode() + body)
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": f"v1,{base64.b64encode(digest).decode()}",
        }


class Stripe:
    """Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]` over `<t>.<body>`.

    The `whsec_...` secret is the key as it stands (UTF-8), not base64-decoded: this is what
    `stripe.WebhookSignature` does.
    """

    def __init__(self, secrets: Sequence[str], tolerance: int, clock: Clock = time.time) -> None:
        self._keys = _required([secret.encode() for secret in secrets])
        self._tolerance = tolerance
        self._clock = clock

    def verify(self, headers: Headers, body: bytes) -> None:
        """Raise SignatureInvalid unless one `v1` entry matches a configured secret in time."""
        timestamp, candidates = _stripe_fields(_header(headers, "stripe-signature"))
        _check_timestamp(timestamp, self._tolerance, self._clock())
        message = f"{timestamp}.".encode() + body
        expected = (_digest(key, message).hex().encode() for key in self._keys)
        _require_match(expected, candidates)

    def sign(self, body: bytes, *, timestamp: int, msg_id: str) -> dict[str, str]:
        """The `Stripe-Signature` header, signed with the first secret."""
        digest = _digest(self._keys[0], f"{timestamp}.".encode() + body)
        return {"stripe-signature": f"t={timestamp},v1={digest.hex()}"}


class Razorpay:
    """Razorpay: `X-Razorpay-Signature` is the hex HMAC-SHA256 of the body; no timestamp.

    Without a timestamp a captured request can be replayed at any time; the permanent dedupe on
    transaction_id is what makes a replay harmless.
    """

    def __init__(self, secrets: Sequence[str]) -> None:
        self._keys = _required([secret.encode() for secret in secrets])

    def verify(self, headers: Headers, body: bytes) -> None:
        """Raise SignatureInvalid unless the header is the HMAC of the body under a secret."""
        candidate = _header(headers, "x-razorpay-signature").strip().encode("utf-8", "replace")
        expected = (_digest(key, body).hex().encode() for key in self._keys)
        _require_match(expected, [candidate])

    def sign(self, body: bytes, *, timestamp: int, msg_id: str) -> dict[str, str]:
        """The `X-Razorpay-Signature` header, signed with the first secret."""
        return {"x-razorpay-signature": _digest(self._keys[0], body).hex()}


def build_verifier(
    scheme: SignatureScheme,
    secrets: Sequence[str],
    tolerance: int = 300,
    clock: Clock = time.time,
) -> Verifier:
    """The verifier for `scheme`; raises ValueError for an unusable secret (never showing it)."""
    if scheme is SignatureScheme.STANDARD_WEBHOOKS:
        return StandardWebhooks(secrets, tolerance, clock)
    if scheme is SignatureScheme.STRIPE:
        return Stripe(secrets, tolerance, clock)
    if scheme is SignatureScheme.RAZORPAY:
        return Razorpay(secrets)
    return Unsigned()


def verifier_from_settings(settings: Settings) -> Verifier:
    """The verifier WEBHOOK_SIGNATURE_SCHEME, WEBHOOK_SECRET and the tolerance describe."""
    return build_verifier(
        settings.webhook_signature_scheme,
        settings.webhook_secrets,
        settings.webhook_tolerance_seconds,
    )


def _digest(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")  # OpenSSL's one-shot HMAC


def _required(keys: list[bytes]) -> list[bytes]:
    if not keys or not all(keys):
        raise ValueError("WEBHOOK_SECRET must hold at least one non-empty secret")
    return keys


def _standard_key(secret: str) -> bytes:
    try:
        return whsec_key(secret)
    except ValueError:
        raise ValueError("WEBHOOK_SECRET must be whsec_<base64> for standard-webhooks") from None


def _header(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if not value:
        raise SignatureInvalid(f"The {name} header is missing.")
    return value


def _check_timestamp(value: str, tolerance: int, now: float) -> None:
    # Bounded length: an absurd number is malformed, not a reason to parse thousands of digits.
    if not (value.isascii() and value.isdigit() and len(value) <= 12):
        raise SignatureInvalid("The signature timestamp must be a Unix time in seconds.")
    if abs(now - int(value)) > tolerance:
        raise SignatureInvalid(
            f"The signature timestamp is more than {tolerance} seconds away from the "
            "receiver's clock: a stale or replayed delivery, or a skewed clock."
        )


def _standard_candidates(header: str) -> list[bytes]:
    candidates = []
    for entry in header.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            candidates.append(base64.b64decode(encoded, validate=True))
        except ValueError:  # binascii.Error is one, and so is a non-ASCII string
            continue
    return candidates


def _stripe_fields(header: str) -> tuple[str, list[bytes]]:
    timestamps, candidates = [], []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            candidates.append(value.encode("utf-8", "replace"))
    if len(timestamps) != 1 or not candidates:
        raise SignatureInvalid("The Stripe-Signature header must hold one t= and a v1= entry.")
    return timestamps[0], candidates


def _require_match(expected: Iterable[bytes], candidates: Sequence[bytes]) -> None:
    for digest in expected:
        if any(hmac.compare_digest(digest, candidate) for candidate in candidates):
            return
    raise SignatureInvalid("No signature matches the body with a configured secret.")
