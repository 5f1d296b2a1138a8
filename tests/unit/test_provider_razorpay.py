"""Razorpay: payhook verifies as Razorpay's own SDK does and maps Razorpay's published samples."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from itertools import permutations
from pathlib import Path

import pytest
import razorpay
from razorpay.errors import SignatureVerificationError

from payhook.errors import InvalidRequest, SignatureInvalid
from payhook.providers import razorpay as provider
from payhook.providers import state
from payhook.providers.model import Observation, PaymentState

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parents[1] / "fixtures" / "razorpay"
SECRET = "rzp_webhook_s3cret"
RAZORPAY_SDK = razorpay.Utility(razorpay.Client(auth=("rzp_test_key", "rzp_test_secret")))


def sample(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


async def test_a_signature_payhook_makes_is_accepted_by_razorpays_sdk_and_by_payhook() -> None:
    body = sample("payment_captured_card")
    headers = provider.Verifier([SECRET]).sign(body)

    assert RAZORPAY_SDK.verify_webhook_signature(
        body.decode(), headers["x-razorpay-signature"], SECRET
    )
    await provider.Verifier(["rotated_out", SECRET]).verify(headers, body)


@pytest.mark.parametrize(
    ("body", "secret"),
    [
        (sample("payment_captured_card").replace(b'"amount": 100', b'"amount": 900'), SECRET),
        (sample("payment_captured_card"), "another_secret"),
    ],
)
async def test_a_tampered_body_or_another_secret_fails_for_razorpay_and_payhook(
    body: bytes, secret: str
) -> None:
    signed = provider.Verifier([SECRET]).sign(sample("payment_captured_card"))
    with pytest.raises(SignatureVerificationError):
        RAZORPAY_SDK.verify_webhook_signature(body.decode(), signed["x-razorpay-signature"], secret)
    with pytest.raises(SignatureInvalid):
        await provider.Verifier([secret]).verify(signed, body)


@pytest.mark.parametrize("header", [None, "", "00" * 32, "not hex at all", "é" * 64])
async def test_a_missing_or_wrong_signature_header_is_refused(header: str | None) -> None:
    headers = {} if header is None else {"x-razorpay-signature": header}
    with pytest.raises(SignatureInvalid):
        await provider.Verifier([SECRET]).verify(headers, sample("payment_captured_card"))


@pytest.mark.parametrize(
    ("name", "state"),
    [
        (f"payment_{event}_{method}", state)
        for event, state in [
            ("authorized", PaymentState.AUTHORIZED),
            ("captured", PaymentState.CAPTURED),
            ("failed", PaymentState.FAILED),
        ]
        for method in ("card", "netbanking", "upi", "wallets")
    ],
)
def test_every_published_payment_sample_maps_to_its_payment_and_state(
    name: str, state: PaymentState
) -> None:
    body = sample(name)
    published = json.loads(body)
    payment = published["payload"]["payment"]["entity"]

    [event] = provider.parse({"x-razorpay-event-id": "evt_1"}, body)

    assert (event.provider, event.event_id, event.event_type) == (
        "razorpay",
        "evt_1",
        published["event"],
    )
    assert event.transaction_id == payment["id"]
    assert event.occurred_at == datetime.fromtimestamp(published["created_at"], UTC)
    assert event.observation is not None
    assert event.observation.state is state
    assert (event.observation.amount_minor, event.observation.currency) == (
        payment["amount"],
        "INR",
    )
    assert event.observation.destination_account == published["account_id"]
    assert event.raw == body


def test_a_processed_refund_attaches_to_its_payment_with_the_cumulative_refunded_figure() -> None:
    [event] = provider.parse({"x-razorpay-event-id": "evt_r1"}, sample("refund_processed"))

    assert event.transaction_id == "pay_FPoJKWQQ8lK13n"
    assert event.observation == Observation(
        state=PaymentState.CAPTURED,
        amount_minor=500000,
        currency="INR",
        refund_id="rfnd_FS8TWyPrCsa0OB",
        refund_minor=50000,
        refund_failed=False,
        refund_created_at=1597734071,
        refunded_total_minor=190000,
        destination_account="acc_E7OQJcEANmBHTC",
    )


def test_a_failed_refund_is_marked_failed_and_does_not_vouch_for_the_cumulative_figure() -> None:
    [event] = provider.parse({"x-razorpay-event-id": "evt_r2"}, sample("refund_failed"))

    assert event.observation is not None
    assert event.observation.refund_id == "rfnd_FS8TWyPrCsa0OB"
    assert event.observation.refund_failed
    assert event.observation.refunded_total_minor is None


@pytest.mark.parametrize("name", ["refund_speed_changed"])
def test_event_types_payhook_does_not_use_are_ignored_with_a_reason(name: str) -> None:
    [event] = provider.parse({"x-razorpay-event-id": "evt_x"}, sample(name))

    assert (event.transaction_id, event.observation) == (None, None)
    assert event.event_type == "refund.speed_changed"
    assert event.ignored_reason == "payhook does not use refund.speed_changed events"


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'{"event": "payment.captured"}',
        b'{"event": "payment.captured", "payload": {"payment": {"entity": {"id": "pay_1"}}}}',
        sample("payment_captured_card").replace(b'"amount": 100', b'"amount": true'),
        sample("payment_captured_card").replace(b'"INR"', b'"XXQ"'),
        sample("payment_captured_card").replace(b'"amount": 100', b'"amount": 1.5'),
    ],
)
def test_a_verified_body_of_unexpected_shape_is_ignored_not_refused(body: bytes) -> None:
    [event] = provider.parse({"x-razorpay-event-id": "evt_odd"}, body)

    assert (event.event_id, event.transaction_id, event.observation) == ("evt_odd", None, None)
    assert event.ignored_reason


def test_a_body_that_is_not_json_is_a_client_error() -> None:
    with pytest.raises(InvalidRequest):
        provider.parse({"x-razorpay-event-id": "evt_1"}, b"event=payment.captured")


def test_without_an_event_id_header_identical_bodies_share_one_dedupe_key() -> None:
    body = sample("payment_captured_upi")
    [first] = provider.parse({}, body)
    [again] = provider.parse({}, body)
    [other] = provider.parse({}, sample("payment_captured_card"))

    assert first.event_id == again.event_id != other.event_id
    assert first.event_id.startswith("sha256:")


@pytest.mark.parametrize(
    ("name", "opened"),
    [
        ("payment_dispute_created", True),
        ("payment_dispute_under_review", True),
        ("payment_dispute_action_required", True),
        ("payment_dispute_won", False),
        ("payment_dispute_lost", False),
        ("payment_dispute_closed", False),
    ],
)
def test_every_published_dispute_sample_opens_or_closes_a_dispute_on_its_payment(
    name: str, opened: bool
) -> None:
    published = json.loads(sample(name))
    dispute = published["payload"]["dispute"]["entity"]
    payment = published["payload"]["payment"]["entity"]

    [event] = provider.parse({"x-razorpay-event-id": "evt_d"}, sample(name))

    assert event.transaction_id == dispute["payment_id"] == payment["id"]
    assert event.observation is not None
    assert (event.observation.dispute_opened, event.observation.dispute_closed) == (
        opened,
        not opened,
    )
    assert event.observation.state is PaymentState(payment["status"])  # as the payment says
    assert event.observation.refunded_total_minor == payment["amount_refunded"]


def test_an_unused_event_type_is_named_as_such_whatever_its_payload() -> None:
    body = b'{"entity": "event", "event": "order.paid", "created_at": 1567674606}'
    [event] = provider.parse({"x-razorpay-event-id": "evt_o"}, body)
    assert event.ignored_reason == "payhook does not use order.paid events"


# -- auto-refunds: Razorpay gives back an authorisation it was never allowed to capture ---------


def auto_refund(event: str, *, captured: bool = False, refund_status: str = "processed") -> bytes:
    """Razorpay's refund sample as an auto-refund of the whole uncaptured payment: the payment
    `refunded`, `captured` false, its `amount_refunded` the whole amount."""
    body = json.loads(sample("refund_processed"))
    body["event"] = event
    refund = body["payload"]["refund"]["entity"]
    refund.update(amount=500000, status=refund_status)
    payment = body["payload"]["payment"]["entity"]
    payment.update(
        status="refunded", captured=captured, amount_refunded=500000, refund_status="full"
    )
    return json.dumps(body).encode()


def authorized_payment() -> bytes:
    body = json.loads(sample("payment_authorized_netbanking"))
    body["payload"]["payment"]["entity"].update(
        id="pay_FPoJKWQQ8lK13n", amount=500000, currency="INR", status="authorized"
    )
    return json.dumps(body).encode()


@pytest.mark.parametrize("event", ["refund.created", "refund.processed"])
def test_an_auto_refund_releases_the_authorisation_and_is_no_refund_of_captured_money(
    event: str,
) -> None:
    [parsed] = provider.parse({"x-razorpay-event-id": "evt_a"}, auto_refund(event))

    assert parsed.transaction_id == "pay_FPoJKWQQ8lK13n"
    assert parsed.observation == Observation(
        state=PaymentState.CANCELED,
        amount_minor=500000,
        currency="INR",
        destination_account="acc_E7OQJcEANmBHTC",
    )


def test_a_failed_auto_refund_says_nothing_of_the_state_nor_of_refunds() -> None:
    body = auto_refund("refund.failed", refund_status="failed")
    [parsed] = provider.parse({"x-razorpay-event-id": "evt_f"}, body)

    assert parsed.observation == Observation(
        amount_minor=500000, currency="INR", destination_account="acc_E7OQJcEANmBHTC"
    )


def test_an_auto_refunded_payment_ends_canceled_with_nothing_refunded_in_any_order() -> None:
    events = [
        provider.parse({"x-razorpay-event-id": f"evt_{n}"}, body)[0].observed()
        for n, body in enumerate(
            [
                authorized_payment(),
                auto_refund("refund.created"),
                auto_refund("refund.processed"),
            ]
        )
    ]
    for order in permutations(events):
        snapshot = state.fold(order)
        assert snapshot is not None
        assert (snapshot.payment_state, snapshot.amount_refunded_minor) == (
            PaymentState.CANCELED,
            0,
        )
        assert snapshot.amount_minor == 500000


def test_a_refunded_payment_that_was_captured_is_still_a_refund() -> None:
    """`captured` true: a refund the merchant made (or a lost dispute), counted in full."""
    [parsed] = provider.parse(
        {"x-razorpay-event-id": "evt_m"}, auto_refund("refund.processed", captured=True)
    )
    snapshot = state.fold([parsed.observed()])

    assert snapshot is not None
    assert (snapshot.payment_state, snapshot.amount_refunded_minor) == (
        PaymentState.REFUNDED,
        500000,
    )
