"""Adyen: every item's HMAC as Adyen's own library computes it, and Adyen's mocks mapped."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from Adyen.util import generate_notification_sig, is_valid_hmac_notification

from payhook.errors import InvalidRequest, SignatureInvalid
from payhook.providers import adyen as provider
from payhook.providers import state
from payhook.providers.model import Observation, PaymentState

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parents[1] / "fixtures" / "adyen"
# The key of Adyen's UtilTest vector, and the one its slash/colon mocks were signed with.
VECTOR_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
MOCK_KEY = "74F490DD33F7327BAECC88B2947C011FC02D014A473AAA33A8EC93E4DC069174"


def notification(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return loaded


def items(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [wrapper["NotificationRequestItem"] for wrapper in body["notificationItems"]]


def signed_with_adyens_library(body: dict[str, Any], key: str = VECTOR_KEY) -> bytes:
    """The notification with each item signed by Adyen's own `generate_notification_sig`."""
    body = copy.deepcopy(body)
    for item in items(body):
        item.setdefault("additionalData", {}).pop("hmacSignature", None)
        item["additionalData"]["hmacSignature"] = generate_notification_sig(item, key).decode()
    return json.dumps(body).encode()


def batch(*names: str) -> dict[str, Any]:
    return {
        "live": "false",
        "notificationItems": [w for n in names for w in notification(n)["notificationItems"]],
    }


async def test_adyens_published_test_vector() -> None:
    item = {
        "pspReference": "7914073381342284",
        "merchantReference": "TestPayment-1407325143704",
        "merchantAccountCode": "TestMerchant",
        "amount": {"currency": "EUR", "value": 1130},
        "eventCode": "AUTHORISATION",
        "success": "true",
        "eventDate": "2019-05-06T17:15:34.121+02:00",
        "operations": ["CANCEL", "CAPTURE", "REFUND"],
        "paymentMethod": "visa",
    }
    signer = provider.Verifier([VECTOR_KEY])

    assert signer.signature(item) == "coqCmt/IZ4E3CzPvMY8zTjQVL5hYJUiBRg8UU+iCWo0="
    item["additionalData"] = {"hmacSignature": signer.signature(item)}
    await signer.verify(
        {}, json.dumps({"notificationItems": [{"NotificationRequestItem": item}]}).encode()
    )


@pytest.mark.parametrize("name", ["backslash", "colon", "forwardslash", "mixed"])
async def test_adyens_slash_and_colon_mocks_verify_without_escaping(name: str) -> None:
    item = json.loads((FIXTURES / f"{name}_notification.json").read_text())
    body = json.dumps({"live": "false", "notificationItems": [{"NotificationRequestItem": item}]})

    assert is_valid_hmac_notification(json.loads(body), MOCK_KEY)
    await provider.Verifier([MOCK_KEY]).verify({}, body.encode())


@pytest.mark.parametrize(
    "name",
    [
        "authorisation-true",
        "capture-true",
        "capture-false",
        "cancellation-true",
        "chargeback",
        "refund-true",
        "refund-false",
    ],
)
async def test_items_signed_by_adyens_library_verify_and_a_changed_field_does_not(
    name: str,
) -> None:
    body = signed_with_adyens_library(notification(name))
    verifier = provider.Verifier(["00ff", VECTOR_KEY])  # a rotated-out key first
    await verifier.verify({}, body)

    tampered = json.loads(body)
    items(tampered)[0]["amount"]["value"] += 1
    assert not is_valid_hmac_notification(tampered, VECTOR_KEY)
    with pytest.raises(SignatureInvalid, match="item 0 fails"):
        await verifier.verify({}, json.dumps(tampered).encode())


RETYPED: dict[str, Any] = {
    # "true" as JSON true: the same text signed, read as a failed refund
    "success": lambda item: item.update(success=True),
    # a reference as a number: the same digits signed, another event id
    "pspReference": lambda item: item.update(pspReference=8535296650153317),
    # an amount as text: the same digits signed
    "amount": lambda item: item["amount"].update(value=str(item["amount"]["value"])),
}


@pytest.mark.parametrize("field", sorted(RETYPED))
async def test_a_signed_field_of_another_type_is_refused_though_its_text_matches(
    field: str,
) -> None:
    """A captured item replayed with a signed field's JSON type changed would give the same
    signing text (Adyen signs no timestamp, so it never expires) while payhook reads it
    otherwise: a refund turned failed. Only text (and an integer amount) is verified."""
    original = notification("refund-true")
    items(original)[0]["pspReference"] = "8535296650153317"  # Adyen's are 16 digits
    body = json.loads(signed_with_adyens_library(original))
    verifier = provider.Verifier([VECTOR_KEY])
    await verifier.verify({}, json.dumps(body).encode())
    item = items(body)[0]
    text = {k: str(v).lower() for k, v in item.items() if k != "amount"}
    RETYPED[field](item)
    # The same text as signed (what the old check compared), only the JSON type differs.
    assert {k: str(v).lower() for k, v in item.items() if k != "amount"} == text

    with pytest.raises(SignatureInvalid, match="item 0: a signed field is not of the type"):
        await verifier.verify({}, json.dumps(body).encode())


async def test_one_bad_item_fails_the_whole_batch_though_adyens_helper_checks_only_the_first() -> (
    None
):
    body = json.loads(
        signed_with_adyens_library(batch("authorisation-true", "capture-true", "refund-true"))
    )
    items(body)[2]["additionalData"]["hmacSignature"] = base64.b64encode(b"x" * 32).decode()

    assert is_valid_hmac_notification(body, VECTOR_KEY)  # Adyen's helper looks at item 0 only
    with pytest.raises(SignatureInvalid, match="item 2 fails"):
        await provider.Verifier([VECTOR_KEY]).verify({}, json.dumps(body).encode())


@pytest.mark.parametrize(
    "body",
    [
        b'{"live": "false"}',
        b'{"notificationItems": []}',
        b'{"notificationItems": [{"Other": {}}]}',
        json.dumps(notification("cancellation-true")).encode(),  # no hmacSignature at all
    ],
)
async def test_a_notification_without_signed_items_is_refused(body: bytes) -> None:
    with pytest.raises(SignatureInvalid):
        await provider.Verifier([VECTOR_KEY]).verify({}, body)


async def test_a_body_that_is_not_json_is_a_client_error() -> None:
    with pytest.raises(InvalidRequest):
        await provider.Verifier([VECTOR_KEY]).verify({}, b"[accepted")


@pytest.mark.parametrize(
    ("authorization", "accepted"),
    [
        ("Basic " + base64.b64encode(b"adyen:pa55").decode(), True),
        ("basic " + base64.b64encode(b"adyen:pa55").decode(), True),
        ("Basic " + base64.b64encode(b"adyen:wrong").decode(), False),
        ("Bearer " + base64.b64encode(b"adyen:pa55").decode(), False),
        ("Basic !!!", False),
        (None, False),
    ],
)
async def test_basic_auth_is_checked_before_anything_else(
    authorization: str | None, accepted: bool
) -> None:
    verifier = provider.Verifier([VECTOR_KEY], basic_auth=("adyen", "pa55"))
    headers = {} if authorization is None else {"authorization": authorization}
    body = signed_with_adyens_library(notification("capture-true"))
    if accepted:
        await verifier.verify(headers, body)
    else:
        with pytest.raises(SignatureInvalid, match="basic-auth"):
            await verifier.verify(headers, body)


@pytest.mark.parametrize("key", ["", "not-hex", "abc"])
def test_a_key_that_is_not_hex_is_refused_without_showing_it(key: str) -> None:
    with pytest.raises(ValueError, match="ADYEN_HMAC_KEY") as refused:
        provider.Verifier([key])
    assert key not in str(refused.value) or not key


@pytest.mark.parametrize(
    ("name", "transaction", "observation"),
    [
        (
            "authorisation-true",
            "123456789",
            Observation(
                state=PaymentState.AUTHORIZED,
                amount_minor=10100,
                currency="EUR",
                destination_account="MagentoMerchantTest2",
            ),
        ),
        (
            "capture-true",
            "ORIGINAL_PSP",
            Observation(
                state=PaymentState.CAPTURED,
                amount_minor=23623,
                currency="USD",
                capture_id="PSP_REFERENCE",
                destination_account="MagentoMerchantTest2",
            ),
        ),
        (
            "cancellation-true",
            "8313547924770610",
            Observation(state=PaymentState.CANCELED, destination_account="YOUR_MERCHANT_ACCOUNT"),
        ),
        (
            "refund-true",
            "ORIGINAL_PSP",
            Observation(
                currency="EUR",
                refund_id="PSP_REFERENCE",
                refund_minor=1500,
                destination_account="MagentoMerchantTest2",
            ),
        ),
        (
            "refund-false",
            "ORIGINAL_PSP",
            Observation(
                currency="EUR",
                refund_id="PSP_REFERENCE",
                refund_minor=1500,
                refund_failed=True,
                destination_account="MagentoMerchantTest2",
            ),
        ),
        ("chargeback", "9913333333333333", Observation(dispute_opened=True)),
    ],
)
def test_adyens_mocks_map_to_the_payment_and_what_they_say(
    name: str, transaction: str, observation: Observation
) -> None:
    body = notification(name)
    [item] = items(body)

    [event] = provider.parse({}, json.dumps(body).encode())

    assert event.provider == "adyen"
    assert event.event_id == f"{item['pspReference']}:{item['eventCode']}:{item['success']}"
    assert event.event_type == item["eventCode"]
    assert event.transaction_id == transaction
    assert event.observation == observation
    assert event.occurred_at == datetime.fromisoformat(item["eventDate"]).astimezone(UTC)
    assert json.loads(event.raw) == item


def test_a_refused_authorisation_is_a_failed_payment() -> None:
    body = notification("authorisation-true")
    items(body)[0]["success"] = "false"

    [event] = provider.parse({}, json.dumps(body).encode())

    assert event.event_id == "123456789:AUTHORISATION:false"
    assert event.observation is not None
    assert event.observation.state is PaymentState.FAILED


def test_a_refused_capture_is_recorded_but_changes_nothing() -> None:
    [event] = provider.parse({}, json.dumps(notification("capture-false")).encode())

    assert (event.transaction_id, event.observation) == (None, None)
    assert event.ignored_reason == "Adyen refused the capture request; the payment stays as it was"


@pytest.mark.parametrize("success", ["true", "false"])
def test_a_capture_the_scheme_rejected_names_that_capture_as_failed(success: str) -> None:
    """CAPTURE_FAILED carries the capture's own pspReference, the one its CAPTURE had."""
    body = notification("capture-true")
    items(body)[0].update(eventCode="CAPTURE_FAILED", success=success, reason="Capture expired")

    [event] = provider.parse({}, json.dumps(body).encode())

    assert event.event_id == f"PSP_REFERENCE:CAPTURE_FAILED:{success}"
    assert event.transaction_id == "ORIGINAL_PSP"
    assert event.observation == Observation(capture_id="PSP_REFERENCE", capture_failed=True)


def test_authorised_captured_then_capture_failed_is_authorized_again() -> None:
    authorised = notification("authorisation-true")
    items(authorised)[0]["pspReference"] = "ORIGINAL_PSP"
    failed = notification("capture-true")
    items(failed)[0].update(eventCode="CAPTURE_FAILED", eventDate="2017-01-26T18:08:19+01:00")
    body = {
        "live": "false",
        "notificationItems": [
            *authorised["notificationItems"],
            *notification("capture-true")["notificationItems"],
            *failed["notificationItems"],
        ],
    }
    events = provider.parse({}, json.dumps(body).encode())
    assert {e.transaction_id for e in events} == {"ORIGINAL_PSP"}

    observed = [e.observed() for e in events]
    captured, rejected = state.fold(observed[:2]), state.fold(observed)
    assert captured is not None
    assert rejected is not None
    assert (captured.payment_state, rejected.payment_state) == ("captured", "authorized")
    assert rejected.amount_minor == 10100  # the authorisation's, not the failed capture's


def test_two_partial_captures_add_up_to_what_is_captured() -> None:
    authorised = notification("authorisation-true")
    items(authorised)[0].update(
        pspReference="ORIGINAL_PSP", amount={"currency": "EUR", "value": 10100}
    )
    captures = []
    for psp, value in (("CAPTURE_1", 4000), ("CAPTURE_2", 6100)):
        capture = notification("capture-true")
        items(capture)[0].update(pspReference=psp, amount={"currency": "EUR", "value": value})
        captures += capture["notificationItems"]
    body = {"live": "false", "notificationItems": authorised["notificationItems"] + captures}

    folded = state.fold(e.observed() for e in provider.parse({}, json.dumps(body).encode()))

    assert folded is not None
    assert (folded.payment_state, folded.amount_minor) == ("captured", 10100)


def test_a_batch_yields_one_event_per_item_in_order() -> None:
    body = batch("authorisation-true", "capture-true", "refund-true", "chargeback")

    events = provider.parse({}, json.dumps(body).encode())

    assert [e.event_type for e in events] == ["AUTHORISATION", "CAPTURE", "REFUND", "CHARGEBACK"]
    assert len({e.event_id for e in events}) == 4


@pytest.mark.parametrize(
    ("currency", "value", "accepted"),
    [("ISK", 279000, True), ("CLP", 100, True), ("XXQ", 100, False), ("EUR", -1, False)],
)
def test_amounts_follow_adyens_table_and_odd_ones_are_ignored(
    currency: str, value: int, accepted: bool
) -> None:
    body = notification("capture-true")
    items(body)[0]["amount"] = {"currency": currency, "value": value}

    [event] = provider.parse({}, json.dumps(body).encode())

    assert (event.observation is not None) is accepted
    assert event.ignored_reason is None if accepted else event.ignored_reason


def test_unused_event_codes_are_ignored_with_a_reason() -> None:
    body = notification("capture-true")
    items(body)[0]["eventCode"] = "REPORT_AVAILABLE"

    [event] = provider.parse({}, json.dumps(body).encode())

    assert event.ignored_reason == "payhook does not use REPORT_AVAILABLE notifications"
