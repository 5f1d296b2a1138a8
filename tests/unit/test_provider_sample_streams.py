"""`payhook send` for Razorpay, Adyen and PayPal: every request verifies, and folding what the
events say ends each payment in the state its story promises, whatever the delivery order."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError

from payhook.config import Settings
from payhook.providers import (
    adyen,
    adyen_samples,
    paypal,
    paypal_samples,
    razorpay,
    razorpay_samples,
    registry,
    state,
)
from payhook.providers.base import Provider, webhook_path
from payhook.providers.model import EventReceipt, EventVerdict, Observed
from tests.support.paypal import FakePayPal, fake_paypal

pytestmark = pytest.mark.anyio

ADYEN_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.fixture
def paypal_host(tmp_path: Path) -> Iterator[FakePayPal]:
    with fake_paypal(tmp_path) as fake:
        yield fake


def paypal_settings(fake: FakePayPal, tmp_path: Path) -> Settings:
    key = tmp_path / "paypal-key.pem"
    key.write_bytes(
        fake.signing_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return settings(
        paypal_webhook_id="8PT597110X687430LKGECATA",
        paypal_cert_hosts=fake.host,
        paypal_cert_ca_file=fake.ca_file,
        paypal_send_key_file=key,
        paypal_send_cert_url=fake.cert_url,
    )


def test_the_three_providers_are_registered_and_off_until_configured() -> None:
    assert {"razorpay", "adyen", "paypal"} <= set(registry.PROVIDERS)
    assert [webhook_path(p) for p in registry.configured(settings())] == []
    on = settings(
        razorpay_webhook_secret="s",
        adyen_hmac_key=ADYEN_KEY,
        paypal_webhook_id="WH1, WH2",
    )
    paths = {webhook_path(p) for p in registry.configured(on)}
    assert {"/v1/webhooks/razorpay", "/v1/webhooks/adyen", "/v1/webhooks/paypal"} <= paths
    assert on.paypal_webhook_ids == ("WH1", "WH2")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"adyen_hmac_key": "not-hex"}, "ADYEN_HMAC_KEY must be hexadecimal"),
        ({"adyen_hmac_key": ADYEN_KEY, "adyen_basic_auth_username": "u"}, "go together"),
    ],
)
def test_unusable_adyen_settings_stop_the_start(values: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(**values)


def test_adyen_is_answered_accepted_the_others_with_the_verdicts() -> None:
    receipts = [EventReceipt("e1", "CAPTURE", "P1", EventVerdict.APPLIED)]
    ack = adyen.PROVIDER.acknowledge(receipts)
    expected = (200, b"[accepted]", "text/plain; charset=utf-8")
    assert (ack.status_code, ack.body, ack.media_type) == expected
    ack = razorpay.PROVIDER.acknowledge(receipts)
    assert ack.status_code == 200
    assert json.loads(ack.body) == {
        "received": True,
        "events": [{"id": "e1", "transaction_id": "P1", "verdict": "applied"}],
    }


async def folded_states(
    provider: Provider, configured: Settings, payments: int, seed: int
) -> dict[str, tuple[str, int, bool]]:
    """Verify every sample request, parse it, and fold each payment's observations."""
    requests = provider.sample_requests(configured, payments, random.Random(seed))
    verifier = provider.verifier(configured)
    observed: dict[str, dict[str, Observed]] = defaultdict(dict)
    for request in requests:
        await verifier.verify(request.headers, request.body)
        for event in provider.parse(request.headers, request.body):
            assert event.ignored_reason is None, event.ignored_reason
            assert event.transaction_id is not None
            observed[event.transaction_id][event.event_id] = event.observed()
    folded = {}
    for payment, events in observed.items():
        snapshot = state.fold(events.values())
        assert snapshot is not None
        folded[payment] = (
            snapshot.payment_state.value,
            snapshot.amount_refunded_minor,
            snapshot.disputed,
        )
    return folded


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_razorpay_streams_end_in_their_stories_states(seed: int) -> None:
    configured = settings(razorpay_webhook_secret="rzp_s3cret")
    stories = razorpay_samples.stories(15, random.Random(seed))

    folded = await folded_states(razorpay.PROVIDER, configured, 15, seed)

    assert folded == {s.payment.id: (s.state, s.refunded, False) for s in stories}
    assert {s.state for s in stories} == {"captured", "partially_refunded", "refunded", "failed"}


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_adyen_streams_end_in_their_stories_states(seed: int) -> None:
    configured = settings(
        adyen_hmac_key=ADYEN_KEY,
        adyen_basic_auth_username="adyen",
        adyen_basic_auth_password="pa55",
    )
    stories = adyen_samples.stories(18, random.Random(seed))

    folded = await folded_states(adyen.PROVIDER, configured, 18, seed)

    assert folded == {s.psp: (s.state, s.refunded, s.disputed) for s in stories}
    assert {s.state for s in stories} == {
        "captured",
        "partially_refunded",
        "refunded",
        "failed",
        "canceled",
        "authorized",  # a capture the scheme rejected
    }


@pytest.mark.parametrize("seed", [1, 2])
async def test_paypal_streams_end_in_their_stories_states(
    seed: int, paypal_host: FakePayPal, tmp_path: Path
) -> None:
    configured = paypal_settings(paypal_host, tmp_path)
    stories = paypal_samples.stories(10, random.Random(seed))

    folded = await folded_states(paypal.PROVIDER, configured, 10, seed)

    assert folded == {s.capture_id: (s.state, s.refunded, False) for s in stories}
    assert paypal_host.fetches == ["/v1/notifications/certs/CERT-360caa42-fca2a594-test"]


def test_playing_paypal_needs_a_key_and_where_its_certificate_is() -> None:
    with pytest.raises(ValueError, match="PAYPAL_SEND_KEY_FILE"):
        paypal.PROVIDER.sample_requests(settings(paypal_webhook_id="WH"), 1, random.Random(1))
