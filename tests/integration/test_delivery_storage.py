"""One transaction id cannot grow storage without bound (issue 13, finding 3): each distinct
body is stored once per id with a count of its repeats, at most MAX_BODIES_PER_TRANSACTION
bodies are kept per id, and timelines are paged."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import razorpay
from sqlalchemy import text

from payhook.db import create_engine
from payhook.transactions.repository import MAX_BODIES_PER_TRANSACTION
from tests.support.operator_app import ADMIN, app_client, operator_settings

pytestmark = pytest.mark.anyio
SECRET = "razorpay-storage-secret"
JSON = {"content-type": "application/json"}


def razorpay_body(transaction_id: str, amount: str = "150.50", padding: int = 0) -> bytes:
    return (
        f'{{"transaction_id": "{transaction_id}", "source_account": "acc_src", '
        f'"destination_account": "acc_dst", "amount": {amount}, "currency": "INR", '
        f'"notes": "{"x" * padding}"}}'
    ).encode()


def razorpay_headers(raw: bytes) -> dict[str, str]:
    signature = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    # Razorpay's own SDK accepts it: this is the request a Razorpay sender makes.
    razorpay.Utility(None).verify_webhook_signature(raw.decode(), signature, SECRET)
    return {**JSON, "X-Razorpay-Signature": signature}


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    settings = operator_settings(
        database_url, webhook_signature_scheme="razorpay", webhook_secret=SECRET
    )
    async with app_client(settings) as c:
        yield c, settings.database_url


async def stored(database_url: str, transaction_id: str) -> dict[str, Any]:
    engine = create_engine(operator_settings(database_url))
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT count(*) AS rows, coalesce(sum(repeats), 0) AS deliveries, "
                        "coalesce(sum(length(raw_body)), 0) AS body_bytes "
                        "FROM deliveries WHERE transaction_id = :id"
                    ),
                    {"id": transaction_id},
                )
            ).one()
        return dict(row._mapping)
    finally:
        await engine.dispose()


async def test_a_replayed_razorpay_request_is_stored_once_and_counted(
    client: tuple[httpx.AsyncClient, str],
) -> None:
    http, url = client
    raw = razorpay_body("rzp_replayed", padding=30_000)
    headers = razorpay_headers(raw)
    answers = [
        await http.post("/v1/webhooks/transactions", content=raw, headers=headers)
        for _ in range(120)
    ]
    assert [a.status_code for a in answers] == [202] * 120
    assert [a.json()["duplicate"] for a in answers] == [False] + [True] * 119
    found = await stored(url, "rzp_replayed")
    assert found == {"rows": 1, "deliveries": 120, "body_bytes": len(raw)}
    timeline = await http.get("/v1/transactions/rzp_replayed/timeline", headers=ADMIN)
    (delivery,) = [e for e in timeline.json()["events"] if e["kind"] == "delivery"]
    assert delivery["outcome"] == "accepted"
    assert delivery["repeats"] == 120
    assert delivery["last_received_at"] >= delivery["at"]


async def test_conflicting_bodies_for_one_id_are_kept_up_to_a_bound(
    client: tuple[httpx.AsyncClient, str],
) -> None:
    http, url = client
    first = razorpay_body("rzp_flooded")
    assert (
        await http.post("/v1/webhooks/transactions", content=first, headers=razorpay_headers(first))
    ).status_code == 202
    sent = 1
    for n in range(1, 80):
        raw = razorpay_body("rzp_flooded", amount=str(n), padding=20_000)
        answer = await http.post(
            "/v1/webhooks/transactions", content=raw, headers=razorpay_headers(raw)
        )
        assert answer.status_code == 409
        sent += 1
    found = await stored(url, "rzp_flooded")
    assert found["deliveries"] == sent  # every delivery counted
    assert found["rows"] <= MAX_BODIES_PER_TRANSACTION + 2  # the bodies kept, and the overflow
    assert found["body_bytes"] <= MAX_BODIES_PER_TRANSACTION * len(raw)
    timeline = await http.get("/v1/transactions/rzp_flooded/timeline", headers=ADMIN)
    events = [e for e in timeline.json()["events"] if e["kind"] == "delivery"]
    assert sum(e["repeats"] for e in events) == sent
    assert any(e["raw_body_purged"] for e in events)  # the overflow keeps counts, no bodies


async def test_a_timeline_is_paged(client: tuple[httpx.AsyncClient, str]) -> None:
    http, _ = client
    for n in range(1, 13):
        raw = razorpay_body("rzp_paged", amount=str(n))
        await http.post("/v1/webhooks/transactions", content=raw, headers=razorpay_headers(raw))
    seen: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        params = {"raw": "true", "limit": "5", "offset": str(offset)}
        page = await http.get("/v1/transactions/rzp_paged/timeline", params=params, headers=ADMIN)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["events"]) <= 5
        seen += body["events"]
        offset = body["next_offset"]
    assert len(seen) == 12
    amounts = [json.loads(e["raw_body"])["amount"] for e in seen]
    assert amounts == list(range(1, 13))
