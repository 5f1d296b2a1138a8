"""PayPal: an RSA signature by a certificate PayPal names, amounts as decimal strings.

PayPal signs `<PAYPAL-TRANSMISSION-ID>|<PAYPAL-TRANSMISSION-TIME>|<webhook id>|<crc32 of the raw
body as an unsigned decimal>` with SHA256withRSA; the certificate is at `PAYPAL-CERT-URL`. payhook
fetches it only over HTTPS from PayPal's own hosts (PAYPAL_CERT_HOSTS), without following
redirects, and caches it until it expires, so a request can neither point payhook at a key of
its own nor make it fetch anything elsewhere. A transmission time outside the tolerance is
refused: PayPal retries with a fresh transmission, so only a replay is that old.

The transaction is the capture (`resource.id` of `PAYMENT.CAPTURE.*`); refunds and reversals
attach through their `up` link to the capture; disputes through the disputed transaction.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import random
import ssl
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from payhook.config import Settings
from payhook.errors import ServiceUnavailable, SignatureInvalid
from payhook.providers import fields, paypal_samples
from payhook.providers.base import (
    Acknowledgement,
    Headers,
    SampleRequest,
    receipts_acknowledgement,
)
from payhook.providers.fields import JsonObject, Unmappable
from payhook.providers.model import EventReceipt, Observation, PaymentState, ProviderEvent

NAME = "paypal"
CERT_HOSTS = (
    "api.paypal.com",
    "api-m.paypal.com",
    "api.sandbox.paypal.com",
    "api-m.sandbox.paypal.com",
)
CERT_PATH = "/v1/notifications/certs/"
"""Where PayPal serves its webhook signing certificates (PAYPAL-CERT-URL); nothing else on its
hosts is fetched."""
AUTH_ALGO = "SHA256withRSA"
_MAX_CERT_BYTES = 64 * 1024

_CAPTURE_STATES = {
    "PAYMENT.CAPTURE.COMPLETED": PaymentState.CAPTURED,
    "PAYMENT.CAPTURE.PENDING": PaymentState.PENDING,
    "PAYMENT.CAPTURE.DENIED": PaymentState.FAILED,
    "PAYMENT.CAPTURE.DECLINED": PaymentState.FAILED,
}
_REFUND_EVENTS = frozenset({"PAYMENT.CAPTURE.REFUNDED", "PAYMENT.CAPTURE.REVERSED"})
_DISPUTE_EVENTS = {"CUSTOMER.DISPUTE.CREATED": True, "CUSTOMER.DISPUTE.RESOLVED": False}
_FAILED_REFUND = frozenset({"FAILED", "CANCELLED"})

Fetch = Callable[[str], Awaitable[bytes]]
Clock = Callable[[], float]


class CertificateCache:
    """PayPal's signing certificates by URL: fetched once from an allowed host, kept while valid."""

    def __init__(
        self,
        hosts: Sequence[str] = CERT_HOSTS,
        fetch: Fetch | None = None,
        clock: Clock = time.time,
        max_entries: int = 16,
    ) -> None:
        self._hosts = frozenset(host.lower() for host in hosts)
        self._fetch = fetch or fetch_over_https()
        self._clock = clock
        self._max = max_entries
        self._keys: OrderedDict[str, tuple[rsa.RSAPublicKey, float]] = OrderedDict()
        # One fetch in flight per URL, which the requests for that URL share. A cached key is
        # answered without waiting for anyone's fetch: a sender naming new certificate URLs
        # (any path on PayPal's hosts, before any signature can be checked) holds up no one.
        self._fetching: dict[str, asyncio.Future[rsa.RSAPublicKey]] = {}

    async def public_key(self, url: str) -> rsa.RSAPublicKey:
        """The RSA key of the certificate at `url`; SignatureInvalid unless it is PayPal's."""
        self._check_url(url)
        cached = self._keys.get(url)
        if cached is not None and self._clock() < cached[1]:
            self._keys.move_to_end(url)
            return cached[0]
        fetching = self._fetching.get(url)
        if fetching is None:
            fetching = asyncio.ensure_future(self._fetch_and_keep(url))
            self._fetching[url] = fetching
            fetching.add_done_callback(lambda _: self._fetching.pop(url, None))
        return await asyncio.shield(fetching)

    async def _fetch_and_keep(self, url: str) -> rsa.RSAPublicKey:
        """Fetch and check the certificate, then keep its key (once, for every waiter)."""
        key, expires = self._load(await self._fetch(url))
        self._keys[url] = (key, expires)
        if len(self._keys) > self._max:
            self._keys.popitem(last=False)
        return key

    def _check_url(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        except ValueError:
            raise SignatureInvalid("PAYPAL-CERT-URL is not a URL.") from None
        if parts.scheme != "https" or parts.username or parts.password or host not in self._hosts:
            raise SignatureInvalid("PAYPAL-CERT-URL is not an HTTPS URL on a PayPal host.")
        if not parts.path.startswith(CERT_PATH) or parts.query or parts.fragment:
            raise SignatureInvalid(f"PAYPAL-CERT-URL is not under {CERT_PATH} on its host.")

    def _load(self, pem: bytes) -> tuple[rsa.RSAPublicKey, float]:
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise SignatureInvalid("PAYPAL-CERT-URL does not hold a PEM certificate.") from None
        now = self._clock()
        not_before = cert.not_valid_before_utc.timestamp()
        not_after = cert.not_valid_after_utc.timestamp()
        key = cert.public_key()
        if not (not_before <= now < not_after) or not isinstance(key, rsa.RSAPublicKey):
            raise SignatureInvalid("The certificate at PAYPAL-CERT-URL is not a valid RSA one.")
        return key, not_after


def fetch_over_https(verify: ssl.SSLContext | bool = True, timeout: float = 5.0) -> Fetch:
    """GET a certificate: no redirects, bounded size; an outage is a retryable 503."""

    async def fetch(url: str) -> bytes:
        try:
            async with (
                httpx.AsyncClient(verify=verify, timeout=timeout) as client,
                client.stream("GET", url) as response,
            ):
                if response.status_code != 200:
                    raise _unusable(response.status_code)
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > _MAX_CERT_BYTES:
                        raise SignatureInvalid("The certificate at PAYPAL-CERT-URL is too large.")
                return body
        except httpx.HTTPError:
            raise ServiceUnavailable("PayPal's certificate could not be fetched.") from None

    return fetch


def _unusable(status: int) -> Exception:
    if status >= 500:
        return ServiceUnavailable("PayPal's certificate host answered with an error.")
    return SignatureInvalid("PAYPAL-CERT-URL does not name a certificate.")


class Verifier:
    """Checks PayPal's transmission signature against the configured webhook ids."""

    def __init__(
        self,
        webhook_ids: Sequence[str],
        certificates: CertificateCache,
        tolerance: int,
        clock: Clock = time.time,
    ) -> None:
        self._webhook_ids = [wid for wid in webhook_ids if wid]
        if not self._webhook_ids:
            raise ValueError("PAYPAL_WEBHOOK_ID must hold at least one webhook id")
        self._certificates = certificates
        self._tolerance = tolerance
        self._clock = clock

    async def verify(self, headers: Headers, raw: bytes) -> None:
        """Raise SignatureInvalid unless PayPal's certificate signed this body for our webhook."""
        transmission_id = _header(headers, "paypal-transmission-id")
        sent_at = _header(headers, "paypal-transmission-time")
        signature = _signature(_header(headers, "paypal-transmission-sig"))
        if _header(headers, "paypal-auth-algo").lower() != AUTH_ALGO.lower():
            raise SignatureInvalid(f"PAYPAL-AUTH-ALGO must be {AUTH_ALGO}.")
        self._check_time(sent_at)
        key = await self._certificates.public_key(_header(headers, "paypal-cert-url"))
        crc = zlib.crc32(raw)
        for webhook_id in self._webhook_ids:
            message = f"{transmission_id}|{sent_at}|{webhook_id}|{crc}".encode()
            try:
                key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                continue
            return
        raise SignatureInvalid("PAYPAL-TRANSMISSION-SIG does not match the body and webhook id.")

    def _check_time(self, value: str) -> None:
        try:
            sent = datetime.fromisoformat(value)
        except ValueError:
            sent = None
        if sent is None or sent.tzinfo is None:
            raise SignatureInvalid("PAYPAL-TRANSMISSION-TIME must be an RFC 3339 time.")
        if abs(self._clock() - sent.timestamp()) > self._tolerance:
            raise SignatureInvalid(
                f"PAYPAL-TRANSMISSION-TIME is more than {self._tolerance} seconds away from the "
                "receiver's clock: a stale or replayed delivery, or a skewed clock."
            )


class PayPalProvider:
    """PayPal's webhooks at `/v1/webhooks/paypal` (see the module docstring)."""

    name = NAME

    def configured(self, settings: Settings) -> bool:
        return bool(settings.paypal_webhook_ids)

    def verifier(self, settings: Settings) -> Verifier:
        """One verifier per process: its certificate cache lives as long as it."""
        trust: ssl.SSLContext | bool = True
        if settings.paypal_cert_ca_file is not None:
            trust = ssl.create_default_context(cafile=str(settings.paypal_cert_ca_file))
        certificates = CertificateCache(settings.paypal_cert_host_list, fetch_over_https(trust))
        return Verifier(
            settings.paypal_webhook_ids, certificates, settings.webhook_tolerance_seconds
        )

    def parse(self, headers: Headers, raw: bytes) -> list[ProviderEvent]:
        return parse(headers, raw)

    def acknowledge(self, receipts: Sequence[EventReceipt]) -> Acknowledgement:
        return receipts_acknowledgement(receipts)

    def sample_requests(
        self, settings: Settings, payments: int, rng: random.Random
    ) -> list[SampleRequest]:
        """Events for `payments` captures, each transmission signed with PAYPAL_SEND_KEY_FILE."""
        if settings.paypal_send_key_file is None or not settings.paypal_send_cert_url:
            raise ValueError(
                "playing PayPal needs PAYPAL_SEND_KEY_FILE and PAYPAL_SEND_CERT_URL (a key, and "
                "where its certificate is served on a PAYPAL_CERT_HOSTS host)"
            )
        key = serialization.load_pem_private_key(
            settings.paypal_send_key_file.read_bytes(), password=None
        )
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("PAYPAL_SEND_KEY_FILE must hold an RSA private key")
        webhook_id = (settings.paypal_webhook_ids or ("WEBHOOK_ID",))[0]
        bodies = paypal_samples.delivery_order(paypal_samples.stories(payments, rng), rng)
        return [
            SampleRequest(sign(key, settings.paypal_send_cert_url, webhook_id, body), body)
            for body in bodies
        ]


PROVIDER = PayPalProvider()


def sign(
    key: rsa.RSAPrivateKey, cert_url: str, webhook_id: str, raw: bytes, sent_at: str | None = None
) -> dict[str, str]:
    """The headers PayPal sends with one transmission of `raw` (signed with `key`)."""
    transmission_id = str(uuid.uuid4())
    sent_at = sent_at or now_rfc3339()
    message = signing_message(transmission_id, sent_at, webhook_id, raw)
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return {
        "paypal-transmission-id": transmission_id,
        "paypal-transmission-time": sent_at,
        "paypal-transmission-sig": base64.b64encode(signature).decode(),
        "paypal-cert-url": cert_url,
        "paypal-auth-algo": AUTH_ALGO,
        "content-type": "application/json",
    }


def signing_message(transmission_id: str, sent_at: str, webhook_id: str, raw: bytes) -> bytes:
    """What PayPal signs for one transmission of `raw` (for tests and `payhook send`)."""
    return f"{transmission_id}|{sent_at}|{webhook_id}|{zlib.crc32(raw)}".encode()


def parse(headers: Headers, raw: bytes) -> list[ProviderEvent]:
    """The one event a verified PayPal request carries (ignored, with a reason, if unmappable)."""
    body = fields.storable(fields.load_json(raw), raw)
    if not isinstance(body, Mapping):
        return [_ignored(_content_id(raw), "unknown", raw, "the body is not an object")]
    event_id = fields.optional_text(body, "id") or _content_id(raw)
    event_type = fields.optional_text(body, "event_type") or "unknown"
    try:
        transaction_id, seen = _observe(event_type, body)
    except Unmappable as exc:
        return [_ignored(event_id, event_type, raw, str(exc))]
    occurred = fields.iso_time(body, "create_time")
    return [ProviderEvent(NAME, event_id, event_type, transaction_id, occurred, seen, raw)]


def _observe(event_type: str, body: JsonObject) -> tuple[str, Observation]:
    if event_type not in _CAPTURE_STATES.keys() | _REFUND_EVENTS | _DISPUTE_EVENTS.keys():
        raise Unmappable(f"payhook does not use {event_type} events")
    resource = fields.member(body, "resource")
    if event_type in _CAPTURE_STATES:
        return fields.text(resource, "id"), _capture(resource, _CAPTURE_STATES[event_type])
    if event_type in _DISPUTE_EVENTS:
        opened = _DISPUTE_EVENTS[event_type]
        seen = Observation(dispute_opened=opened, dispute_closed=not opened)
        return _disputed(resource), seen
    return _captured_by(resource), _refund(resource)


def _capture(resource: JsonObject, state: PaymentState) -> Observation:
    minor, currency = _money(fields.member(resource, "amount"))
    payee = resource.get("payee")
    merchant = fields.optional_text(payee, "merchant_id") if isinstance(payee, Mapping) else None
    return Observation(
        state=state, amount_minor=minor, currency=currency, destination_account=merchant
    )


def _refund(resource: JsonObject) -> Observation:
    minor, currency = _money(fields.member(resource, "amount"))
    breakdown = resource.get("seller_payable_breakdown")
    total = breakdown.get("total_refunded_amount") if isinstance(breakdown, Mapping) else None
    made = fields.iso_time(resource, "create_time")
    return Observation(
        currency=currency,
        refund_id=fields.text(resource, "id"),
        refund_minor=minor,
        refund_failed=resource.get("status") in _FAILED_REFUND,
        refund_created_at=int(made.timestamp()) if made is not None else None,
        refunded_total_minor=_money(total)[0] if isinstance(total, Mapping) else None,
    )


def _money(amount: JsonObject) -> tuple[int, str]:
    currency = fields.known_currency(NAME, amount.get("currency_code"))
    return fields.minor_of_major(NAME, amount.get("value"), currency), currency


def _captured_by(resource: JsonObject) -> str:
    """The capture a refund belongs to: its `up` link, `.../v2/payments/captures/<id>`."""
    links = resource.get("links")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, Mapping) and link.get("rel") == "up":
            path = urlsplit(str(link.get("href", ""))).path.rstrip("/").split("/")
            if len(path) >= 2 and path[-2] == "captures" and path[-1]:
                return path[-1]
    raise Unmappable("the refund has no up link to its capture")


def _disputed(resource: JsonObject) -> str:
    transactions = resource.get("disputed_transactions")
    if isinstance(transactions, list) and transactions:
        return fields.text(
            fields.obj(transactions[0], "disputed transaction"), "seller_transaction_id"
        )
    raise Unmappable("the dispute names no disputed transaction")


def _header(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if not value:
        raise SignatureInvalid(f"The {name} header is missing.")
    return value


def _signature(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureInvalid("PAYPAL-TRANSMISSION-SIG is not base64.") from None


def _content_id(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _ignored(event_id: str, event_type: str, raw: bytes, reason: str) -> ProviderEvent:
    return ProviderEvent(NAME, event_id, event_type, None, None, None, raw, reason)


def now_rfc3339(clock: Clock = time.time) -> str:
    """A transmission time as PayPal writes it (`2026-01-15T10:30:00Z`)."""
    return datetime.fromtimestamp(int(clock()), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
