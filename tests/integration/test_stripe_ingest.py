"""Stripe's events through the real ASGI app on SQLite and PostgreSQL: stored, folded, answered."""

from __future__ import annotations

import asyncio
import html
import json
import random
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import select

from payhook.config import Settings
from payhook.db import create_engine
from payhook.operators.repository import Action, OperatorRepository
from payhook.providers import stripe_samples
from payhook.transactions.models import provider_events, transactions
from tests.support.operator_app import ADMIN, TOKEN, app_client, execute, operator_settings
from tests.support.operator_app import post as post_generic

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent.parent / "fixtures" / "stripe"
SECRET = "whsec_integration_stripe"
PI = "pi_3QbKzTLkdIwHu7ix0qa1b2Cd"
BASE = "http://payhook.test"


def stripe_settings(database_url: str, **overrides: Any) -> Settings:
    return operator_settings(database_url, **{"stripe_webhook_secret": SECRET, **overrides})


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(stripe_settings(database_url)) as c:
        yield c


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def signed(raw: bytes, secret: str = SECRET, at: int | None = None) -> dict[str, str]:
    """Headers as Stripe sends them, the signature computed by Stripe's own SDK."""
    header = stripe.WebhookSignature.generate_signature_header(
        raw.decode(), secret, int(time.time()) if at is None else at
    )
    return {"stripe-signature": header, "content-type": "application/json; charset=utf-8"}


async def send(client: httpx.AsyncClient, raw: bytes, **sign: Any) -> httpx.Response:
    return await client.post("/v1/webhooks/stripe", content=raw, headers=signed(raw, **sign))


async def verdict(client: httpx.AsyncClient, name: str) -> str:
    response = await send(client, fixture(name))
    assert response.status_code == 200, response.text
    (event,) = response.json()["events"]
    return str(event["verdict"])


async def payment(client: httpx.AsyncClient, transaction_id: str = PI) -> dict[str, Any]:
    response = await client.get(f"/v1/transactions/{transaction_id}")
    assert response.status_code == 200, response.text
    (found,) = [item for item in response.json() if item["provider"] == "stripe"]
    return dict(found)


async def stored_events(settings: Settings) -> list[dict[str, Any]]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(provider_events).order_by(provider_events.c.id))
            return [dict(row._mapping) for row in rows]
    finally:
        await engine.dispose()


async def test_the_endpoint_is_404_while_no_secret_is_set(database_url: str) -> None:
    async with app_client(operator_settings(database_url)) as client:
        response = await send(client, fixture("payment_intent.succeeded"))
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"


async def test_a_payment_from_its_events(client: httpx.AsyncClient) -> None:
    assert await verdict(client, "payment_intent.created") == "applied"
    assert await verdict(client, "payment_intent.succeeded") == "applied"
    found = await payment(client)
    assert found == {
        "transaction_id": PI,
        "source_account": "cus_RUq0tS0bOF0DbL",
        "destination_account": None,
        "amount": 20.0,
        "currency": "USD",
        "status": "PROCESSING",
        "created_at": found["created_at"],
        "processed_at": None,
        "provider": "stripe",
        "payment_state": "captured",
        "amount_refunded": 0,
        "disputed": False,
    }
    raw = (await client.get(f"/v1/transactions/{PI}")).text
    assert '"amount": 20.00' in raw  # exact, in major units, with USD's two decimals


async def test_out_of_order_refund_waits_for_its_payment(client: httpx.AsyncClient) -> None:
    assert await verdict(client, "refund.created") == "waiting"
    assert (await client.get(f"/v1/transactions/{PI}")).status_code == 404
    assert await verdict(client, "payment_intent.succeeded") == "applied"
    assert await verdict(client, "payment_intent.amount_capturable_updated") == "stale"
    assert await verdict(client, "charge.dispute.created") == "applied"
    found = await payment(client)
    assert (found["payment_state"], found["disputed"]) == ("partially_refunded", True)
    raw = (await client.get(f"/v1/transactions/{PI}")).text
    assert '"amount_refunded": 5.00' in raw


async def test_a_refund_failing_after_the_charge_counted_it_counts_no_more(
    client: httpx.AsyncClient,
) -> None:
    """A refund of 15.00 to a closed card fails an hour after the charge counted it in its
    amount_refunded: Stripe sends refund.failed and no charge event."""
    assert await verdict(client, "payment_intent.succeeded") == "applied"
    assert await verdict(client, "charge.refunded.full") == "applied"  # 5.00 and 15.00: 20.00
    found = await payment(client)
    assert (found["payment_state"], found["amount_refunded"]) == ("refunded", 20.0)

    failed = json.loads(fixture("refund.failed"))
    full = json.loads(fixture("charge.refunded.full"))
    failed["id"], failed["created"] = "evt_3QbKzTLkdIwHu7ix0LateFail", full["created"] + 3600
    failed["data"]["object"].update(
        id="re_3QbKzTLkdIwHu7ix0ClosedCd", amount=1500, created=full["created"]
    )
    response = await send(client, json.dumps(failed).encode())
    assert response.status_code == 200, response.text
    assert response.json()["events"][0]["verdict"] == "applied"
    found = await payment(client)
    assert (found["payment_state"], found["amount_refunded"]) == ("partially_refunded", 5.0)


async def test_redeliveries_and_conflicts_are_2xx_and_change_nothing(
    client: httpx.AsyncClient, database_url: str
) -> None:
    assert await verdict(client, "payment_intent.succeeded") == "applied"
    before = await payment(client)
    assert await verdict(client, "payment_intent.succeeded") == "duplicate"
    document = json.loads(fixture("payment_intent.payment_failed"))
    document["id"] = json.loads(fixture("payment_intent.succeeded"))["id"]  # same id, other body
    response = await send(client, json.dumps(document).encode())
    assert response.status_code == 200
    assert response.json()["events"][0]["verdict"] == "conflict"
    assert await payment(client) == before
    rows = await stored_events(stripe_settings(database_url))
    assert [(row["verdict"], row["deliveries"]) for row in rows] == [
        ("applied", 2),
        ("conflict", 1),
    ]
    assert rows[0]["raw_body"] == fixture("payment_intent.succeeded")


async def test_unknown_types_and_unreadable_objects_are_kept_as_ignored(
    client: httpx.AsyncClient, database_url: str
) -> None:
    assert await verdict(client, "customer.created") == "ignored"
    response = await send(client, b'{"id": "evt_odd", "type": "payment_intent.succeeded"}')
    assert response.status_code == 200
    assert response.json()["events"][0]["verdict"] == "ignored"
    rows = await stored_events(stripe_settings(database_url))
    assert [row["reason"] for row in rows] == [
        "customer.created is a type payhook does not use",
        "the event has no data.object",
    ]


@pytest.mark.parametrize(
    ("headers", "content"),
    [
        ({}, "payment_intent.succeeded"),
        ({"secret": "whsec_stranger"}, "payment_intent.succeeded"),
        ({"at": 1_000_000_000}, "payment_intent.succeeded"),
    ],
)
async def test_bad_signatures_are_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, database_url: str, headers: dict[str, Any], content: str
) -> None:
    raw = fixture(content)
    sent = signed(raw, **headers) if headers else {"content-type": "application/json"}
    response = await client.post("/v1/webhooks/stripe", content=raw, headers=sent)
    assert response.status_code == 401
    assert await stored_events(stripe_settings(database_url)) == []
    assert (await client.get(f"/v1/transactions/{PI}")).status_code == 404


async def test_a_signed_body_that_is_not_json_is_a_400(
    client: httpx.AsyncClient, database_url: str
) -> None:
    response = await send(client, b"{not json")
    assert response.status_code == 400
    assert await stored_events(stripe_settings(database_url)) == []


async def test_a_nul_or_a_lone_surrogate_in_a_verified_event_is_stored_not_a_5xx(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """Neither fits a text column; as JSON escapes they once made every redelivery a 503 on
    PostgreSQL (a 500 for a lone surrogate on either database). They now read as U+FFFD."""
    event = json.loads(fixture("payment_intent.succeeded"))
    event["id"] = "evt_nul\u0000"
    event["data"]["object"]["id"] = "pi_nul\u0000"
    event["data"]["object"]["customer"] = "cus_\ud800"
    raw = json.dumps(event).encode()  # ASCII: the three come as escapes, as Stripe's JSON would
    assert b"\\u0000" in raw
    assert b"\\ud800" in raw
    for expected in ("applied", "duplicate"):
        response = await send(client, raw)
        assert response.status_code == 200, response.text
        (receipt,) = response.json()["events"]
        assert (receipt["id"], receipt["verdict"]) == ("evt_nul\ufffd", expected)
    found = await payment(client, "pi_nul\ufffd")
    assert (found["payment_state"], found["source_account"]) == ("captured", "cus_\ufffd")
    (stored,) = await stored_events(stripe_settings(database_url))
    assert stored["event_id"] == "evt_nul\ufffd"


async def test_rotation_the_old_secret_still_verifies(database_url: str) -> None:
    settings = stripe_settings(database_url, stripe_webhook_secret=f"whsec_new,{SECRET}")
    async with app_client(settings) as client:
        assert (await send(client, fixture("payment_intent.created"))).status_code == 200


async def test_the_same_id_from_the_generic_endpoint_is_another_transaction(
    client: httpx.AsyncClient,
) -> None:
    assert (await post_generic(client, PI)).status_code == 202
    assert await verdict(client, "payment_intent.succeeded") == "applied"
    found = (await client.get(f"/v1/transactions/{PI}")).json()
    assert [(item["provider"], item["payment_state"]) for item in found] == [
        (None, None),
        ("stripe", "captured"),
    ]
    assert (await post_generic(client, PI)).json()["duplicate"] is True


async def test_a_state_change_fences_off_the_running_step_and_is_due_again(
    client: httpx.AsyncClient, database_url: str
) -> None:
    settings = stripe_settings(database_url)
    await verdict(client, "payment_intent.succeeded")
    await execute(
        settings,
        "UPDATE transactions SET status = 'PROCESSED', claim_token = 'running', attempts = 2 "
        "WHERE provider = 'stripe'",
    )
    assert await verdict(client, "charge.refunded") == "applied"
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(select(transactions))).one()
    finally:
        await engine.dispose()
    assert (row.status, row.claim_token, row.attempts) == ("PROCESSING", None, 0)
    assert row.payment_state == "partially_refunded"
    assert row.amount_refunded == Decimal("5.00")
    assert row.due_at > row.created_at  # due a delay after this event's receipt


async def test_concurrent_deliveries_from_two_processes_fold_to_one_answer(
    database_url: str,
) -> None:
    """Two apps (two pools, as two API processes) receive one payment's events at once."""
    rng = random.Random(5)
    stories = stripe_samples.stories(6, rng)
    bodies = stripe_samples.delivery_order(stories, rng)
    settings = stripe_settings(database_url)
    async with app_client(settings) as first, app_client(settings) as second:
        clients = [first, second]
        responses = await asyncio.gather(
            *(send(clients[n % 2], raw) for n, raw in enumerate(bodies))
        )
        assert {response.status_code for response in responses} == {200}
        for story in stories:
            found = await payment(first, story.payment.id)
            assert found["payment_state"] == story.expected_state, story
            assert found["disputed"] is story.disputed


# -- what operators see --------------------------------------------------------------------


async def test_operators_see_provider_state_and_every_event_with_its_verdict(
    client: httpx.AsyncClient,
) -> None:
    for name in ("refund.created", "payment_intent.succeeded", "payment_intent.succeeded"):
        await send(client, fixture(name))
    await send(client, fixture("customer.created"))
    assert (await post_generic(client, "txn_generic_1")).status_code == 202

    listed = await client.get("/v1/transactions?provider=stripe", headers=ADMIN)
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["items"]
    assert (item["transaction_id"], item["provider"], item["payment_state"]) == (
        PI,
        "stripe",
        "partially_refunded",
    )
    by_state = await client.get("/v1/transactions?payment_state=refunded", headers=ADMIN)
    assert by_state.json()["items"] == []
    generic = await client.get("/v1/transactions?provider=none", headers=ADMIN)
    assert [i["transaction_id"] for i in generic.json()["items"]] == ["txn_generic_1"]
    assert generic.json()["items"][0]["provider"] is None
    for unknown in ("strip", "Stripe", "generic"):  # a typo is a 422 naming the choices
        refused = await client.get(f"/v1/transactions?provider={unknown}", headers=ADMIN)
        assert refused.status_code == 422, refused.text
        assert "stripe, razorpay, adyen, paypal, none" in refused.text
        path = f"/v1/transactions/{PI}/timeline?provider={unknown}"
        assert (await client.get(path, headers=ADMIN)).status_code == 422

    timeline = await client.get(f"/v1/transactions/{PI}/timeline?raw=true", headers=ADMIN)
    assert timeline.status_code == 200, timeline.text
    events = [e for e in timeline.json()["events"] if e["kind"] == "provider_event"]
    assert [(e["event_type"], e["outcome"], e["deliveries"]) for e in events] == [
        ("refund.created", "applied", 1),  # waiting until its payment arrived
        ("payment_intent.succeeded", "applied", 2),
    ]
    assert events[1]["raw_body"] == fixture("payment_intent.succeeded").decode()

    metrics = (await client.get("/metrics", headers=ADMIN)).text
    assert (
        'payhook_provider_events_total{provider="stripe",type="payment_intent.succeeded",'
        'verdict="duplicate"} 1.0' in metrics
    )
    assert (
        'payhook_provider_events_total{provider="stripe",type="customer.created",'
        'verdict="ignored"} 1.0' in metrics
    )


async def test_the_console_shows_provider_state_and_events(client: httpx.AsyncClient) -> None:
    await send(client, fixture("payment_intent.succeeded"))
    await send(client, fixture("charge.dispute.created"))
    await client.post("/console/login", data={"token": TOKEN}, headers={"origin": BASE})
    page = await client.get(f"/console/transactions/{PI}?provider=stripe")
    assert page.status_code == 200, page.text
    assert 'id="payment-state">captured</span> · disputed' in page.text
    assert "stripe event charge.dispute.created" in page.text
    dashboard = await client.get("/console")
    assert f"/console/transactions/{PI}?provider=stripe" in dashboard.text
    # "Show raw bodies" keeps the provider and asks for the raw bodies: "&" written once as
    # "&amp;" (it was written twice, so the query read as provider=stripe and "amp;raw").
    [show] = re.findall(r'<a href="\?([^"]*)">Show raw bodies</a>', page.text)
    assert show == "provider=stripe&amp;raw=true&amp;offset=0"
    raw = await client.get(f"/console/transactions/{PI}?" + html.unescape(show))
    assert fixture("charge.dispute.created").decode()[:40] in html.unescape(raw.text)
    # A stale Replay (the payment is not FAILED) links back to this payment, not another
    # provider's row of the same id.
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', dashboard.text)
    assert found is not None
    action = f"/console/transactions/{PI}/retry?provider=stripe"
    stale = await client.post(action, data={"csrf": found[1]}, headers={"origin": BASE})
    assert stale.status_code == 409, stale.text
    assert f'href="/console/transactions/{PI}?provider=stripe"' in stale.text


async def test_purge_forgets_event_bodies_but_not_their_dedupe(
    client: httpx.AsyncClient, database_url: str
) -> None:
    settings = stripe_settings(database_url)
    assert await verdict(client, "payment_intent.succeeded") == "applied"
    engine = create_engine(settings)
    try:
        action = Action("purge", "test", None, datetime.now(UTC))
        purged = await OperatorRepository(engine).purge_raw_bodies(datetime.now(UTC), action)
    finally:
        await engine.dispose()
    assert purged == 1
    assert [row["raw_body"] for row in await stored_events(settings)] == [None]
    assert await verdict(client, "payment_intent.succeeded") == "duplicate"
    timeline = await client.get(f"/v1/transactions/{PI}/timeline", headers=ADMIN)
    (event,) = [e for e in timeline.json()["events"] if e["kind"] == "provider_event"]
    assert event["raw_body_purged"] is True
