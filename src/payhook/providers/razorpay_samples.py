"""Razorpay webhook bodies shaped as Razorpay's published samples, for `payhook send`.

Each `Story` is one payment's events, from authorization to its end, with the state the
precedence table gives it; `delivery_order` mixes the stories, repeats some deliveries (same
`x-razorpay-event-id`, same body) and takes them out of order, as Razorpay may.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z: samples are dated from here
ACCOUNT = "acc_BFQ7uQEaa7j2z7"
Obj = dict[str, Any]


def razorpay_id(prefix: str, rng: random.Random) -> str:
    """An id in Razorpay's form: prefix, underscore, 14 alphanumerics."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return f"{prefix}_{''.join(rng.choice(alphabet) for _ in range(14))}"


@dataclass(frozen=True)
class Delivery:
    """One webhook request: its `x-razorpay-event-id` and body."""

    event_id: str
    body: bytes


@dataclass
class Payment:
    id: str
    order_id: str
    amount: int
    currency: str
    created: int


@dataclass
class Story:
    """One payment's deliveries and where they leave it."""

    payment: Payment
    state: str
    refunded: int = 0
    deliveries: list[Delivery] = field(default_factory=list)


def payment_entity(p: Payment, status: str, *, refunded: int = 0) -> Obj:
    """A payment entity as Razorpay's netbanking samples show it."""
    captured = status in ("captured", "refunded")
    return {
        "id": p.id,
        "entity": "payment",
        "amount": p.amount,
        "currency": p.currency,
        "base_amount": p.amount,
        "status": status,
        "order_id": p.order_id,
        "invoice_id": None,
        "international": False,
        "method": "netbanking",
        "amount_refunded": refunded,
        "amount_transferred": 0,
        "refund_status": None if not refunded else "full" if refunded >= p.amount else "partial",
        "captured": captured,
        "description": None,
        "card_id": None,
        "bank": "HDFC",
        "wallet": None,
        "vpa": None,
        "email": "gaurav.kumar@example.com",
        "contact": "+919876543210",
        "notes": [],
        "fee": 2 if captured else None,
        "tax": 0 if captured else None,
        "error_code": "BAD_REQUEST_ERROR" if status == "failed" else None,
        "error_description": "Payment failed" if status == "failed" else None,
        "error_source": "bank" if status == "failed" else None,
        "error_step": "payment_authorization" if status == "failed" else None,
        "error_reason": "payment_failed" if status == "failed" else None,
        "acquirer_data": {"bank_transaction_id": "0125836177"},
        "created_at": p.created,
    }


def refund_entity(p: Payment, refund_id: str, amount: int, status: str, created: int) -> Obj:
    """A refund entity as Razorpay's refund samples show it."""
    return {
        "id": refund_id,
        "entity": "refund",
        "amount": amount,
        "currency": p.currency,
        "payment_id": p.id,
        "notes": {"comment": "payhook send"},
        "receipt": None,
        "acquirer_data": {"arn": None},
        "created_at": created,
        "batch_id": None,
        "status": status,
        "speed_processed": "normal",
        "speed_requested": "optimum",
    }


def event(kind: str, created: int, **entities: Obj) -> Obj:
    """A Razorpay event envelope holding `entities` (payment, refund) under `payload`."""
    return {
        "entity": "event",
        "account_id": ACCOUNT,
        "event": kind,
        "contains": list(entities),
        "payload": {name: {"entity": entity} for name, entity in entities.items()},
        "created_at": created,
    }


def _deliver(story: Story, document: Obj, rng: random.Random) -> None:
    body = json.dumps(document, separators=(",", ":")).encode()
    story.deliveries.append(Delivery(razorpay_id("evt", rng), body))


def _captured(p: Payment, rng: random.Random, state: str = "captured") -> Story:
    story = Story(p, state)
    _deliver(
        story,
        event("payment.authorized", p.created + 5, payment=payment_entity(p, "authorized")),
        rng,
    )
    _deliver(
        story, event("payment.captured", p.created + 9, payment=payment_entity(p, "captured")), rng
    )
    return story


def _refunds(p: Payment, rng: random.Random, amounts: list[int], *, fail_last: bool) -> Story:
    story = _captured(p, rng)
    refunded = 0
    for index, amount in enumerate(amounts):
        refund_id = razorpay_id("rfnd", rng)
        created = p.created + 60 * (index + 1)
        failed = fail_last and index == len(amounts) - 1
        pending = refund_entity(p, refund_id, amount, "pending", created)
        _deliver(
            story,
            event(
                "refund.created",
                created,
                refund=pending,
                payment=payment_entity(p, "captured", refunded=refunded),
            ),
            rng,
        )
        if failed:
            done = refund_entity(p, refund_id, amount, "failed", created)
            kind = "refund.failed"
        else:
            refunded += amount
            done = refund_entity(p, refund_id, amount, "processed", created)
            kind = "refund.processed"
        status = "refunded" if refunded >= p.amount else "captured"
        _deliver(
            story,
            event(
                kind,
                created + 30,
                refund=done,
                payment=payment_entity(p, status, refunded=refunded),
            ),
            rng,
        )
    story.refunded = refunded
    story.state = (
        "refunded" if refunded >= p.amount else "partially_refunded" if refunded else "captured"
    )
    return story


def _failed(p: Payment, rng: random.Random) -> Story:
    story = Story(p, "failed")
    _deliver(
        story, event("payment.failed", p.created + 5, payment=payment_entity(p, "failed")), rng
    )
    return story


def stories(payments: int, rng: random.Random) -> list[Story]:
    """`payments` payments, cycling through captured, refunded, failed and refund-failed ones."""
    result = []
    for index in range(payments):
        amount = rng.randrange(100, 500_000)
        p = Payment(
            razorpay_id("pay", rng), razorpay_id("order", rng), amount, "INR", EPOCH + 3600 * index
        )
        kind = index % 5
        if kind == 0:
            result.append(_captured(p, rng))
        elif kind == 1:
            result.append(_refunds(p, rng, [amount // 3, amount // 4], fail_last=False))
        elif kind == 2:
            result.append(_refunds(p, rng, [amount], fail_last=False))
        elif kind == 3:
            result.append(_failed(p, rng))
        else:
            result.append(_refunds(p, rng, [amount // 2], fail_last=True))
    return result


def delivery_order(all_stories: list[Story], rng: random.Random) -> list[Delivery]:
    """Every delivery once, a quarter of them twice, all shuffled together."""
    deliveries = [d for story in all_stories for d in story.deliveries]
    repeats = rng.sample(deliveries, len(deliveries) // 4)
    order = deliveries + repeats
    rng.shuffle(order)
    return order
