"""A verified body may carry a NUL or a lone surrogate as a JSON escape: no text column takes
either (PostgreSQL refuses a NUL, UTF-8 has no lone surrogate), so each provider reads them as
U+FFFD instead of failing to store the event on every redelivery (tests/integration's Stripe
test stores one end to end)."""

from __future__ import annotations

from pathlib import Path

import pytest

from payhook.providers import adyen, fields, paypal, razorpay, stripe
from payhook.providers.base import Provider
from payhook.providers.model import ProviderEvent

FIXTURES = Path(__file__).parent.parent / "fixtures"
CASES: list[tuple[Provider, str]] = [
    (stripe.PROVIDER, "stripe/payment_intent.succeeded.json"),
    (razorpay.PROVIDER, "razorpay/payment_captured_card.json"),
    (adyen.PROVIDER, "adyen/authorisation-true.json"),
    (paypal.PROVIDER, "paypal/payment_capture_completed.json"),
]


def texts(event: ProviderEvent) -> list[str]:
    """The event's strings that go into text columns."""
    said = event.observation
    assert said is not None
    return [
        event.event_id,
        event.event_type,
        event.transaction_id or "",
        said.source_account or "",
        said.destination_account or "",
        said.refund_id or "",
    ]


def storable_text(text: str) -> bool:
    """No NUL (PostgreSQL refuses it) and no surrogate U+D800..U+DFFF (not a character)."""
    return "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@pytest.mark.parametrize(("provider", "name"), CASES, ids=[p.name for p, _ in CASES])
@pytest.mark.parametrize("escape", [b"\\u0000", b"\\ud800", b"\\uDFFF"])
def test_each_provider_reads_them_as_the_replacement_character(
    provider: Provider, name: str, escape: bytes
) -> None:
    """Each escape put after the payment's id reads as U+FFFD right there, in every text the
    event carries that holds the id, and nowhere else; no NUL or surrogate is left."""
    raw = (FIXTURES / name).read_bytes()
    headers = {razorpay.EVENT_ID_HEADER: "event_test"}
    (plain, *_) = provider.parse(headers, raw)
    assert plain.transaction_id
    assert all(storable_text(text) for text in texts(plain))
    marked = raw.replace(plain.transaction_id.encode(), plain.transaction_id.encode() + escape)
    assert marked != raw
    (event, *_) = provider.parse(headers, marked)
    assert event.transaction_id == plain.transaction_id + "\ufffd"
    assert all(storable_text(text) for text in texts(event))
    where = plain.transaction_id
    assert texts(event) == [text.replace(where, where + "\ufffd") for text in texts(plain)]
    if provider is not adyen.PROVIDER:  # Adyen's evidence is each item's own JSON, as read
        assert event.raw == marked  # the evidence is the body as received


def test_only_a_body_with_such_an_escape_is_walked() -> None:
    document = {"id": "evt_1", "list": ["a\\u0000 as text", {"k": 1}]}
    assert fields.storable(document, b'{"id": "evt_1", "list": ["a\\\\u0041"]}') is document
    # A valid surrogate pair is one character, kept; keys are read the same way.
    raw = b'{"\\u0000k": ["\\ud83d\\ude00", "a\\uDBFFb"]}'
    assert fields.storable({"\x00k": ["\U0001f600", "a\udbffb"]}, raw) == {
        "\ufffdk": ["\U0001f600", "a\ufffdb"]
    }
