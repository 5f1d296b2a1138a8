"""A forwarded delivery's body is GET's view of the transaction, written from the claimed record.

The body is built without the response model (for speed); these tests pin that it is exactly
the model's JSON, so the two cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from payhook.forwarding.step import EVENT_TYPE, delivery_body
from payhook.jsonfmt import dumps
from payhook.transactions.models import GENERIC
from payhook.transactions.records import ClaimedTransaction
from payhook.transactions.schemas import TransactionOut

CREATED = datetime(2026, 1, 15, 10, 30, 0, tzinfo=UTC)  # whole second: microseconds still written
GENERIC_ONE = ClaimedTransaction(
    transaction_id="txn-1",
    source_account="acc_src",
    destination_account="acc_dst",
    amount=Decimal("0.000000000000000001"),
    currency="ETH",
    created_at=CREATED,
    due_at=CREATED,
    attempt=3,
    claim_token="token",
    claimed_at=CREATED,
)
STRIPE_ONE = replace(
    GENERIC_ONE,
    transaction_id="pi_3MtwBwLkdIwHu7ix28a3tqPa",
    source_account=None,
    destination_account=None,
    amount=Decimal("150.50"),
    currency="USD",
    provider="stripe",
    payment_state="refunded",
    processed_at=datetime(2026, 1, 15, 10, 30, 1, 250, tzinfo=UTC),
    amount_refunded=Decimal("20.00"),
    disputed=True,
    attempt=1,
)


def through_the_model(claimed: ClaimedTransaction) -> Any:
    """What GET would write for the claimed row (PROCESSING, as every claimed row is)."""
    row = {name: getattr(claimed, name, None) for name in TransactionOut.model_fields}
    row |= {"status": "PROCESSING", "provider": claimed.provider or GENERIC}
    text = dumps(TransactionOut.model_validate(row).model_dump())
    return json.loads(text, parse_float=Decimal)


@pytest.mark.parametrize("claimed", [GENERIC_ONE, STRIPE_ONE], ids=["generic", "stripe"])
def test_the_data_is_the_transaction_as_get_writes_it(claimed: ClaimedTransaction) -> None:
    body = json.loads(delivery_body(claimed), parse_float=Decimal)
    assert body["type"] == EVENT_TYPE
    assert body["attempt"] == claimed.attempt
    assert body["data"] == through_the_model(claimed)
    assert list(body["data"]) == list(TransactionOut.model_fields)  # GET's order


def test_amounts_are_exact_and_times_in_utc_with_microseconds() -> None:
    body = delivery_body(STRIPE_ONE)
    assert b'"amount":150.50,' in body  # the trailing zero kept, not 150.5
    assert b'"amount_refunded":20.00,' in body
    assert b'"processed_at":"2026-01-15T10:30:01.000250Z"' in body
    tiny = delivery_body(GENERIC_ONE)
    assert b'"amount":0.000000000000000001,' in tiny  # not 1E-18
    assert b'"created_at":"2026-01-15T10:30:00.000000Z"' in tiny
    assert b'"provider":null' in tiny  # the generic endpoint's
    stamp = json.loads(tiny)["timestamp"]
    assert stamp.endswith("Z")
    assert datetime.fromisoformat(stamp) >= CREATED
