"""Stripe Event bodies shaped as Stripe sends them, for `payhook send --provider stripe`.

The objects carry the fields of Stripe's API objects (PaymentIntent, Charge, Refund, Dispute,
Customer) as Stripe's OpenAPI fixtures and API reference show them; the tests check every key
against the `stripe` package's own declarations. A `Story` is one payment's events from its
creation to its end, with the state the precedence table gives it; `delivery_order` mixes the
stories, repeats some events and takes them out of order, as Stripe may.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

API_VERSION = "2025-03-31.basil"
EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z: samples are dated from here
Obj = dict[str, Any]


def stripe_id(prefix: str, rng: random.Random) -> str:
    """An id in Stripe's form: prefix, underscore, 24 alphanumerics."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return f"{prefix}_{''.join(rng.choice(alphabet) for _ in range(24))}"


def event(event_type: str, obj: Obj, created: int, rng: random.Random) -> Obj:
    """A Stripe Event envelope around `obj`."""
    return {
        "id": stripe_id("evt", rng),
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": stripe_id("req", rng), "idempotency_key": stripe_id("ik", rng)[3:]},
        "type": event_type,
    }


def payment_intent(pi: Payment, status: str, *, received: int = 0, capturable: int = 0) -> Obj:
    """A PaymentIntent of `pi` in `status`."""
    return {
        "id": pi.id,
        "object": "payment_intent",
        "amount": pi.amount,
        "amount_capturable": capturable,
        "amount_details": {"tip": {}},
        "amount_received": received,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": {"allow_redirects": "always", "enabled": True},
        "canceled_at": pi.created + 600 if status == "canceled" else None,
        "cancellation_reason": "requested_by_customer" if status == "canceled" else None,
        "capture_method": pi.capture_method,
        "client_secret": f"{pi.id}_secret_{pi.secret}",
        "confirmation_method": "automatic",
        "created": pi.created,
        "currency": pi.currency,
        "customer": pi.customer,
        "description": f"Order {pi.order}",
        "last_payment_error": _payment_error(pi) if status == "requires_payment_method" else None,
        "latest_charge": pi.charge_id if status != "requires_payment_method" else None,
        "livemode": False,
        "metadata": {"order_id": pi.order},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": pi.payment_method,
        "payment_method_configuration_details": None,
        "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": f"customer-{pi.order}@example.com",
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }


def charge(pi: Payment, *, status: str = "succeeded", captured: bool = True, refunded: int = 0,
           disputed: bool = False) -> Obj:  # fmt: skip
    """The Charge of `pi`; `refunded` is its cumulative amount_refunded."""
    failed = status == "failed"
    return {
        "id": pi.charge_id,
        "object": "charge",
        "amount": pi.amount,
        "amount_captured": pi.amount if captured and not failed else 0,
        "amount_refunded": refunded,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": None if failed else f"txn_{pi.charge_id[3:]}",
        "billing_details": {
            "address": {
                "city": None,
                "country": "US",
                "line1": None,
                "line2": None,
                "postal_code": "94103",
                "state": None,
            },
            "email": None,
            "name": "Jenny Rosen",
            "phone": None,
            "tax_id": None,
        },
        "calculated_statement_descriptor": "PAYHOOK SAMPLE",
        "captured": captured and not failed,
        "created": pi.created + 1,
        "currency": pi.currency,
        "customer": pi.customer,
        "description": f"Order {pi.order}",
        "disputed": disputed,
        "failure_balance_transaction": None,
        "failure_code": "card_declined" if failed else None,
        "failure_message": "Your card was declined." if failed else None,
        "fraud_details": {},
        "livemode": False,
        "metadata": {"order_id": pi.order},
        "on_behalf_of": None,
        "outcome": _outcome(failed),
        "paid": not failed,
        "payment_intent": pi.id,
        "payment_method": pi.payment_method,
        "payment_method_details": _card_details(pi),
        "receipt_email": None,
        "receipt_number": None,
        "receipt_url": f"https://pay.stripe.com/receipts/payment/{pi.secret}",
        "refunded": refunded >= pi.amount,
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }


def refund(pi: Payment, refund_id: str, amount: int, status: str) -> Obj:
    """A Refund of `amount` against `pi`'s charge."""
    return {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "balance_transaction": f"txn_{refund_id[3:]}" if status == "succeeded" else None,
        "charge": pi.charge_id,
        "created": pi.created + 3600,
        "currency": pi.currency,
        "destination_details": {
            "card": {
                "reference_status": "pending",
                "reference_type": "acquirer_reference_number",
                "type": "refund",
            },
            "type": "card",
        },
        "failure_reason": "expired_or_canceled_card" if status == "failed" else None,
        "metadata": {},
        "payment_intent": pi.id,
        "reason": "requested_by_customer",
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": status,
        "transfer_reversal": None,
    }


def dispute(pi: Payment, dispute_id: str, status: str) -> Obj:
    """A Dispute of `pi`'s charge."""
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": pi.amount,
        "balance_transactions": [],
        "charge": pi.charge_id,
        "created": pi.created + 86_400,
        "currency": pi.currency,
        "evidence": {
            "customer_name": "Jenny Rosen",
            "product_description": None,
            "uncategorized_text": None,
        },
        "evidence_details": {
            "due_by": pi.created + 8 * 86_400,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": pi.id,
        "payment_method_details": {
            "card": {"brand": "visa", "case_type": "chargeback", "network_reason_code": "10.4"},
            "type": "card",
        },
        "reason": "fraudulent",
        "status": status,
    }


def customer(customer_id: str, created: int) -> Obj:
    """A Customer: its events are a type payhook does not use."""
    return {
        "id": customer_id,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": created,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "email": "jenny.rosen@example.com",
        "invoice_prefix": "7C1D2E3F",
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {},
        "name": "Jenny Rosen",
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def _payment_error(pi: Payment) -> Obj:
    return {
        "charge": pi.charge_id,
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "doc_url": "https://stripe.com/docs/error-codes/card-declined",
        "message": "Your card has insufficient funds.",
        "type": "card_error",
    }


def _outcome(failed: bool) -> Obj:
    return {
        "network_status": "declined_by_network" if failed else "approved_by_network",
        "reason": "insufficient_funds" if failed else None,
        "risk_level": "normal",
        "risk_score": 32,
        "seller_message": "The bank declined the payment." if failed else "Payment complete.",
        "type": "issuer_declined" if failed else "authorized",
    }


def _card_details(pi: Payment) -> Obj:
    return {
        "card": {
            "amount_authorized": pi.amount,
            "brand": "visa",
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": "pass",
                "cvc_check": "pass",
            },
            "country": "US",
            "exp_month": 8,
            "exp_year": 2030,
            "fingerprint": "AOB934RVNwzk6xtn",
            "funding": "credit",
            "last4": "4242",
            "network": "visa",
            "three_d_secure": None,
            "wallet": None,
        },
        "type": "card",
    }


# -- payments and their stories ----------------------------------------------------------------


# Stripe wants three-decimal amounts to end in 0, and ISK in whole krónur (two decimals, "00").
_AMOUNT_STEP = {"kwd": 10, "bhd": 10, "jod": 10, "omr": 10, "tnd": 10, "isk": 100}


@dataclass(frozen=True)
class Payment:
    """The constant facts of one sample payment."""

    id: str
    charge_id: str
    customer: str
    payment_method: str
    amount: int
    currency: str
    created: int
    order: str
    secret: str
    capture_method: str = "automatic"

    @classmethod
    def new(cls, rng: random.Random, created: int, currency: str = "usd") -> Payment:
        return cls(
            id=stripe_id("pi", rng),
            charge_id=stripe_id("ch", rng),
            customer=stripe_id("cus", rng),
            payment_method=stripe_id("pm", rng),
            amount=rng.randrange(50, 100_000) * _AMOUNT_STEP.get(currency, 1),
            currency=currency,
            created=created,
            order=f"{rng.randrange(10**6):06d}",
            secret=stripe_id("s", rng)[2:],
        )


@dataclass
class Story:
    """One payment's events in the order Stripe would create them, and where they end."""

    payment: Payment
    expected_state: str
    expected_refunded: int = 0
    disputed: bool = False
    events: list[Obj] = field(default_factory=list)

    def add(self, event_type: str, obj: Obj, rng: random.Random) -> None:
        created = self.payment.created + len(self.events)
        self.events.append(event(event_type, obj, created, rng))


def captured(pi: Payment, rng: random.Random) -> Story:
    """An automatic card payment that succeeds."""
    story = Story(pi, "captured")
    story.add("payment_intent.created", payment_intent(pi, "requires_payment_method"), rng)
    story.add("charge.succeeded", charge(pi), rng)
    story.add("payment_intent.succeeded", payment_intent(pi, "succeeded", received=pi.amount), rng)
    return story


def manual_capture(pi: Payment, rng: random.Random) -> Story:
    """Authorized first, captured later (capture_method=manual)."""
    story = Story(pi, "captured")
    authorized = payment_intent(pi, "requires_capture", capturable=pi.amount)
    story.add("payment_intent.created", payment_intent(pi, "requires_payment_method"), rng)
    story.add("charge.succeeded", charge(pi, captured=False), rng)
    story.add("payment_intent.amount_capturable_updated", authorized, rng)
    story.add("charge.captured", charge(pi), rng)
    story.add("payment_intent.succeeded", payment_intent(pi, "succeeded", received=pi.amount), rng)
    return story


def retried(pi: Payment, rng: random.Random) -> Story:
    """Declined once, then paid with another attempt: ends captured."""
    story = Story(pi, "captured")
    story.add("payment_intent.created", payment_intent(pi, "requires_payment_method"), rng)
    declined = {**charge(pi, status="failed"), "id": stripe_id("ch", rng)}  # each attempt's own
    story.add("charge.failed", declined, rng)
    story.add("payment_intent.payment_failed", payment_intent(pi, "requires_payment_method"), rng)
    story.add("payment_intent.processing", payment_intent(pi, "processing"), rng)
    story.add("payment_intent.succeeded", payment_intent(pi, "succeeded", received=pi.amount), rng)
    return story


def canceled(pi: Payment, rng: random.Random) -> Story:
    """Authorized, then canceled before capture."""
    story = Story(pi, "canceled")
    authorized = payment_intent(pi, "requires_capture", capturable=pi.amount)
    story.add("payment_intent.created", payment_intent(pi, "requires_payment_method"), rng)
    story.add("payment_intent.amount_capturable_updated", authorized, rng)
    story.add("payment_intent.canceled", payment_intent(pi, "canceled"), rng)
    return story


def partially_refunded(pi: Payment, rng: random.Random) -> Story:
    """Paid, then a part refunded."""
    part = pi.amount // 3
    story = captured(pi, rng)
    story.expected_state, story.expected_refunded = "partially_refunded", part
    refund_id = stripe_id("re", rng)
    story.add("refund.created", refund(pi, refund_id, part, "pending"), rng)
    story.add("charge.refunded", charge(pi, refunded=part), rng)
    story.add("refund.updated", refund(pi, refund_id, part, "succeeded"), rng)
    return story


def refunded(pi: Payment, rng: random.Random) -> Story:
    """Paid, then refunded in two parts that make the whole."""
    first = pi.amount // 2
    story = captured(pi, rng)
    story.expected_state, story.expected_refunded = "refunded", pi.amount
    for amount, total in ((first, first), (pi.amount - first, pi.amount)):
        refund_id = stripe_id("re", rng)
        story.add("refund.created", refund(pi, refund_id, amount, "succeeded"), rng)
        story.add("charge.refunded", charge(pi, refunded=total), rng)
        story.add("charge.refund.updated", refund(pi, refund_id, amount, "succeeded"), rng)
    return story


def disputed(pi: Payment, rng: random.Random) -> Story:
    """Paid, then disputed by the cardholder; the dispute is lost."""
    story = captured(pi, rng)
    story.disputed = True
    dispute_id = stripe_id("du", rng)
    story.add("charge.dispute.created", dispute(pi, dispute_id, "needs_response"), rng)
    story.add("charge.dispute.closed", dispute(pi, dispute_id, "lost"), rng)
    return story


KINDS: tuple[Callable[[Payment, random.Random], Story], ...] = (
    captured, manual_capture, retried, canceled, partially_refunded, refunded, disputed
)  # fmt: skip
CURRENCIES = ("usd", "usd", "eur", "jpy", "kwd", "huf", "isk")


def stories(payments: int, rng: random.Random) -> list[Story]:
    """`payments` stories of every kind in turn, in several currencies."""
    result = []
    for number in range(payments):
        currency = rng.choice(CURRENCIES)
        pi = Payment.new(rng, EPOCH + 60 * number, currency)
        result.append(KINDS[number % len(KINDS)](pi, rng))
    return result


def unrelated(rng: random.Random) -> Obj:
    """A `customer.created` event: a type payhook does not use."""
    return event("customer.created", customer(stripe_id("cus", rng), EPOCH), EPOCH, rng)


def delivery_order(all_stories: Iterable[Story], rng: random.Random) -> list[bytes]:
    """Every event once, in shuffled order, about one in ten sent twice, plus unrelated ones."""
    events = [item for story in all_stories for item in story.events]
    events += [unrelated(rng) for _ in range(max(1, len(events) // 20))]
    rng.shuffle(events)
    bodies = [encode(item) for item in events]
    repeats = rng.sample(bodies, len(bodies) // 10)
    return bodies + repeats


def encode(document: Obj) -> bytes:
    """The body as Stripe sends it: pretty-printed JSON with two-space indents."""
    return json.dumps(document, indent=2).encode()
