"""Signature verification per scheme, and interop with the providers' own libraries."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import hypothesis.strategies as st
import pytest
import standardwebhooks.webhooks
import stripe
from hypothesis import given
from hypothesis import settings as hypothesis_settings

from payhook.config import SignatureScheme
from payhook.errors import SignatureInvalid
from payhook.webhooks.signatures import Verifier, build_verifier

NOW = 1_767_000_000
BODY = b'{"transaction_id":"txn_1","amount":150.50,"currency":"INR"}'
STANDARD_NEW = "whsec_" + base64.b64encode(b"new-standard-secret-32-bytes-lng").decode()
STANDARD_OLD = "whsec_" + base64.b64encode(b"old-standard-secret-32-bytes-lng").decode()
SECRETS = {
    SignatureScheme.STANDARD_WEBHOOKS: (STANDARD_NEW, STANDARD_OLD),
    SignatureScheme.STRIPE: ("whsec_stripe_new_secret", "whsec_stripe_old_secret"),
    SignatureScheme.RAZORPAY: ("razorpay-new-secret", "razorpay-old-secret"),
}
SIGNED_SCHEMES = list(SECRETS)
TIMED_SCHEMES = [SignatureScheme.STANDARD_WEBHOOKS, SignatureScheme.STRIPE]


def verifier(scheme: SignatureScheme, *secrets: str, now: float = NOW) -> Verifier:
    return build_verifier(scheme, secrets or SECRETS[scheme][:1], 300, clock=lambda: now)


def signed(
    scheme: SignatureScheme, body: bytes = BODY, secret: str | None = None, at: int = NOW
) -> dict[str, str]:
    return verifier(scheme, secret or SECRETS[scheme][0]).sign(body, timestamp=at, msg_id="msg_1")


@pytest.mark.parametrize("scheme", SIGNED_SCHEMES)
def test_valid_signature_is_accepted(scheme: SignatureScheme) -> None:
    verifier(scheme).verify(signed(scheme), BODY)


@pytest.mark.parametrize("scheme", SIGNED_SCHEMES)
def test_unsigned_request_is_rejected(scheme: SignatureScheme) -> None:
    with pytest.raises(SignatureInvalid, match="missing"):
        verifier(scheme).verify({}, BODY)


@pytest.mark.parametrize("scheme", SIGNED_SCHEMES)
def test_tampered_body_is_rejected(scheme: SignatureScheme) -> None:
    tampered = BODY.replace(b"150.50", b"950.50")
    with pytest.raises(SignatureInvalid, match="No signature matches"):
        verifier(scheme).verify(signed(scheme), tampered)


@pytest.mark.parametrize("scheme", SIGNED_SCHEMES)
def test_wrong_secret_is_rejected(scheme: SignatureScheme) -> None:
    attacker = signed(scheme, secret=SECRETS[scheme][1])
    with pytest.raises(SignatureInvalid, match="No signature matches"):
        verifier(scheme).verify(attacker, BODY)


@pytest.mark.parametrize("scheme", TIMED_SCHEMES)
@pytest.mark.parametrize("skew", [-301, 301, -86_400, 10**9])
def test_timestamp_outside_tolerance_is_rejected(scheme: SignatureScheme, skew: int) -> None:
    with pytest.raises(SignatureInvalid, match="more than 300 seconds"):
        verifier(scheme).verify(signed(scheme, at=NOW + skew), BODY)


@pytest.mark.parametrize("scheme", TIMED_SCHEMES)
@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamp_at_the_edge_of_tolerance_is_accepted(scheme: SignatureScheme, skew: int) -> None:
    verifier(scheme).verify(signed(scheme, at=NOW + skew), BODY)


@pytest.mark.parametrize("scheme", SIGNED_SCHEMES)
def test_old_secret_verifies_during_rotation(scheme: SignatureScheme) -> None:
    new, old = SECRETS[scheme]
    rotating = verifier(scheme, new, old)
    rotating.verify(signed(scheme, secret=old), BODY)
    rotating.verify(signed(scheme, secret=new), BODY)


def test_signature_moved_to_another_webhook_id_is_rejected() -> None:
    # The id is signed: moving a signature to another webhook-id must fail.
    headers = {**signed(SignatureScheme.STANDARD_WEBHOOKS), "webhook-id": "msg_2"}
    with pytest.raises(SignatureInvalid):
        verifier(SignatureScheme.STANDARD_WEBHOOKS).verify(headers, BODY)


@pytest.mark.parametrize(
    "header",
    ["", "t=abc,v1=00", f"v1={'0' * 64}", f"t={NOW}", f"t={NOW},t={NOW},v1=00", "garbage"],
)
def test_malformed_stripe_header_is_rejected(header: str) -> None:
    with pytest.raises(SignatureInvalid):
        verifier(SignatureScheme.STRIPE).verify({"stripe-signature": header}, BODY)


@pytest.mark.parametrize("signature", ["v1,!!!", "v2,AAAA", "v1", "v1,", "v1,é"])
def test_malformed_standard_signature_is_rejected(signature: str) -> None:
    headers = {**signed(SignatureScheme.STANDARD_WEBHOOKS), "webhook-signature": signature}
    with pytest.raises(SignatureInvalid):
        verifier(SignatureScheme.STANDARD_WEBHOOKS).verify(headers, BODY)


@pytest.mark.parametrize("scheme", SIGNED_SCHEMES)
def test_rejection_never_echoes_a_secret(scheme: SignatureScheme) -> None:
    with pytest.raises(SignatureInvalid) as caught:
        verifier(scheme).verify(signed(scheme, secret=SECRETS[scheme][1]), BODY)
    text = str(caught.value.problem())
    assert not any(secret in text for secret in SECRETS[scheme])


@pytest.mark.parametrize("bad", ["", "whsec_", "whsec_not base64!"])
def test_unusable_standard_secret_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ValueError, match="WEBHOOK_SECRET") as caught:
        build_verifier(SignatureScheme.STANDARD_WEBHOOKS, [bad])
    assert "not base64" not in str(caught.value)


def test_scheme_none_accepts_anything() -> None:
    build_verifier(SignatureScheme.NONE, []).verify({}, BODY)


# Interop: the providers' reference libraries and ours must agree both ways.


def test_standardwebhooks_library_signature_verifies_with_ours() -> None:
    now = int(time.time())
    theirs = standardwebhooks.webhooks.Webhook(STANDARD_NEW)
    signature = theirs.sign("msg_1", datetime.fromtimestamp(now, UTC), BODY.decode())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": signature}
    verifier(SignatureScheme.STANDARD_WEBHOOKS, now=now).verify(headers, BODY)


def test_our_standard_signature_verifies_with_the_library() -> None:
    now = int(time.time())
    ours = verifier(SignatureScheme.STANDARD_WEBHOOKS, now=now)
    headers = ours.sign(BODY, timestamp=now, msg_id="msg_1")
    theirs = standardwebhooks.webhooks.Webhook(STANDARD_NEW)
    assert theirs.verify(BODY, headers)["transaction_id"] == "txn_1"


def test_our_stripe_signature_verifies_with_the_stripe_library() -> None:
    secret = SECRETS[SignatureScheme.STRIPE][0]
    now = int(time.time())
    header = verifier(SignatureScheme.STRIPE, now=now).sign(BODY, timestamp=now, msg_id="")
    assert stripe.WebhookSignature.verify_header(BODY, header["stripe-signature"], secret, 300)


def test_stripe_library_signature_verifies_with_ours() -> None:
    secret = SECRETS[SignatureScheme.STRIPE][0]
    now = int(time.time())
    header = stripe.WebhookSignature.generate_signature_header(BODY.decode(), secret, now)
    verifier(SignatureScheme.STRIPE, now=now).verify({"stripe-signature": header}, BODY)


def test_stripe_rotation_header_with_two_v1_entries_verifies() -> None:
    # During a rotation Stripe sends one v1 per active secret, the unknown one first here.
    secret = SECRETS[SignatureScheme.STRIPE][0]
    stranger = stripe.WebhookSignature.generate_signature_header(BODY.decode(), "whsec_x", NOW)
    ours = stripe.WebhookSignature.generate_signature_header(BODY.decode(), secret, NOW)
    header = f"{stranger},v1={ours.split('v1=')[1]}"
    verifier(SignatureScheme.STRIPE).verify({"stripe-signature": header}, BODY)


# Properties: whatever is signed verifies, and no single changed byte does.

bodies = st.binary(min_size=1, max_size=2048)
# Printable ASCII without the comma, which separates rotated secrets.
text_secrets = st.from_regex(r"[!-+\--~]{1,64}", fullmatch=True)
key_secrets = st.binary(min_size=1, max_size=64).map(
    lambda key: "whsec_" + base64.b64encode(key).decode()
)


def _secret_for(scheme: SignatureScheme, data: st.DataObject) -> str:
    if scheme is SignatureScheme.STANDARD_WEBHOOKS:
        return data.draw(key_secrets)
    return data.draw(text_secrets)


@hypothesis_settings(database=None, deadline=None, max_examples=150)
@given(
    scheme=st.sampled_from(SIGNED_SCHEMES),
    body=bodies,
    data=st.data(),
)
def test_signed_verifies_and_any_byte_change_fails(
    scheme: SignatureScheme, body: bytes, data: st.DataObject
) -> None:
    ours = verifier(scheme, _secret_for(scheme, data))
    headers = ours.sign(body, timestamp=NOW, msg_id="msg_prop")
    ours.verify(headers, body)
    index = data.draw(st.integers(0, len(body) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = body[:index] + bytes([body[index] ^ flip]) + body[index + 1 :]
    with pytest.raises(SignatureInvalid):
        ours.verify(headers, changed)
