"""Stripe: `POST /v1/webhooks/stripe` takes Event objects exactly as Stripe sends them.

Signature: `Stripe-Signature: t=<unix>,v1=<hex>` over `<t>.<raw body>`, the scheme of
`payhook.webhooks.signatures.Stripe` (what `stripe.WebhookSignature` computes), with
STRIPE_WEBHOOK_SECRET (comma-separated during a rotation) and WEBHOOK_TOLERANCE_SECONDS.

One payment, one transaction: its id is the PaymentIntent's (`pi_...`); charge, refund and
dispute events are attached through their `payment_intent`, and a charge without one stands for
itself (`ch_...`). Mapping (event type -> what it says about the payment):

| Event type | Observation |
|---|---|
| payment_intent.created, .processing | pending; amount |
| payment_intent.amount_capturable_updated | authorized; amount |
| payment_intent.succeeded | captured; amount_received (a partial capture keeps what moved) |
| payment_intent.payment_failed / .canceled | failed / canceled |
| charge.succeeded, .captured, .failed, .refunded | the charge's state (below); amount_refunded |
| refund.created, .updated, .failed, charge.refund.updated | one refund; failed/canceled: none |
| charge.dispute.created / .closed | a dispute opened / closed |
| anything else | ignored (answered 2xx, kept with its reason) |

A charge's state: `failed` or `pending` by its status; else captured (amount_captured) when
`captured`, canceled when refunded without a capture (an authorization released), else
authorized. `disputed: true` on a charge opens a dispute too.

Accounts: `source_account` is the customer (`cus_...`), else the payment method (`pm_...`);
`destination_account` is the Connect destination (`transfer_data.destination`), else
`on_behalf_of`, else the connected account the event came from (`account`); a plain account's
own payments have none.

Before API version 2025-03-31.basil a partial capture "refunded" the uncaptured rest: the
charge's amount_refunded then includes it, and it is taken out here.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, NoReturn

import orjson

from payhook.config import Settings
from payhook.errors import InvalidRequest
from payhook.providers import currencies, fields, stripe_samples
from payhook.providers.base import (
    Acknowledgement,
    Headers,
    SampleRequest,
    receipts_acknowledgement,
)
from payhook.providers.model import EventReceipt, Observation, PaymentState, ProviderEvent
from payhook.webhooks import signatures

NAME = "stripe"
BASIL = "2025-03-31"
"""The API version since which a partial capture no longer creates a refund."""

Document = Mapping[str, Any]
Mapped = tuple[str, Observation]


class Unmappable(ValueError):
    """A verified event whose object payhook cannot read: recorded `ignored` with this reason."""


class StripeVerifier:
    """`Stripe-Signature` checked with every configured secret, in constant time."""

    def __init__(self, scheme: signatures.Stripe) -> None:
        self._scheme = scheme

    async def verify(self, headers: Headers, raw: bytes) -> None:
        """Raise SignatureInvalid unless a `v1` entry matches a secret within the tolerance."""
        self._scheme.verify(headers, raw)


class StripeProvider:
    """Stripe's webhooks; see the module docstring."""

    name = NAME

    def configured(self, settings: Settings) -> bool:
        return bool(settings.stripe_webhook_secrets)

    def verifier(self, settings: Settings, clock: signatures.Clock = time.time) -> StripeVerifier:
        scheme = signatures.Stripe(
            settings.stripe_webhook_secrets, settings.webhook_tolerance_seconds, clock
        )
        return StripeVerifier(scheme)

    def parse(self, headers: Headers, raw: bytes) -> list[ProviderEvent]:
        """The one Event a Stripe request carries (raises InvalidRequest if it is not JSON)."""
        return [event_from_body(raw)]

    def acknowledge(self, receipts: Sequence[EventReceipt]) -> Acknowledgement:
        return receipts_acknowledgement(receipts)

    def sample_requests(
        self, settings: Settings, payments: int, rng: random.Random
    ) -> list[SampleRequest]:
        """Signed events for `payments` payments, with duplicates and out-of-order sequences."""
        secret = (settings.stripe_webhook_secrets or ("whsec_payhook_send",))[0]
        scheme = signatures.Stripe([secret], settings.webhook_tolerance_seconds)
        now = int(time.time())
        bodies = stripe_samples.delivery_order(stripe_samples.stories(payments, rng), rng)
        return [SampleRequest(scheme.sign(body, timestamp=now, msg_id=""), body) for body in bodies]


PROVIDER = StripeProvider()


def event_from_body(raw: bytes) -> ProviderEvent:
    """The ProviderEvent of one verified Stripe request body."""
    document = fields.storable(_load(raw), raw)
    if not isinstance(document, dict) or not _is_text(document.get("id")):
        digest = hashlib.sha256(raw).hexdigest()
        return _ignored(f"sha256:{digest}", "unknown", raw, "not a Stripe Event: no string id")
    event_id: str = document["id"]
    event_type = document.get("type")
    if not isinstance(event_type, str) or not _is_text(event_type):
        return _ignored(event_id, "unknown", raw, "not a Stripe Event: no string type")
    mapper = MAPPERS.get(event_type)
    if mapper is None:
        return _ignored(event_id, event_type, raw, f"{event_type} is a type payhook does not use")
    try:
        transaction_id, observation = mapper(_object(document), document)
    except Unmappable as exc:
        return _ignored(event_id, event_type, raw, str(exc))
    occurred_at = fields.unix_time(document, "created")
    return ProviderEvent(NAME, event_id, event_type, transaction_id, occurred_at, observation, raw)


def _load(raw: bytes) -> Any:
    try:
        # orjson first: a quarter of the standard parser's CPU. Stripe's amounts are integers,
        # so no float is read; a body orjson refuses (an integer beyond 64 bits, a lone
        # surrogate) is parsed again by the standard library, which only refuses invalid JSON.
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidRequest(f"The body is not valid JSON: {exc}") from None


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _ignored(event_id: str, event_type: str, raw: bytes, reason: str) -> ProviderEvent:
    return ProviderEvent(NAME, event_id, event_type, None, None, None, raw, ignored_reason=reason)


def _is_text(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 255


def _object(document: Document) -> Document:
    data = document.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise Unmappable("the event has no data.object")
    return obj


# -- reading Stripe objects ------------------------------------------------------------------


def _id_of(value: object) -> str | None:
    """An id given as a string, or as an expanded object with an `id`."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and _is_text(value) else None


def _required_id(obj: Document) -> str:
    identifier = _id_of(obj.get("id"))
    if identifier is None:
        raise Unmappable("the object has no string id")
    return identifier


def _minor(obj: Document, field: str) -> int:
    """An amount in minor units, 0 to fields.MAX_MINOR: a larger one would not fit the
    database's integer, and failing its batch's write would hold up every event beside it."""
    value = obj.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= fields.MAX_MINOR:
        raise Unmappable(f"{field} is not a non-negative integer of at most 18 digits")
    return value


def _currency(obj: Document) -> str:
    value = obj.get("currency")
    if not isinstance(value, str):
        raise Unmappable("currency is missing")
    code = value.upper()
    try:
        currencies.exponent(NAME, code)
    except currencies.UnknownCurrency as exc:
        raise Unmappable(str(exc)) from None
    return code


def _payment_of(obj: Document) -> str:
    """The transaction an object belongs to: its PaymentIntent, else its charge."""
    payment = _id_of(obj.get("payment_intent")) or _id_of(obj.get("charge"))
    if payment is None:
        raise Unmappable("the object names neither a payment_intent nor a charge")
    return payment


def _source(obj: Document) -> str | None:
    return _id_of(obj.get("customer")) or _id_of(obj.get("payment_method"))


def _destination(obj: Document, event: Document) -> str | None:
    transfer = obj.get("transfer_data")
    destination = _id_of(transfer.get("destination")) if isinstance(transfer, dict) else None
    return destination or _id_of(obj.get("on_behalf_of")) or _id_of(event.get("account"))


# -- event types -------------------------------------------------------------------------------


def _payment_intent(state: PaymentState) -> Callable[[Document, Document], Mapped]:
    def mapped(intent: Document, event: Document) -> Mapped:
        amount = _minor(intent, "amount")
        received = intent.get("amount_received")
        if state is PaymentState.CAPTURED and isinstance(received, int) and received > 0:
            amount = received  # a partial capture: the rest was released, never charged
        observation = Observation(
            state=state,
            amount_minor=amount,
            currency=_currency(intent),
            source_account=_source(intent),
            destination_account=_destination(intent, event),
        )
        return _required_id(intent), observation

    return mapped


def _charge(charge: Document, event: Document) -> Mapped:
    state = _charge_state(charge)
    amount = _minor(charge, "amount")
    captured = charge.get("amount_captured")
    if state is PaymentState.CAPTURED and isinstance(captured, int) and captured > 0:
        amount = captured
    observation = Observation(
        state=state,
        amount_minor=amount,
        currency=_currency(charge),
        refunded_total_minor=_refunded_total(charge, event),
        dispute_opened=charge.get("disputed") is True,
        source_account=_source(charge),
        destination_account=_destination(charge, event),
    )
    return _id_of(charge.get("payment_intent")) or _required_id(charge), observation


def _charge_state(charge: Document) -> PaymentState:
    status = charge.get("status")
    if status == "failed":
        return PaymentState.FAILED
    if status == "pending":
        return PaymentState.PENDING
    if charge.get("captured") is True:
        return PaymentState.CAPTURED
    # Refunding a charge that was never captured releases the authorization.
    return PaymentState.CANCELED if charge.get("refunded") is True else PaymentState.AUTHORIZED


def _refunded_total(charge: Document, event: Document) -> int | None:
    if charge.get("captured") is not True:
        return None
    refunded = _minor(charge, "amount_refunded")
    version = event.get("api_version")
    if not isinstance(version, str) or version[: len(BASIL)] < BASIL:
        captured = charge.get("amount_captured")
        if isinstance(captured, int):
            refunded -= max(0, _minor(charge, "amount") - captured)
    return max(refunded, 0)


def _refund(refund: Document, event: Document) -> Mapped:
    if refund.get("reason") == "expired_uncaptured_charge":
        raise Unmappable("an expired authorization released, not a refund of captured money")
    failed = event.get("type") == "refund.failed" or refund.get("status") in ("failed", "canceled")
    observation = Observation(
        refund_id=_required_id(refund),
        refund_minor=_minor(refund, "amount"),
        refund_failed=failed,
        refund_created_at=fields.unix_seconds(refund, "created"),
        currency=_currency(refund),
    )
    return _payment_of(refund), observation


def _dispute(opened: bool) -> Callable[[Document, Document], Mapped]:
    def mapped(dispute: Document, event: Document) -> Mapped:
        _required_id(dispute)
        return _payment_of(dispute), Observation(dispute_opened=opened, dispute_closed=not opened)

    return mapped


MAPPERS: Mapping[str, Callable[[Document, Document], Mapped]] = {
    "payment_intent.created": _payment_intent(PaymentState.PENDING),
    "payment_intent.processing": _payment_intent(PaymentState.PENDING),
    "payment_intent.amount_capturable_updated": _payment_intent(PaymentState.AUTHORIZED),
    "payment_intent.succeeded": _payment_intent(PaymentState.CAPTURED),
    "payment_intent.payment_failed": _payment_intent(PaymentState.FAILED),
    "payment_intent.canceled": _payment_intent(PaymentState.CANCELED),
    "charge.succeeded": _charge,
    "charge.captured": _charge,
    "charge.failed": _charge,
    "charge.refunded": _charge,
    "charge.refund.updated": _refund,
    "refund.created": _refund,
    "refund.updated": _refund,
    "refund.failed": _refund,
    "charge.dispute.created": _dispute(opened=True),
    "charge.dispute.closed": _dispute(opened=False),
}
"""Every event type payhook reads; the ones to select in Stripe's dashboard."""
