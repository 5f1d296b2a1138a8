"""PayPal: a real PayPal signature verifies, a certificate comes only from PayPal's hosts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from payhook.errors import InvalidRequest, ServiceUnavailable, SignatureInvalid
from payhook.providers import paypal as provider
from payhook.providers.model import Observation, PaymentState
from tests.support.paypal import CERT_PATH, FakePayPal, fake_paypal, new_key

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parents[1] / "fixtures" / "paypal"
WEBHOOK_ID = "8PT597110X687430LKGECATA"


def sample(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


class Served:
    """PayPal's certificate host for the recorded delivery (the one thing outside this machine)."""

    def __init__(self) -> None:
        self.pem = (FIXTURES / "messageverificationcerts.pem").read_bytes()
        self.fetched: list[str] = []

    async def __call__(self, url: str) -> bytes:
        self.fetched.append(url)
        return self.pem


def recorded_delivery() -> tuple[dict[str, str], bytes, float]:
    headers = json.loads((FIXTURES / "payment_capture_refunded.headers.json").read_text())
    sent = datetime.fromisoformat(headers["paypal-transmission-time"]).timestamp()
    return headers, sample("payment_capture_refunded"), sent


def recorded_verifier(webhook_id: str, now: float, served: Served) -> provider.Verifier:
    cache = provider.CertificateCache(fetch=served, clock=lambda: now)
    return provider.Verifier([webhook_id], cache, tolerance=300, clock=lambda: now)


async def test_a_signature_made_by_paypal_itself_verifies() -> None:
    headers, body, sent = recorded_delivery()
    served = Served()

    # PayPal's simulator signs with the webhook id "WEBHOOK_ID" (PayPal's webhook docs).
    await recorded_verifier("WEBHOOK_ID", sent + 60, served).verify(headers, body)

    assert served.fetched == [headers["paypal-cert-url"]]


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ("webhook_id", "does not match"),
        ("body", "does not match"),
        ("late", "more than 300 seconds"),
        ("early", "more than 300 seconds"),
        ("algo", "PAYPAL-AUTH-ALGO"),
        ("signature", "not base64"),
    ],
)
async def test_paypals_signature_fails_closed_on_any_change(change: str, detail: str) -> None:
    headers, body, sent = recorded_delivery()
    webhook_id, now = "WEBHOOK_ID", sent
    if change == "webhook_id":
        webhook_id = WEBHOOK_ID
    elif change == "body":
        body = body.replace(b'"0.99"', b'"9.99"', 1)
    elif change in ("late", "early"):
        now = sent + 301 if change == "late" else sent - 301
    elif change == "algo":
        headers["paypal-auth-algo"] = "SHA1withRSA"
    else:
        headers["paypal-transmission-sig"] = "%%%"
    with pytest.raises(SignatureInvalid, match=detail):
        await recorded_verifier(webhook_id, now, Served()).verify(headers, body)


@pytest.mark.parametrize(
    "header",
    [
        "paypal-transmission-id",
        "paypal-transmission-time",
        "paypal-transmission-sig",
        "paypal-cert-url",
        "paypal-auth-algo",
    ],
)
async def test_each_missing_header_is_refused_before_any_fetch(header: str) -> None:
    headers, body, sent = recorded_delivery()
    del headers[header]
    served = Served()
    with pytest.raises(SignatureInvalid, match="missing"):
        await recorded_verifier("WEBHOOK_ID", sent, served).verify(headers, body)
    assert served.fetched == []


@pytest.mark.parametrize(
    "url",
    [
        "http://api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com.evil.example/v1/notifications/certs/CERT-1",
        "https://evil.example/api.paypal.com/CERT-1",
        "https://user:pw@api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com:8443/v1/notifications/certs/CERT-1",
        "https://[::1/",
        "https://api.paypal.com/v1/oauth2/token",  # a PayPal host, not its certificates
        "https://api.paypal.com/v1/notifications/certs/CERT-1?x=1",
    ],
)
async def test_a_certificate_url_off_paypals_hosts_is_never_fetched(url: str) -> None:
    headers, body, sent = recorded_delivery()
    headers["paypal-cert-url"] = url
    served = Served()
    with pytest.raises(SignatureInvalid, match="PAYPAL-CERT-URL"):
        await recorded_verifier("WEBHOOK_ID", sent, served).verify(headers, body)
    assert served.fetched == []


async def test_a_cached_certificate_is_answered_while_another_url_is_being_fetched() -> None:
    """A sender naming new certificate URLs (they are fetched before any signature can be
    checked) holds up no delivery whose certificate is known; requests for one URL share its
    one fetch."""
    headers, _, sent = recorded_delivery()
    known = headers["paypal-cert-url"]
    slow = "https://api.paypal.com/v1/notifications/certs/CERT-slow"
    served, release = Served(), asyncio.Event()

    async def fetch(url: str) -> bytes:
        if url == slow:
            await release.wait()
        return await served(url)

    cache = provider.CertificateCache(fetch=fetch, clock=lambda: sent)
    await cache.public_key(known)
    waiting = [asyncio.ensure_future(cache.public_key(slow)) for _ in range(3)]
    await asyncio.sleep(0)
    await asyncio.wait_for(cache.public_key(known), timeout=10)  # not behind the slow fetch
    assert not any(task.done() for task in waiting)
    release.set()
    await asyncio.gather(*waiting)
    assert served.fetched == [known, slow]


async def test_an_expired_certificate_is_refused() -> None:
    headers, body, _ = recorded_delivery()
    after_expiry = datetime.fromisoformat("2025-03-08T00:00:00+00:00").timestamp()
    with pytest.raises(SignatureInvalid, match="not a valid RSA one"):
        await recorded_verifier("WEBHOOK_ID", after_expiry, Served()).verify(
            {**headers, "paypal-transmission-time": "2025-03-08T00:00:00Z"}, body
        )


@pytest.fixture
def paypal_host(tmp_path: Path) -> Iterator[FakePayPal]:
    with fake_paypal(tmp_path) as fake:
        yield fake


def https_verifier(fake: FakePayPal, webhook_ids: list[str]) -> provider.Verifier:
    fetch = provider.fetch_over_https(verify=fake.client_context(), timeout=5.0)
    cache = provider.CertificateCache(hosts=[fake.host], fetch=fetch)
    return provider.Verifier(webhook_ids, cache, tolerance=300)


async def test_a_key_of_the_tests_own_served_over_https_verifies_and_is_fetched_once(
    paypal_host: FakePayPal,
) -> None:
    verifier = https_verifier(paypal_host, ["OLDWEBHOOK", WEBHOOK_ID])
    for name in ("payment_capture_completed", "payment_capture_refunded"):
        body = sample(name)
        await verifier.verify(paypal_host.sign(body, WEBHOOK_ID), body)

    assert paypal_host.fetches == [CERT_PATH]


async def test_another_key_than_the_certificates_is_refused(paypal_host: FakePayPal) -> None:
    body = sample("payment_capture_completed")
    headers = paypal_host.sign(body, WEBHOOK_ID, key=new_key())
    with pytest.raises(SignatureInvalid, match="does not match"):
        await https_verifier(paypal_host, [WEBHOOK_ID]).verify(headers, body)


@pytest.mark.parametrize(
    ("status", "body", "headers", "error"),
    [
        (404, b"gone", {}, SignatureInvalid),
        (302, b"", {"Location": "https://evil.example/cert.pem"}, SignatureInvalid),
        (200, b"not a certificate", {}, SignatureInvalid),
        (200, b"x" * (70 * 1024), {}, SignatureInvalid),
        (503, b"down", {}, ServiceUnavailable),
    ],
)
async def test_what_the_certificate_host_answers_decides_between_4xx_and_retry(
    paypal_host: FakePayPal,
    status: int,
    body: bytes,
    headers: dict[str, str],
    error: type[Exception],
) -> None:
    other = "/v1/notifications/certs/other"
    paypal_host.serve(other, body, status, **headers)
    raw = sample("payment_capture_completed")
    signed = paypal_host.sign(raw, WEBHOOK_ID, cert_url=f"https://{paypal_host.host}{other}")
    with pytest.raises(error):
        await https_verifier(paypal_host, [WEBHOOK_ID]).verify(signed, raw)
    assert paypal_host.fetches == [other]  # one request, no redirect followed


async def test_an_unreachable_certificate_host_is_a_retryable_outage(tmp_path: Path) -> None:
    with fake_paypal(tmp_path) as fake:
        verifier = https_verifier(fake, [WEBHOOK_ID])
        body = sample("payment_capture_completed")
        headers = fake.sign(body, WEBHOOK_ID)
    with pytest.raises(ServiceUnavailable):
        await verifier.verify(headers, body)


def test_a_webhook_id_is_required() -> None:
    with pytest.raises(ValueError, match="PAYPAL_WEBHOOK_ID"):
        provider.Verifier(["", ""], provider.CertificateCache(), tolerance=300)


@pytest.mark.parametrize(
    ("name", "transaction", "observation"),
    [
        (
            "payment_capture_completed",
            "12A34567BC123456S",
            Observation(state=PaymentState.CAPTURED, amount_minor=3000, currency="USD"),
        ),
        (
            "payment_capture_pending",
            "02T21492PP3782704",
            Observation(state=PaymentState.PENDING, amount_minor=251, currency="USD"),
        ),
        (
            "payment_capture_declined",
            "7U133281TB3277326",
            Observation(state=PaymentState.FAILED, amount_minor=18510, currency="USD"),
        ),
        (
            "payment_capture_refunded",
            "0JF852973C016714D",
            Observation(
                currency="USD",
                refund_id="1Y107995YT783435V",
                refund_minor=99,
                refund_created_at=1534360409,  # the refund's create_time, 2018-08-15T12:13:29-07:00
                refunded_total_minor=198,
            ),
        ),
        (
            "payment_capture_reversed",
            "4L335234718889942",
            Observation(
                currency="USD",
                refund_id="09E71677NS257044M",
                refund_minor=251,
                refund_created_at=1534368610,  # 2018-08-15T14:30:10-07:00
                refunded_total_minor=251,
            ),
        ),
    ],
)
def test_paypals_samples_map_to_the_capture_and_what_they_say(
    name: str, transaction: str, observation: Observation
) -> None:
    body = sample(name)
    published = json.loads(body)

    [event] = provider.parse({}, body)

    assert (event.provider, event.event_id) == ("paypal", published["id"])
    assert event.event_type == published["event_type"]
    assert event.transaction_id == transaction
    assert event.observation == observation
    assert event.occurred_at == datetime.fromisoformat(published["create_time"])
    assert event.raw == body


@pytest.mark.parametrize(
    ("currency", "value", "minor"),
    [
        ("USD", "21.12", 2112),
        ("JPY", "1000", 1000),
        ("HUF", "1500", 1500),
        ("TWD", "30", 30),
        ("KWD", "1.250", 1250),
        ("EUR", "0.10", 10),
    ],
)
def test_decimal_string_amounts_are_kept_exactly_by_paypals_table(
    currency: str, value: str, minor: int
) -> None:
    body = json.loads(sample("payment_capture_completed"))
    body["resource"]["amount"] = {"currency_code": currency, "value": value}

    [event] = provider.parse({}, json.dumps(body).encode())

    assert event.observation is not None
    assert (event.observation.amount_minor, event.observation.currency) == (minor, currency)


@pytest.mark.parametrize(
    ("currency", "value"),
    [
        ("JPY", "10.5"),
        ("USD", "21.125"),
        ("USD", "-1.00"),
        ("USD", "NaN"),
        ("USD", "1e400"),
        ("USD", " 1.00"),
        ("XXQ", "1.00"),
        ("USD", 21.12),
    ],
)
def test_an_amount_payhook_cannot_keep_exactly_is_ignored_with_a_reason(
    currency: str, value: object
) -> None:
    body = json.loads(sample("payment_capture_completed"))
    body["resource"]["amount"] = {"currency_code": currency, "value": value}

    [event] = provider.parse({}, json.dumps(body).encode())

    assert (event.transaction_id, event.observation) == (None, None)
    assert event.ignored_reason


def test_disputes_attach_to_the_disputed_capture() -> None:
    body = {
        "id": "WH-4M0448861G563140B-9EX36365822141321",
        "event_type": "CUSTOMER.DISPUTE.CREATED",
        "create_time": "2018-06-21T13:36:33.000Z",
        "resource": {
            "dispute_id": "PP-000-042-663-135",
            "disputed_transactions": [{"seller_transaction_id": "12A34567BC123456S"}],
        },
    }

    [event] = provider.parse({}, json.dumps(body).encode())

    assert event.transaction_id == "12A34567BC123456S"
    assert event.observation == Observation(dispute_opened=True)


def test_unused_types_are_ignored_and_non_json_is_a_client_error() -> None:
    [event] = provider.parse({}, b'{"id": "WH-1", "event_type": "CHECKOUT.ORDER.APPROVED"}')
    assert event.ignored_reason == "payhook does not use CHECKOUT.ORDER.APPROVED events"
    with pytest.raises(InvalidRequest):
        provider.parse({}, b"<xml/>")
