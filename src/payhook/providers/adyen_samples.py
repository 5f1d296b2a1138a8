"""Adyen notification items shaped as Adyen's own mocks, for `payhook send --provider adyen`.

A `Story` is one payment's items (AUTHORISATION, then its modifications: CAPTURE, REFUND,
CANCELLATION, CHARGEBACK, CAPTURE_FAILED) with the state the precedence table gives it.
`delivery_order` mixes the stories, repeats some items (Adyen resends an item unchanged until
it gets `[accepted]`), takes them out of order and groups them into requests of one to three
items.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z: samples are dated from here
MERCHANT = "PayhookMerchantTest"
Item = dict[str, Any]


def psp_reference(rng: random.Random) -> str:
    """A 16-character pspReference as Adyen makes them."""
    return "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXZ") for _ in range(16))


@dataclass
class Story:
    """One payment's items and where they leave it."""

    psp: str
    amount: int
    currency: str
    state: str
    refunded: int = 0
    disputed: bool = False
    items: list[Item] = field(default_factory=list)


def item(
    story: Story,
    code: str,
    at: int,
    *,
    success: bool = True,
    psp: str | None = None,
    value: int | None = None,
) -> Item:
    """One NotificationRequestItem of `story` (a modification when `psp` is its own)."""
    notification: Item = {
        "additionalData": {"paymentMethod": "visa", "shopperReference": f"shopper-{story.psp[:6]}"},
        "amount": {"currency": story.currency, "value": story.amount if value is None else value},
        "eventCode": code,
        "eventDate": datetime.fromtimestamp(at, UTC).isoformat(),
        "merchantAccountCode": MERCHANT,
        "merchantReference": f"order-{story.psp[-6:]}",
        "paymentMethod": "visa",
        "pspReference": psp or story.psp,
        "reason": "" if success else "Refused",
        "success": "true" if success else "false",
    }
    if psp is not None:
        notification["originalReference"] = story.psp
    else:
        notification["operations"] = ["CANCEL", "CAPTURE", "REFUND"]
    return notification


def _authorised(story: Story, at: int, rng: random.Random, *, capture: bool) -> Story:
    story.items.append(item(story, "AUTHORISATION", at))
    if capture:
        story.items.append(item(story, "CAPTURE", at + 60, psp=psp_reference(rng)))
    return story


def _refunded(story: Story, at: int, rng: random.Random, amounts: list[int]) -> Story:
    _authorised(story, at, rng, capture=True)
    for index, amount in enumerate(amounts):
        refund = item(story, "REFUND", at + 600 * (index + 1), psp=psp_reference(rng), value=amount)
        story.items.append(refund)
    story.refunded = sum(amounts)
    story.state = "refunded" if story.refunded >= story.amount else "partially_refunded"
    return story


def stories(payments: int, rng: random.Random) -> list[Story]:
    """`payments` payments, cycling through Adyen's usual endings."""
    result = []
    for index in range(payments):
        at = EPOCH + 3600 * index
        amount = rng.randrange(100, 100_000)
        story = Story(psp_reference(rng), amount, rng.choice(["EUR", "USD", "ISK", "CLP"]), "")
        kind = index % 7
        if kind == 0:
            story.state = "captured"
            _authorised(story, at, rng, capture=True)
        elif kind == 1:
            _refunded(story, at, rng, [amount // 3])
        elif kind == 2:
            _refunded(story, at, rng, [amount // 2, amount - amount // 2])
        elif kind == 3:
            story.state = "failed"
            story.items.append(item(story, "AUTHORISATION", at, success=False))
        elif kind == 4:
            story.state = "canceled"
            _authorised(story, at, rng, capture=False)
            story.items.append(item(story, "CANCELLATION", at + 60, psp=psp_reference(rng)))
        elif kind == 5:
            story.state, story.disputed = "captured", True
            _authorised(story, at, rng, capture=True)
            story.items.append(item(story, "CHARGEBACK", at + 86400, psp=psp_reference(rng)))
        else:  # the scheme rejects the capture: authorised still, no money
            story.state = "authorized"
            _authorised(story, at, rng, capture=True)
            capture = story.items[-1]["pspReference"]
            story.items.append(item(story, "CAPTURE_FAILED", at + 86400, psp=capture))
        result.append(story)
    return result


def delivery_order(all_stories: list[Story], rng: random.Random) -> list[list[Item]]:
    """Every item once, a quarter twice, shuffled, in requests of one to three items."""
    items = [notification for story in all_stories for notification in story.items]
    order = items + rng.sample(items, len(items) // 4)
    rng.shuffle(order)
    requests = []
    while order:
        size = rng.randint(1, 3)
        requests.append(order[:size])
        order = order[size:]
    return requests
