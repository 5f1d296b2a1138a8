"""PayPal v2 capture events shaped as PayPal's samples, for `payhook send --provider paypal`.

A `Story` is one capture's events (PENDING, COMPLETED or DENIED, then REFUNDED or REVERSED) with
the state the precedence table gives it; `delivery_order` mixes the stories, repeats some
events and takes them out of order. PayPal retries with the same event id and body but a new
transmission, so every delivery is signed afresh.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from payhook.providers import currencies

EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z: samples are dated from here
API = "https://api.sandbox.paypal.com"
Obj = dict[str, Any]


def paypal_id(rng: random.Random, length: int = 17) -> str:
    """An id in PayPal's form: upper-case letters and digits."""
    return "".join(rng.choice("0123456789ABCDEFGHJKLMNPRSTUVWXY") for _ in range(length))


@dataclass
class Story:
    """One capture's events and where they leave it."""

    capture_id: str
    amount_minor: int
    currency: str
    state: str
    refunded: int = 0
    events: list[bytes] = field(default_factory=list)


def _money(story: Story, minor: int) -> Obj:
    value = currencies.to_major("paypal", minor, story.currency)
    return {"currency_code": story.currency, "value": f"{value:f}"}


def _time(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def capture(story: Story, status: str, at: int) -> Obj:
    """A v2 capture resource as PayPal's PAYMENT.CAPTURE.* samples show it."""
    self_link = f"{API}/v2/payments/captures/{story.capture_id}"
    return {
        "id": story.capture_id,
        "amount": _money(story, story.amount_minor),
        "final_capture": True,
        "seller_protection": {"status": "ELIGIBLE"},
        "status": status,
        "supplementary_data": {"related_ids": {"order_id": paypal_id(random.Random(at))}},
        "create_time": _time(at),
        "update_time": _time(at),
        "links": [
            {"href": self_link, "rel": "self", "method": "GET"},
            {"href": f"{self_link}/refund", "rel": "refund", "method": "POST"},
        ],
    }


def refund(story: Story, refund_id: str, minor: int, total: int, at: int) -> Obj:
    """A v2 refund resource, linked `up` to its capture, as PayPal's REFUNDED sample shows it."""
    return {
        "id": refund_id,
        "amount": _money(story, minor),
        "seller_payable_breakdown": {
            "gross_amount": _money(story, minor),
            "net_amount": _money(story, minor),
            "total_refunded_amount": _money(story, total),
        },
        "status": "COMPLETED",
        "create_time": _time(at),
        "update_time": _time(at),
        "links": [
            {"href": f"{API}/v2/payments/refunds/{refund_id}", "rel": "self", "method": "GET"},
            {
                "href": f"{API}/v2/payments/captures/{story.capture_id}",
                "rel": "up",
                "method": "GET",
            },
        ],
    }


def event(event_type: str, resource_type: str, resource: Obj, at: int, rng: random.Random) -> Obj:
    """A PayPal webhook event envelope around `resource`."""
    event_id = f"WH-{paypal_id(rng)}-{paypal_id(rng)}"
    amount = resource["amount"]
    return {
        "id": event_id,
        "event_version": "1.0",
        "create_time": _time(at),
        "resource_type": resource_type,
        "resource_version": "2.0",
        "event_type": event_type,
        "summary": f"{event_type} for {amount['value']} {amount['currency_code']}",
        "resource": resource,
        "links": [
            {
                "href": f"{API}/v1/notifications/webhooks-events/{event_id}",
                "rel": "self",
                "method": "GET",
            },
        ],
    }


def _add(story: Story, document: Obj) -> None:
    story.events.append(json.dumps(document, separators=(",", ":")).encode())


def _refunds(story: Story, at: int, rng: random.Random, amounts: list[int], kind: str) -> None:
    for index, minor in enumerate(amounts):
        story.refunded += minor
        resource = refund(story, paypal_id(rng), minor, story.refunded, at + 600 * (index + 1))
        _add(story, event(kind, "refund", resource, at + 600 * (index + 1), rng))
    story.state = "refunded" if story.refunded >= story.amount_minor else "partially_refunded"


def stories(payments: int, rng: random.Random) -> list[Story]:
    """`payments` captures, cycling through PayPal's usual endings."""
    result = []
    for index in range(payments):
        at = EPOCH + 3600 * index
        currency = rng.choice(["USD", "EUR", "JPY", "HUF"])
        story = Story(paypal_id(rng), rng.randrange(100, 100_000), currency, "captured")
        kind = index % 5
        if kind == 3:
            story.state = "failed"
            _add(
                story,
                event("PAYMENT.CAPTURE.DENIED", "capture", capture(story, "DENIED", at), at, rng),
            )
        else:
            if kind == 1:
                _add(
                    story,
                    event(
                        "PAYMENT.CAPTURE.PENDING", "capture", capture(story, "PENDING", at), at, rng
                    ),
                )
            _add(
                story,
                event(
                    "PAYMENT.CAPTURE.COMPLETED",
                    "capture",
                    capture(story, "COMPLETED", at + 30),
                    at + 30,
                    rng,
                ),
            )
        if kind == 2:
            _refunds(story, at, rng, [story.amount_minor // 3], "PAYMENT.CAPTURE.REFUNDED")
        if kind == 4:
            _refunds(story, at, rng, [story.amount_minor], "PAYMENT.CAPTURE.REVERSED")
        result.append(story)
    return result


def delivery_order(all_stories: list[Story], rng: random.Random) -> list[bytes]:
    """Every event once, a quarter of them twice, all shuffled together."""
    bodies = [body for story in all_stories for body in story.events]
    order = bodies + rng.sample(bodies, len(bodies) // 4)
    rng.shuffle(order)
    return order
