"""Stripe events as Stripe sends them: verified as Stripe's SDK signs, mapped to observations."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import stripe
from hypothesis import given
from hypothesis import settings as hypothesis_settings

from payhook.config import Settings
from payhook.errors import InvalidRequest, SignatureInvalid
from payhook.providers import stripe_samples
from payhook.providers.model import EventReceipt, EventVerdict, Observation, PaymentState
from payhook.providers.state import fold
from payhook.providers.stripe import MAPPERS, PROVIDER, event_from_body

FIXTURES = Path(__file__).parent.parent / "fixtures" / "stripe"
SECRET = "whsec_test_payhook_stripe_secret"
NOW = 1_767_225_600
PI = "pi_3QbKzTLkdIwHu7ix0qa1b2Cd"
S = PaymentState


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def verify(raw: bytes, headers: dict[str, str], *secrets: str, now: float = NOW) -> None:
    settings = Settings(stripe_webhook_secret=",".join(secrets or (SECRET,)))
    asyncio.run(PROVIDER.verifier(settings, clock=lambda: now).verify(headers, raw))


def stripe_header(raw: bytes, secret: str = SECRET, at: int = NOW) -> dict[str, str]:
    """The header Stripe's own SDK computes for `raw`."""
    return {
        "stripe-signature": stripe.WebhookSignature.generate_signature_header(
            raw.decode(), secret, at
        )
    }


# -- verification ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(path.stem for path in FIXTURES.glob("*.json")))
def test_every_fixture_verifies_as_stripes_sdk_signs_it(name: str) -> None:
    raw = fixture(name)
    header = stripe_header(raw)
    verify(raw, header)
    sdk_event = stripe.Webhook.construct_event(
        raw.decode(), header["stripe-signature"], SECRET, tolerance=10**10
    )
    assert sdk_event.id == json.loads(raw)["id"]


def test_rotation_any_configured_secret_verifies() -> None:
    raw = fixture("payment_intent.succeeded")
    verify(raw, stripe_header(raw, "whsec_old"), "whsec_new", "whsec_old")


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing"),
        ({"stripe-signature": "t=1767225600"}, "one t= and a v1="),
        ({"stripe-signature": "garbage"}, "one t= and a v1="),
    ],
)
def test_missing_or_malformed_signatures_are_refused(headers: dict[str, str], message: str) -> None:
    with pytest.raises(SignatureInvalid, match=message):
        verify(fixture("payment_intent.succeeded"), headers)


def test_a_changed_body_a_stranger_or_a_stale_timestamp_is_refused() -> None:
    raw = fixture("payment_intent.succeeded")
    with pytest.raises(SignatureInvalid, match="No signature matches"):
        verify(raw.replace(b'"amount": 2000', b'"amount": 9000'), stripe_header(raw))
    with pytest.raises(SignatureInvalid, match="No signature matches"):
        verify(raw, stripe_header(raw, "whsec_stranger"))
    with pytest.raises(SignatureInvalid, match="more than 300 seconds"):
        verify(raw, stripe_header(raw), now=NOW + 301)


def test_unset_secret_means_not_configured() -> None:
    assert not PROVIDER.configured(Settings(stripe_webhook_secret=None))
    assert not PROVIDER.configured(Settings(stripe_webhook_secret=" , "))
    assert PROVIDER.configured(Settings(stripe_webhook_secret=SECRET))


# -- mapping ----------------------------------------------------------------------------------


def observe(name: str) -> tuple[str | None, Observation | None]:
    (parsed,) = PROVIDER.parse({}, fixture(name))
    return parsed.transaction_id, parsed.observation


REFUND = "re_3QbKzTLkdIwHu7ix0T5uV6wX"


def paid(state: PaymentState, refunded_total: int | None = None) -> Observation:
    """What the fixtures' payment events say: 20.00 USD from customer cus_RUq0tS0bOF0DbL."""
    return Observation(
        state=state,
        amount_minor=2000,
        currency="USD",
        refunded_total_minor=refunded_total,
        source_account="cus_RUq0tS0bOF0DbL",
    )


def refunded(
    refund_id: str, amount: int, failed: bool = False, made: int = 1735740000
) -> Observation:
    return Observation(
        refund_id=refund_id,
        refund_minor=amount,
        refund_failed=failed,
        refund_created_at=made,
        currency="USD",
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("payment_intent.created", paid(S.PENDING)),
        ("payment_intent.processing", paid(S.PENDING)),
        ("payment_intent.amount_capturable_updated", paid(S.AUTHORIZED)),
        ("payment_intent.succeeded", paid(S.CAPTURED)),
        ("payment_intent.payment_failed", paid(S.FAILED)),
        ("payment_intent.canceled", paid(S.CANCELED)),
        ("charge.succeeded", paid(S.CAPTURED, refunded_total=0)),
        ("charge.captured", paid(S.CAPTURED, refunded_total=0)),
        ("charge.failed", paid(S.FAILED)),
        ("charge.refunded", paid(S.CAPTURED, refunded_total=500)),
        ("charge.refunded.full", paid(S.CAPTURED, refunded_total=2000)),
        ("refund.created", refunded(REFUND, 500)),
        ("refund.updated", refunded(REFUND, 500)),
        ("charge.refund.updated", refunded(REFUND, 500)),
        (
            "refund.failed",
            refunded("re_3QbKzTLkdIwHu7ix0FaIl3dX", 300, failed=True, made=1735740300),
        ),
        ("charge.dispute.created", Observation(dispute_opened=True)),
        ("charge.dispute.closed", Observation(dispute_closed=True)),
    ],
)
def test_each_event_type_maps_to_what_it_says(name: str, expected: Observation) -> None:
    transaction_id, observation = observe(name)
    assert transaction_id == PI
    assert observation == expected


def test_every_mapped_type_has_a_fixture() -> None:
    types = {json.loads(path.read_bytes())["type"] for path in FIXTURES.glob("*.json")}
    assert set(MAPPERS) <= types


def test_the_fixture_stream_folds_to_the_precedence_tables_answer() -> None:
    names = ["charge.refunded", "refund.failed", "payment_intent.succeeded", "refund.created",
             "payment_intent.amount_capturable_updated", "charge.dispute.created"]  # fmt: skip
    events = [PROVIDER.parse({}, fixture(name))[0] for name in names]
    snapshot = fold(event.observed() for event in events)
    assert snapshot is not None
    assert snapshot.payment_state is S.PARTIALLY_REFUNDED
    assert (snapshot.amount_minor, snapshot.amount_refunded_minor, snapshot.disputed) == (
        2000,
        500,
        True,
    )


def test_unknown_types_are_ignored_with_a_reason() -> None:
    (parsed,) = PROVIDER.parse({}, fixture("customer.created"))
    assert parsed.ignored
    assert (parsed.event_type, parsed.transaction_id) == ("customer.created", None)
    assert parsed.ignored_reason == "customer.created is a type payhook does not use"


def body(**changes: Any) -> bytes:
    document = json.loads(fixture("payment_intent.succeeded"))
    document.update(changes)
    return json.dumps(document).encode()


def with_object(**changes: Any) -> bytes:
    document = json.loads(fixture("payment_intent.succeeded"))
    document["data"]["object"].update(changes)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[]", "no string id"),
        (b'{"object": "event"}', "no string id"),
        (body(type=None), "no string type"),
        (body(data={}), "no data.object"),
        (with_object(amount="20.00"), "amount is not a non-negative integer"),
        (with_object(amount=-5), "amount is not a non-negative integer"),
        (with_object(amount=10**19), "amount is not a non-negative integer"),  # not storable
        (with_object(currency="zzz"), "not an ISO 4217 currency"),
        (with_object(id=None), "no string id"),
    ],
)
def test_verified_bodies_payhook_cannot_read_are_ignored_never_refused(
    raw: bytes, reason: str
) -> None:
    (parsed,) = PROVIDER.parse({}, raw)
    assert parsed.ignored
    assert parsed.ignored_reason is not None
    assert reason in parsed.ignored_reason
    assert parsed.event_id  # a body without an id is still kept, under its digest


@pytest.mark.parametrize("raw", [b"", b"not json", b"{", b'{"a": NaN}', b"\xff\xfe"])
def test_a_body_that_is_not_json_is_a_400(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        PROVIDER.parse({}, raw)


def test_a_charge_without_a_payment_intent_stands_for_itself() -> None:
    document = json.loads(fixture("charge.succeeded"))
    document["data"]["object"]["payment_intent"] = None
    parsed = event_from_body(json.dumps(document).encode())
    assert parsed.transaction_id == "ch_3QbKzTLkdIwHu7ix0kq8VxUo"


def test_an_expanded_payment_intent_is_read_by_its_id() -> None:
    document = json.loads(fixture("refund.created"))
    document["data"]["object"]["payment_intent"] = {"id": PI, "object": "payment_intent"}
    assert event_from_body(json.dumps(document).encode()).transaction_id == PI


def test_a_partial_capture_keeps_what_was_captured() -> None:
    document = json.loads(fixture("payment_intent.succeeded"))
    document["data"]["object"].update(amount=2000, amount_received=1500)
    observation = event_from_body(json.dumps(document).encode()).observation
    assert observation is not None
    assert observation.amount_minor == 1500


@pytest.mark.parametrize(
    ("api_version", "refunded"), [("2025-03-31.basil", 500), ("2024-06-20", 0), (None, 0)]
)
def test_before_basil_the_released_rest_of_a_partial_capture_is_not_a_refund(
    api_version: str | None, refunded: int
) -> None:
    document = json.loads(fixture("charge.captured"))
    document["api_version"] = api_version
    document["data"]["object"].update(amount=2000, amount_captured=1500, amount_refunded=500)
    observation = event_from_body(json.dumps(document).encode()).observation
    assert observation is not None
    assert (observation.amount_minor, observation.refunded_total_minor) == (1500, refunded)


def test_connect_destination_fills_the_destination_account() -> None:
    document = json.loads(fixture("payment_intent.succeeded"))
    document["data"]["object"]["transfer_data"] = {"destination": "acct_1Q2w3E4r5T6y7U8i"}
    observation = event_from_body(json.dumps(document).encode()).observation
    assert observation is not None
    assert observation.destination_account == "acct_1Q2w3E4r5T6y7U8i"
    document["data"]["object"]["transfer_data"] = None
    document["account"] = "acct_connected"
    observation = event_from_body(json.dumps(document).encode()).observation
    assert observation is not None
    assert observation.destination_account == "acct_connected"


def test_the_acknowledgement_names_each_verdict() -> None:
    receipt = EventReceipt("evt_1", "payment_intent.succeeded", PI, EventVerdict.APPLIED)
    ack = PROVIDER.acknowledge([receipt])
    assert (ack.status_code, ack.media_type) == (200, "application/json")
    assert json.loads(ack.body) == {
        "received": True,
        "events": [{"id": "evt_1", "transaction_id": PI, "verdict": "applied"}],
    }


# -- samples for `payhook send` ----------------------------------------------------------------

SDK_CLASSES = {
    "payment_intent": stripe.PaymentIntent,
    "charge": stripe.Charge,
    "refund": stripe.Refund,
    "dispute": stripe.Dispute,
    "customer": stripe.Customer,
}


def declared(cls: type) -> set[str]:
    return {name for klass in cls.__mro__ for name in getattr(klass, "__annotations__", {})}


@pytest.mark.parametrize(
    "raw",
    [fixture(path.stem) for path in sorted(FIXTURES.glob("*.json"))]
    + stripe_samples.delivery_order(stripe_samples.stories(14, random.Random(7)), random.Random(7)),
)
def test_fixtures_and_samples_have_only_fields_stripes_sdk_declares(raw: bytes) -> None:
    document = json.loads(raw)
    assert set(document) - {"data"} <= declared(stripe.Event)
    obj = document["data"]["object"]
    assert set(obj) <= declared(SDK_CLASSES[obj["object"]]), set(obj) - declared(
        SDK_CLASSES[obj["object"]]
    )


def test_samples_end_in_the_state_each_story_expects() -> None:
    rng = random.Random(11)
    for story in stripe_samples.stories(21, rng):
        bodies = [stripe_samples.encode(item) for item in story.events]
        rng.shuffle(bodies)
        parsed = [event_from_body(raw) for raw in bodies]
        assert {event.transaction_id for event in parsed} == {story.payment.id}
        snapshot = fold(event.observed() for event in parsed)
        assert snapshot is not None
        assert snapshot.payment_state.value == story.expected_state
        assert snapshot.amount_refunded_minor == story.expected_refunded
        assert snapshot.disputed is story.disputed


def test_sample_requests_are_signed_with_the_configured_secret() -> None:
    settings = Settings(stripe_webhook_secret=SECRET)
    requests = PROVIDER.sample_requests(settings, 7, random.Random(3))
    assert len({request.body for request in requests}) < len(requests)  # some sent twice
    for request in requests[:5]:
        header = request.headers["stripe-signature"]
        stripe.WebhookSignature.verify_header(request.body.decode(), header, SECRET, 300)


# -- any verified JSON is an event, never a refusal ----------------------------------------

OBJECT_FIELDS = [
    "id", "amount", "amount_received", "amount_captured", "amount_refunded", "currency",
    "payment_intent", "charge", "status", "captured", "refunded", "customer", "transfer_data",
    "reason", "disputed",
]  # fmt: skip
_scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=12)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
_stripe_like = st.fixed_dictionaries(
    {},
    optional={
        "id": _values | st.text(min_size=1, max_size=30),
        "type": st.sampled_from(sorted(MAPPERS)) | _values,
        "created": _values,
        "api_version": _values,
        "data": st.fixed_dictionaries(
            {},
            optional={
                "object": st.dictionaries(
                    st.sampled_from(
                        [
                            "id",
                            "amount",
                            "amount_received",
                            "amount_captured",
                            "amount_refunded",
                            "currency",
                            "payment_intent",
                            "charge",
                            "status",
                            "captured",
                            "refunded",
                            "customer",
                            "transfer_data",
                            "reason",
                            "disputed",
                        ]
                    ),
                    _values | st.sampled_from(["usd", "jpy", "kwd", "pi_1", "ch_1", "succeeded"]),
                )
            },
        )
        | _values,
    },
)


@hypothesis_settings(database=None, deadline=None, max_examples=300)
@given(document=_stripe_like | _values)
def test_any_verified_json_is_an_event_never_a_refusal(document: Any) -> None:
    raw = json.dumps(document).encode()
    (parsed,) = PROVIDER.parse({}, raw)
    assert parsed.event_id
    assert parsed.raw == raw
    if parsed.ignored:
        assert parsed.ignored_reason
    else:
        assert parsed.transaction_id
        assert parsed.observation is not None
