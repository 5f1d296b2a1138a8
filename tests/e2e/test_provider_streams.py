"""Razorpay, Adyen and PayPal event streams through a real `payhook serve`, SQLite and PostgreSQL.

Each stream is what `payhook send --provider` plays: several payments' events (authorized,
captured, refunded in part or in full, failed, canceled, charged back, refunds that fail),
signed as the provider signs them, a quarter delivered twice, all out of order. Every
delivery must be a 2xx, and each payment must end in the state its story promises, with its
amounts exact by the provider's own exponent table; then it is processed once. Forged
deliveries are 4xx and leave nothing behind: a wrong signature, a stale PayPal transmission, a
certificate URL off PayPal's hosts, and an Adyen batch whose one bad item sinks the others.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from payhook.config import Settings, normalise_database_url
from payhook.providers import (
    adyen,
    adyen_samples,
    paypal,
    paypal_samples,
    razorpay,
    razorpay_samples,
)
from payhook.providers.base import SampleRequest
from tests.e2e.conftest import DELAY_SECONDS, server_env
from tests.support.paypal import FakePayPal, fake_paypal, new_key
from tests.support.processes import PAYHOOK, PayhookProcess
from tests.support.steps import read_calls

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

RAZORPAY_SECRET = "rzp_e2e_s3cret"
ADYEN_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
ADYEN_AUTH = ("adyen-e2e", "pa55-e2e")
PAYPAL_WEBHOOK_ID = "8PT597110X687430LKGECATA"


class Stack:
    """A running payhook with the three providers configured, and the fake PayPal host."""

    def __init__(
        self, api: PayhookProcess, fake: FakePayPal, sender: Settings, database_url: str
    ) -> None:
        self.api, self.fake, self.sender = api, fake, sender
        self.database_url = database_url


@pytest.fixture(scope="module")
def stack(e2e_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("providers")
    with fake_paypal(work) as fake:
        key_file = work / "paypal-key.pem"
        key_file.write_bytes(
            fake.signing_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        provider_env = {
            "RAZORPAY_WEBHOOK_SECRET": RAZORPAY_SECRET,
            "ADYEN_HMAC_KEY": ADYEN_KEY,
            "ADYEN_BASIC_AUTH_USERNAME": ADYEN_AUTH[0],
            "ADYEN_BASIC_AUTH_PASSWORD": ADYEN_AUTH[1],
            "PAYPAL_WEBHOOK_ID": PAYPAL_WEBHOOK_ID,
            "PAYPAL_CERT_HOSTS": fake.host,
            "PAYPAL_CERT_CA_FILE": str(fake.ca_file),
        }
        sender = Settings(
            _env_file=None,
            razorpay_webhook_secret=RAZORPAY_SECRET,
            adyen_hmac_key=ADYEN_KEY,
            adyen_basic_auth_username=ADYEN_AUTH[0],
            adyen_basic_auth_password=ADYEN_AUTH[1],
            paypal_webhook_id=PAYPAL_WEBHOOK_ID,
            paypal_cert_hosts=fake.host,
            paypal_cert_ca_file=fake.ca_file,
            paypal_send_key_file=key_file,
            paypal_send_cert_url=fake.cert_url,
        )
        api = PayhookProcess.serve({**server_env(e2e_database_url, work), **provider_env}, work)
        api.start()
        try:
            yield Stack(api, fake, sender, e2e_database_url)
        finally:
            api.stop()


@pytest.fixture
async def client(stack: Stack) -> Any:
    async with httpx.AsyncClient(base_url=stack.api.base_url, timeout=15) as http:
        yield http


async def deliver(
    client: httpx.AsyncClient, path: str, requests: list[SampleRequest]
) -> list[httpx.Response]:
    """Post every request, eight at a time, in the given order."""
    limit = asyncio.Semaphore(8)

    async def one(request: SampleRequest) -> httpx.Response:
        async with limit:
            return await client.post(path, content=request.body, headers=request.headers)

    return list(await asyncio.gather(*(one(r) for r in requests)))


async def view(client: httpx.AsyncClient, provider: str, transaction_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/transactions/{transaction_id}")
    assert response.status_code == 200, (transaction_id, response.text)
    matches = [v for v in response.json(parse_float=Decimal) if v["provider"] == provider]
    assert len(matches) == 1, response.text
    return matches[0]  # type: ignore[no-any-return]


async def wait_processed(
    client: httpx.AsyncClient, provider: str, ids: list[str]
) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + DELAY_SECONDS + 30
    while True:
        views = {i: await view(client, provider, i) for i in ids}
        if all(v["status"] == "PROCESSED" for v in views.values()):
            return views
        assert time.monotonic() < deadline, [
            i for i, v in views.items() if v["status"] != "PROCESSED"
        ]
        await asyncio.sleep(0.2)


# The decimals each provider gives the currencies its sample stories use (razorpay_samples:
# INR; adyen_samples: EUR, USD, ISK, CLP; paypal_samples: USD, EUR, JPY, HUF), as
# docs/PROVIDERS.md's currency table says: written here, not read from the code that stores them.
EXPONENTS = {
    "razorpay": {"INR": 2},
    "adyen": {"EUR": 2, "USD": 2, "ISK": 2, "CLP": 2},
    "paypal": {"USD": 2, "EUR": 2, "JPY": 0, "HUF": 0},
}


def major(provider: str, minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-EXPONENTS[provider][currency])


def expected(
    provider: str, state: str, amount: int, refunded: int, currency: str
) -> dict[str, Any]:
    return {
        "provider": provider,
        "payment_state": state,
        "amount": major(provider, amount, currency),
        "amount_refunded": major(provider, refunded, currency),
        "currency": currency,
    }


def seen(views: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    return {key: views[key] for key in keys}


async def assert_unknown(client: httpx.AsyncClient, transaction_id: str) -> None:
    response = await client.get(f"/v1/transactions/{transaction_id}")
    assert response.status_code == 404, response.text


async def kept_events(
    database_url: str, provider: str, ids: set[str]
) -> dict[str, tuple[int, str]]:
    """Each stored event of `provider` among `ids`: how often it arrived and its verdict."""
    engine = create_async_engine(normalise_database_url(database_url))
    query = text(
        "SELECT event_id, deliveries, verdict FROM provider_events WHERE provider = :provider"
    )
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(query, {"provider": provider})).all()
    finally:
        await engine.dispose()
    return {row.event_id: (row.deliveries, row.verdict) for row in rows if row.event_id in ids}


def sent_events(provider: Any, requests: list[SampleRequest]) -> Counter[str]:
    """How many times each event id was posted."""
    return Counter(
        event.event_id
        for request in requests
        for event in provider.parse(request.headers, request.body)
    )


async def assert_every_event_kept(
    stack: Stack, provider: Any, requests: list[SampleRequest]
) -> None:
    sent = sent_events(provider, requests)
    kept = await kept_events(stack.database_url, provider.name, set(sent))
    assert {event_id: n for event_id, (n, _) in kept.items()} == dict(sent)
    assert {verdict for _, verdict in kept.values()} <= {"applied", "stale", "waiting"}


def processed_once(calls_file: Path, ids: list[str]) -> None:
    counts = Counter(key for key, _ in read_calls(calls_file))
    # A state change within the delay is processed once; a later change once more at most
    # (a refund landing after the capture was processed). Never zero, never a storm.
    assert all(1 <= counts[i] <= 3 for i in ids), {i: counts[i] for i in ids}


async def test_a_razorpay_stream_ends_where_each_payment_story_says(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    seed = random.randrange(1 << 30)
    stories = razorpay_samples.stories(20, random.Random(seed))
    requests = razorpay.PROVIDER.sample_requests(stack.sender, 20, random.Random(seed))

    responses = await deliver(client, "/v1/webhooks/razorpay", requests)

    assert {r.status_code for r in responses} == {200}, [r.text for r in responses][:3]
    views = await wait_processed(client, "razorpay", [s.payment.id for s in stories])
    for story in stories:
        p = story.payment
        want = expected("razorpay", story.state, p.amount, story.refunded, p.currency)
        assert seen(views[p.id], list(want)) == want, (seed, p.id)
        assert views[p.id]["disputed"] is False
    processed_once(Path(stack.api.env["PAYHOOK_TEST_CALLS"]), [s.payment.id for s in stories])
    await assert_every_event_kept(stack, razorpay.PROVIDER, requests)


async def test_a_razorpay_delivery_with_a_wrong_signature_is_refused_and_not_stored(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    [story] = razorpay_samples.stories(1, random.Random(99))
    delivery = story.deliveries[-1]
    forged = razorpay.Verifier(["not-the-secret"]).sign(delivery.body)

    response = await client.post(
        "/v1/webhooks/razorpay",
        content=delivery.body,
        headers={
            **forged,
            "x-razorpay-event-id": delivery.event_id,
            "content-type": "application/json",
        },
    )

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    await assert_unknown(client, story.payment.id)


async def test_an_adyen_stream_in_batches_ends_where_each_payment_story_says(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    seed = random.randrange(1 << 30)
    stories = adyen_samples.stories(24, random.Random(seed))
    requests = adyen.PROVIDER.sample_requests(stack.sender, 24, random.Random(seed))
    assert max(len(json.loads(r.body)["notificationItems"]) for r in requests) > 1

    responses = await deliver(client, "/v1/webhooks/adyen", requests)

    assert {(r.status_code, r.text) for r in responses} == {(200, "[accepted]")}
    views = await wait_processed(client, "adyen", [s.psp for s in stories])
    for story in stories:
        want = expected("adyen", story.state, story.amount, story.refunded, story.currency)
        assert seen(views[story.psp], list(want)) == want, (seed, story.psp)
        assert views[story.psp]["disputed"] is story.disputed
    processed_once(Path(stack.api.env["PAYHOOK_TEST_CALLS"]), [s.psp for s in stories])
    await assert_every_event_kept(stack, adyen.PROVIDER, requests)


async def test_an_adyen_batch_with_one_bad_hmac_is_refused_whole(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    stories = adyen_samples.stories(3, random.Random(7))
    items = [story.items[0] for story in stories]
    body = json.loads(adyen.notification_body(adyen.Verifier([ADYEN_KEY]), items))
    body["notificationItems"][1]["NotificationRequestItem"]["amount"]["value"] += 1
    headers = {
        "content-type": "application/json",
        "authorization": "Basic " + base64.b64encode(":".join(ADYEN_AUTH).encode()).decode(),
    }

    response = await client.post("/v1/webhooks/adyen", content=json.dumps(body), headers=headers)

    assert response.status_code == 401
    assert "item 1" in response.json()["detail"]
    for story in stories:
        await assert_unknown(client, story.psp)


async def test_adyen_without_its_basic_auth_is_refused(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    [story] = adyen_samples.stories(1, random.Random(8))
    body = adyen.notification_body(adyen.Verifier([ADYEN_KEY]), story.items[:1])

    response = await client.post(
        "/v1/webhooks/adyen", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 401
    await assert_unknown(client, story.psp)


async def test_a_paypal_stream_ends_where_each_capture_story_says(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    seed = random.randrange(1 << 30)
    stories = paypal_samples.stories(15, random.Random(seed))
    requests = paypal.PROVIDER.sample_requests(stack.sender, 15, random.Random(seed))

    responses = await deliver(client, "/v1/webhooks/paypal", requests)

    assert {r.status_code for r in responses} == {200}, [r.text for r in responses][:3]
    views = await wait_processed(client, "paypal", [s.capture_id for s in stories])
    for story in stories:
        want = expected("paypal", story.state, story.amount_minor, story.refunded, story.currency)
        assert seen(views[story.capture_id], list(want)) == want, (seed, story.capture_id)
    processed_once(Path(stack.api.env["PAYHOOK_TEST_CALLS"]), [s.capture_id for s in stories])
    await assert_every_event_kept(stack, paypal.PROVIDER, requests)


@pytest.mark.parametrize("forgery", ["stale", "early", "off_host", "other_key", "other_webhook"])
async def test_a_forged_paypal_transmission_is_refused_and_not_stored(
    client: httpx.AsyncClient, stack: Stack, forgery: str
) -> None:
    [story] = paypal_samples.stories(1, random.Random(f"forged {forgery}"))
    body = story.events[-1]
    fake, sent_at, cert_url, webhook_id = stack.fake, None, None, PAYPAL_WEBHOOK_ID
    if forgery in ("stale", "early"):
        offset = -301 if forgery == "stale" else 301
        sent_at = paypal.now_rfc3339(lambda: time.time() + offset)
    elif forgery == "off_host":
        cert_url = "https://api.paypal.com.attacker.example/v1/notifications/certs/CERT-1"
    elif forgery == "other_webhook":
        webhook_id = "OTHERWEBHOOK1"
    key = new_key() if forgery == "other_key" else None
    headers = fake.sign(body, webhook_id, sent_at=sent_at, cert_url=cert_url, key=key)

    response = await client.post("/v1/webhooks/paypal", content=body, headers=headers)

    assert response.status_code == 401, response.text
    await assert_unknown(client, story.capture_id)


async def test_paypals_certificate_host_failing_is_a_503_and_the_retry_lands(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    [story] = paypal_samples.stories(1, random.Random(4242))
    body = story.events[-1]
    stack.fake.serve("/v1/notifications/certs/CERT-down", b"maintenance", 503)
    down = f"https://{stack.fake.host}/v1/notifications/certs/CERT-down"

    refused = await client.post(
        "/v1/webhooks/paypal",
        content=body,
        headers=stack.fake.sign(body, PAYPAL_WEBHOOK_ID, cert_url=down),
    )

    assert refused.status_code == 503
    assert refused.headers["retry-after"]
    await assert_unknown(client, story.capture_id)
    retried = await client.post(
        "/v1/webhooks/paypal", content=body, headers=stack.fake.sign(body, PAYPAL_WEBHOOK_ID)
    )
    assert retried.status_code == 200, retried.text
    assert (await view(client, "paypal", story.capture_id))["payment_state"] == story.state


@pytest.mark.parametrize("provider", ["razorpay", "adyen", "paypal"])
def test_payhook_send_plays_each_provider_and_every_request_is_acknowledged(
    stack: Stack, provider: str
) -> None:
    sender = stack.sender
    assert sender.paypal_send_key_file is not None
    env = {
        **os.environ,
        "RAZORPAY_WEBHOOK_SECRET": RAZORPAY_SECRET,
        "ADYEN_HMAC_KEY": ADYEN_KEY,
        "ADYEN_BASIC_AUTH_USERNAME": ADYEN_AUTH[0],
        "ADYEN_BASIC_AUTH_PASSWORD": ADYEN_AUTH[1],
        "PAYPAL_WEBHOOK_ID": PAYPAL_WEBHOOK_ID,
        "PAYPAL_CERT_HOSTS": stack.fake.host,
        "PAYPAL_SEND_KEY_FILE": str(sender.paypal_send_key_file),
        "PAYPAL_SEND_CERT_URL": stack.fake.cert_url,
    }
    command = [str(PAYHOOK), "send", "--url", stack.api.base_url, "--provider", provider]
    done = subprocess.run(
        [*command, "--count", "6", "--seed", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "all acknowledged" in done.stdout


def test_payhook_send_as_paypal_without_a_key_says_what_is_missing(stack: Stack) -> None:
    env = {**os.environ, "PAYPAL_WEBHOOK_ID": PAYPAL_WEBHOOK_ID}
    env.pop("PAYPAL_SEND_KEY_FILE", None)
    done = subprocess.run(
        [str(PAYHOOK), "send", "--url", stack.api.base_url, "--provider", "paypal"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2, done.stdout + done.stderr
    assert "PAYPAL_SEND_KEY_FILE" in done.stderr
    assert "Traceback" not in done.stderr
