"""Razorpay: `X-Razorpay-Signature` over the raw body, events named in the body, one per request.

Razorpay signs no timestamp, so a captured request can be replayed at any time: the permanent
dedupe on `x-razorpay-event-id` is what makes a replay harmless. The transaction is the payment
entity (`pay_...`); refunds attach through their `payment_id`. Amounts are integers in the
currency's smallest unit by Razorpay's own exponent table (`currencies.RAZORPAY`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Sequence
from datetime import datetime

from payhook.config import Settings
from payhook.providers import fields, razorpay_samples
from payhook.providers.base import (
    Acknowledgement,
    Headers,
    SampleRequest,
    receipts_acknowledgement,
)
from payhook.providers.fields import JsonObject, Unmappable
from payhook.providers.model import EventReceipt, Observation, PaymentState, ProviderEvent
from payhook.webhooks import signatures

NAME = "razorpay"
SIGNATURE_HEADER = "x-razorpay-signature"
EVENT_ID_HEADER = "x-razorpay-event-id"

_PAYMENT_STATES = {
    "payment.authorized": PaymentState.AUTHORIZED,
    "payment.captured": PaymentState.CAPTURED,
    "payment.failed": PaymentState.FAILED,
}
_REFUND_EVENTS = frozenset({"refund.created", "refund.processed", "refund.failed"})
# payment.dispute.*: opened while it runs, closed once decided either way.
_DISPUTE_EVENTS = {
    "payment.dispute.created": True,
    "payment.dispute.under_review": True,
    "payment.dispute.action_required": True,
    "payment.dispute.won": False,
    "payment.dispute.lost": False,
    "payment.dispute.closed": False,
}
# The payment entity's own status, as embedded in refund events. A refunded payment was captured,
# unless its `captured` is false: then the refund is an auto-refund (`_auto_refund_observation`).
_ENTITY_STATES = {
    "authorized": PaymentState.AUTHORIZED,
    "captured": PaymentState.CAPTURED,
    "refunded": PaymentState.CAPTURED,
    "failed": PaymentState.FAILED,
}


class Verifier:
    """Checks `X-Razorpay-Signature` (hex HMAC-SHA256 of the body) against each secret."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self._scheme = signatures.Razorpay(secrets)

    async def verify(self, headers: signatures.Headers, raw: bytes) -> None:
        """Raise SignatureInvalid unless a configured secret signed exactly these bytes."""
        self._scheme.verify(headers, raw)

    def sign(self, raw: bytes) -> dict[str, str]:
        """The signature header Razorpay would send for `raw` (first secret)."""
        return self._scheme.sign(raw, timestamp=0, msg_id="")


class RazorpayProvider:
    """Razorpay's webhooks at `/v1/webhooks/razorpay` (see the module docstring)."""

    name = NAME

    def configured(self, settings: Settings) -> bool:
        return bool(settings.razorpay_webhook_secrets)

    def verifier(self, settings: Settings) -> Verifier:
        return Verifier(settings.razorpay_webhook_secrets)

    def parse(self, headers: Headers, raw: bytes) -> list[ProviderEvent]:
        return parse(headers, raw)

    def acknowledge(self, receipts: Sequence[EventReceipt]) -> Acknowledgement:
        return receipts_acknowledgement(receipts)

    def sample_requests(
        self, settings: Settings, payments: int, rng: random.Random
    ) -> list[SampleRequest]:
        """Signed events for `payments` payments, repeated and out of order as Razorpay may."""
        signer = Verifier(settings.razorpay_webhook_secrets or ("payhook_send_secret",))
        order = razorpay_samples.delivery_order(razorpay_samples.stories(payments, rng), rng)
        return [_request(signer, delivery) for delivery in order]


PROVIDER = RazorpayProvider()


def _request(signer: Verifier, delivery: razorpay_samples.Delivery) -> SampleRequest:
    headers = {
        **signer.sign(delivery.body),
        EVENT_ID_HEADER: delivery.event_id,
        "content-type": "application/json",
    }
    return SampleRequest(headers, delivery.body)


def parse(headers: signatures.Headers, raw: bytes) -> list[ProviderEvent]:
    """The one event a verified Razorpay request carries (ignored, with a reason, if unmappable)."""
    body = fields.storable(fields.load_json(raw), raw)
    event_id = headers.get(EVENT_ID_HEADER) or _content_id(raw)
    event_type = body.get("event") if isinstance(body, dict) else None
    if not isinstance(event_type, str) or not event_type:
        return [_ignored(event_id, "unknown", raw, "the body names no event")]
    try:
        return [_mapped(fields.obj(body, "body"), event_id, event_type, raw)]
    except Unmappable as exc:
        return [_ignored(event_id, event_type, raw, str(exc))]


def _mapped(body: JsonObject, event_id: str, event_type: str, raw: bytes) -> ProviderEvent:
    if event_type not in _PAYMENT_STATES.keys() | _REFUND_EVENTS | _DISPUTE_EVENTS.keys():
        raise Unmappable(f"payhook does not use {event_type} events")
    occurred = fields.unix_time(body, "created_at")
    payload = fields.member(body, "payload")
    account = fields.optional_text(body, "account_id")
    if event_type in _PAYMENT_STATES:
        payment = _entity(payload, "payment")
        seen = _payment_observation(payment, account, _PAYMENT_STATES[event_type], refunds=True)
        return _event(event_id, event_type, fields.text(payment, "id"), occurred, seen, raw)
    if event_type in _REFUND_EVENTS:
        refund = _entity(payload, "refund")
        seen = _refund_observation(refund, payload, account, event_type)
        return _event(event_id, event_type, fields.text(refund, "payment_id"), occurred, seen, raw)
    dispute = _entity(payload, "dispute")
    seen = _dispute_observation(payload, account, opened=_DISPUTE_EVENTS[event_type])
    return _event(event_id, event_type, fields.text(dispute, "payment_id"), occurred, seen, raw)


def _dispute_observation(payload: JsonObject, account: str | None, *, opened: bool) -> Observation:
    seen = Observation(dispute_opened=opened, dispute_closed=not opened)
    if "payment" not in payload:
        return seen
    payment = _entity(payload, "payment")
    state = _entity_state(payment)
    observed = _payment_observation(payment, account, state, refunds=True)
    return dataclasses.replace(observed, dispute_opened=opened, dispute_closed=not opened)


def _entity_state(payment: JsonObject) -> PaymentState | None:
    status = payment.get("status")
    return _ENTITY_STATES.get(status) if isinstance(status, str) else None


def _payment_observation(
    payment: JsonObject, account: str | None, state: PaymentState | None, *, refunds: bool
) -> Observation:
    refunded = payment.get("amount_refunded")
    return Observation(
        state=state,
        amount_minor=fields.integer(payment, "amount"),
        currency=_currency(payment),
        refunded_total_minor=refunded if refunds and _is_count(refunded) else None,
        source_account=_payer(payment),
        destination_account=account,
    )


def _refund_observation(
    refund: JsonObject, payload: JsonObject, account: str | None, event_type: str
) -> Observation:
    failed = event_type == "refund.failed" or refund.get("status") == "failed"
    seen = Observation(currency=_currency(refund), destination_account=account)
    if "payment" in payload:
        payment = _entity(payload, "payment")
        if payment.get("captured") is False:
            return _auto_refund_observation(payment, account, failed=failed)
        state = _entity_state(payment)
        # The payment's amount_refunded is cumulative, but only a settled refund vouches for
        # it: a failed refund's event still shows the figure from before it failed.
        settled = refund.get("status") == "processed" and not failed
        seen = _payment_observation(payment, account, state, refunds=settled)
    return dataclasses.replace(
        seen,
        refund_id=fields.text(refund, "id"),
        refund_minor=fields.integer(refund, "amount"),
        refund_failed=failed,
        refund_created_at=fields.unix_seconds(refund, "created_at"),
    )


def _auto_refund_observation(
    payment: JsonObject, account: str | None, *, failed: bool
) -> Observation:
    """A refund of a payment never captured: Razorpay's auto-refund of an authorisation left
    uncaptured (only `authorized` payments are auto-refunded, and their `captured` is always
    false). No captured money comes back: the authorisation is released, so the payment is
    canceled and nothing counts as refunded. A failed one says neither."""
    state = None if failed else PaymentState.CANCELED
    return _payment_observation(payment, account, state, refunds=False)


def _entity(payload: JsonObject, name: str) -> JsonObject:
    return fields.member(fields.member(payload, name), "entity")


def _currency(entity: JsonObject) -> str:
    return fields.known_currency(NAME, entity.get("currency"))


def _payer(payment: JsonObject) -> str | None:
    """Who paid, as far as the payment says without personal data: customer, token or card."""
    for key in ("customer_id", "token_id", "card_id"):
        found = fields.optional_text(payment, key)
        if found:
            return found
    return None


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _content_id(raw: bytes) -> str:
    """Razorpay always sends an event id; without one, identical bodies are the same event."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _event(
    event_id: str,
    event_type: str,
    transaction_id: str,
    occurred: datetime | None,
    seen: Observation,
    raw: bytes,
) -> ProviderEvent:
    return ProviderEvent(NAME, event_id, event_type, transaction_id, occurred, seen, raw)


def _ignored(event_id: str, event_type: str, raw: bytes, reason: str) -> ProviderEvent:
    return ProviderEvent(NAME, event_id, event_type, None, None, None, raw, reason)
