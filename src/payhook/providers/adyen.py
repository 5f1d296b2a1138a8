"""Adyen: JSON notifications, an HMAC signature inside every item, `[accepted]` as the answer.

Adyen signs each `NotificationRequestItem`, not the request: the base64 HMAC-SHA256 (key given in
hex) of `pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:
eventCode:success` sits in the item's `additionalData.hmacSignature`. Every item of a request is
checked and one bad item fails the whole request, so nothing of a tampered batch is stored. The
transaction is the payment's `pspReference`; modifications (CAPTURE, REFUND, CANCELLATION,
CHARGEBACK...) carry it as `originalReference`. Adyen has no event id: the dedupe key is
`pspReference:eventCode:success`, which Adyen repeats unchanged on every retry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from payhook.config import Settings
from payhook.errors import SignatureInvalid
from payhook.providers import adyen_samples, fields
from payhook.providers.base import Acknowledgement, Headers, SampleRequest
from payhook.providers.fields import JsonObject, Unmappable
from payhook.providers.model import EventReceipt, Observation, PaymentState, ProviderEvent

NAME = "adyen"
ACKNOWLEDGEMENT = b"[accepted]"
_SIGNED_FIELDS = ("pspReference", "originalReference", "merchantAccountCode", "merchantReference")

_DISPUTE_OPENED = frozenset(
    {"CHARGEBACK", "NOTIFICATION_OF_CHARGEBACK", "SECOND_CHARGEBACK", "REQUEST_FOR_INFORMATION"}
)
_DISPUTE_CLOSED = frozenset({"CHARGEBACK_REVERSED", "PREARBITRATION_WON"})
_REFUND_UNDONE = frozenset({"REFUND_FAILED", "REFUNDED_REVERSED"})


class Verifier:
    """Optional basic auth, then every item's `hmacSignature` under one of the keys."""

    def __init__(self, hex_keys: Sequence[str], basic_auth: tuple[str, str] | None = None) -> None:
        self._keys = [_key(key) for key in hex_keys]
        if not self._keys:
            raise ValueError("ADYEN_HMAC_KEY must hold at least one key")
        self._basic = f"{basic_auth[0]}:{basic_auth[1]}".encode() if basic_auth else None

    async def verify(self, headers: Headers, raw: bytes) -> None:
        """Raise SignatureInvalid unless the credentials and every item's signature match."""
        if self._basic is not None:
            _check_basic_auth(headers.get("authorization", ""), self._basic)
        items = notification_items(fields.load_json(raw))
        for index, item in enumerate(items):
            self._check_item(item, index)

    def signature(self, item: JsonObject) -> str:
        """The `hmacSignature` Adyen would put in `item` (first key): for tests and `send`."""
        return base64.b64encode(_digest(self._keys[0], item)).decode()

    def _check_item(self, item: JsonObject, index: int) -> None:
        additional = item.get("additionalData")
        candidate = additional.get("hmacSignature") if isinstance(additional, Mapping) else None
        if not isinstance(candidate, str) or not candidate:
            raise SignatureInvalid(f"Notification item {index} carries no hmacSignature.")
        offered = candidate.encode()
        try:
            signed = signing_string(item).encode()
        except UnsignedShape as exc:
            raise SignatureInvalid(f"Notification item {index}: {exc}.") from None
        for key in self._keys:
            if hmac.compare_digest(base64.b64encode(_hmac(key, signed)), offered):
                return
        raise SignatureInvalid(f"Notification item {index} fails its HMAC signature.")


class AdyenProvider:
    """Adyen's webhooks at `/v1/webhooks/adyen` (see the module docstring)."""

    name = NAME

    def configured(self, settings: Settings) -> bool:
        return bool(settings.adyen_hmac_keys)

    def verifier(self, settings: Settings) -> Verifier:
        return Verifier(settings.adyen_hmac_keys, settings.adyen_basic_auth)

    def parse(self, headers: Headers, raw: bytes) -> list[ProviderEvent]:
        return parse(headers, raw)

    def acknowledge(self, receipts: Sequence[EventReceipt]) -> Acknowledgement:
        """Adyen counts a delivery as done only when the body is `[accepted]`."""
        return Acknowledgement(200, ACKNOWLEDGEMENT, "text/plain; charset=utf-8")

    def sample_requests(
        self, settings: Settings, payments: int, rng: random.Random
    ) -> list[SampleRequest]:
        """Signed notifications for `payments` payments: batched, repeated, out of order."""
        signer = Verifier(settings.adyen_hmac_keys or (_SEND_KEY,))
        headers = {"content-type": "application/json"}
        if settings.adyen_basic_auth is not None:
            credentials = ":".join(settings.adyen_basic_auth).encode()
            headers["authorization"] = "Basic " + base64.b64encode(credentials).decode()
        stories = adyen_samples.stories(payments, rng)
        return [
            SampleRequest(dict(headers), notification_body(signer, batch))
            for batch in adyen_samples.delivery_order(stories, rng)
        ]


PROVIDER = AdyenProvider()
_SEND_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"


def notification_body(signer: Verifier, items: Sequence[JsonObject], live: bool = False) -> bytes:
    """A JSON notification holding `items`, each signed as Adyen signs it."""
    signed = []
    for item in items:
        additional = {**(item.get("additionalData") or {}), "hmacSignature": ""}
        unsigned = {**item, "additionalData": additional}
        additional["hmacSignature"] = signer.signature(unsigned)
        signed.append({"NotificationRequestItem": unsigned})
    body = {"live": "true" if live else "false", "notificationItems": signed}
    return fields.dump_json(body)


def notification_items(body: Any) -> list[JsonObject]:
    """Each `NotificationRequestItem` of a notification; SignatureInvalid when there are none."""
    wrappers = body.get("notificationItems") if isinstance(body, Mapping) else None
    if not isinstance(wrappers, list) or not wrappers:
        raise SignatureInvalid("The body holds no notificationItems to verify.")
    items = []
    for index, wrapper in enumerate(wrappers):
        item = wrapper.get("NotificationRequestItem") if isinstance(wrapper, Mapping) else None
        if not isinstance(item, Mapping):
            raise SignatureInvalid(f"Notification item {index} is not a NotificationRequestItem.")
        items.append(item)
    return items


def signing_string(item: JsonObject) -> str:
    """The colon-joined fields Adyen signs; absent fields are empty, nothing is escaped.

    Adyen sends each as text and the amount's value as an integer; a field of another type
    (JSON `true` for "true", a number for a reference) raises UnsignedShape: its text would
    match the signed one while payhook reads it differently, so a captured item altered that
    way (a refund's "true" turned into `true`, read as failed) would pass as signed.
    """
    amount = item.get("amount")
    amount = amount if isinstance(amount, Mapping) else {}
    texts = [item.get(name) for name in _SIGNED_FIELDS]
    texts += [amount.get("currency"), item.get("eventCode"), item.get("success")]
    value = amount.get("value")
    if any(part is not None and not isinstance(part, str) for part in texts) or (
        value is not None and (isinstance(value, bool) or not isinstance(value, int))
    ):
        raise UnsignedShape("a signed field is not of the type Adyen sends")
    parts = [*texts[:4], value, *texts[4:]]
    return ":".join("" if part is None else str(part) for part in parts)


class UnsignedShape(ValueError):
    """An item whose signed fields are not of the types Adyen sends: it cannot be verified."""


def parse(headers: Headers, raw: bytes) -> list[ProviderEvent]:
    """One event per item of a verified notification, in order."""
    body = fields.storable(fields.load_json(raw), raw)
    return [_event(item) for item in notification_items(body)]


def _event(item: JsonObject) -> ProviderEvent:
    raw = fields.dump_json(item)
    code = item.get("eventCode") if isinstance(item.get("eventCode"), str) else "unknown"
    event_id = _event_id(item, raw)
    try:
        transaction_id, seen = _observe(str(code), item)
    except Unmappable as exc:
        return ProviderEvent(NAME, event_id, str(code), None, None, None, raw, str(exc))
    occurred = fields.iso_time(item, "eventDate")
    return ProviderEvent(NAME, event_id, str(code), transaction_id, occurred, seen, raw)


def _event_id(item: JsonObject, raw: bytes) -> str:
    psp, code, success = (item.get(key) for key in ("pspReference", "eventCode", "success"))
    if all(isinstance(part, str) and part for part in (psp, code, success)):
        return f"{psp}:{code}:{success}"
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _observe(code: str, item: JsonObject) -> tuple[str, Observation]:
    success = item.get("success") == "true"
    handler = _HANDLERS.get(code)
    if handler is None:
        raise Unmappable(f"payhook does not use {code} notifications")
    return handler(item, success)


def _authorisation(item: JsonObject, success: bool) -> tuple[str, Observation]:
    state = PaymentState.AUTHORIZED if success else PaymentState.FAILED
    return fields.text(item, "pspReference"), _payment(item, state)


def _capture(item: JsonObject, success: bool) -> tuple[str, Observation]:
    if not success:
        raise Unmappable("Adyen refused the capture request; the payment stays as it was")
    captured = _payment(item, PaymentState.CAPTURED)
    return _original(item), replace(captured, capture_id=fields.text(item, "pspReference"))


def _capture_failed(item: JsonObject, success: bool) -> tuple[str, Observation]:
    """The scheme rejected a capture Adyen had accepted: that capture (its pspReference, the
    CAPTURE's own) brings no money, whatever `success` says."""
    return _original(item), Observation(
        capture_id=fields.text(item, "pspReference"), capture_failed=True
    )


def _cancellation(item: JsonObject, success: bool) -> tuple[str, Observation]:
    if not success:
        raise Unmappable("Adyen refused the cancellation; the payment stays as it was")
    return _original(item), _payment(item, PaymentState.CANCELED, with_amount=False)


def _refund(item: JsonObject, success: bool) -> tuple[str, Observation]:
    value, currency = _amount(item)
    return _original(item), Observation(
        currency=currency,
        refund_id=fields.text(item, "pspReference"),
        refund_minor=value,
        refund_failed=not success,
        destination_account=fields.optional_text(item, "merchantAccountCode"),
    )


def _refund_undone(item: JsonObject, success: bool) -> tuple[str, Observation]:
    return _original(item), Observation(
        refund_id=fields.text(item, "pspReference"), refund_failed=True
    )


def _cancel_or_refund(item: JsonObject, success: bool) -> tuple[str, Observation]:
    additional = item.get("additionalData")
    action = additional.get("modification.action") if isinstance(additional, Mapping) else None
    if action == "cancel":
        return _cancellation(item, success)
    if action == "refund":
        return _refund(item, success)
    raise Unmappable("CANCEL_OR_REFUND without modification.action cancel or refund")


def _dispute(item: JsonObject, success: bool) -> tuple[str, Observation]:
    opened = item.get("eventCode") in _DISPUTE_OPENED
    return _original(item), Observation(dispute_opened=opened, dispute_closed=not opened)


_Handler = Callable[[JsonObject, bool], tuple[str, Observation]]
_HANDLERS: Mapping[str, _Handler] = {
    "AUTHORISATION": _authorisation,
    "CAPTURE": _capture,
    "CAPTURE_FAILED": _capture_failed,
    "CANCELLATION": _cancellation,
    "REFUND": _refund,
    "CANCEL_OR_REFUND": _cancel_or_refund,
    **dict.fromkeys(_REFUND_UNDONE, _refund_undone),
    **dict.fromkeys(_DISPUTE_OPENED | _DISPUTE_CLOSED, _dispute),
}


def _payment(item: JsonObject, state: PaymentState, *, with_amount: bool = True) -> Observation:
    value, currency = _amount(item) if with_amount else (None, None)
    additional = item.get("additionalData")
    shopper = additional.get("shopperReference") if isinstance(additional, Mapping) else None
    return Observation(
        state=state,
        amount_minor=value,
        currency=currency,
        source_account=shopper if isinstance(shopper, str) and shopper else None,
        destination_account=fields.optional_text(item, "merchantAccountCode"),
    )


def _amount(item: JsonObject) -> tuple[int, str]:
    amount = fields.member(item, "amount")
    currency = fields.known_currency(NAME, amount.get("currency"))
    return fields.integer(amount, "value"), currency


def _original(item: JsonObject) -> str:
    """The payment a modification belongs to."""
    return fields.text(item, "originalReference")


def _digest(key: bytes, item: JsonObject) -> bytes:
    return _hmac(key, signing_string(item).encode())


def _hmac(key: bytes, signed: bytes) -> bytes:
    return hmac.new(key, signed, hashlib.sha256).digest()


def _key(hex_key: str) -> bytes:
    try:
        key = binascii.unhexlify(hex_key.strip())
    except (binascii.Error, ValueError):
        raise ValueError("ADYEN_HMAC_KEY must be the key in hexadecimal") from None
    if not key:
        raise ValueError("ADYEN_HMAC_KEY must not be empty")
    return key


def _check_basic_auth(header: str, expected: bytes) -> None:
    scheme, _, encoded = header.partition(" ")
    try:
        offered = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        offered = b""
    # Both sides always compared, so a wrong scheme and wrong credentials take the same time.
    matches = hmac.compare_digest(offered, expected)
    if scheme.lower() != "basic" or not matches:
        raise SignatureInvalid("The basic-auth credentials are missing or wrong.")
