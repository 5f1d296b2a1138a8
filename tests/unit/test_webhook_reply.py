"""The webhooks' answers, written without starlette's header building, are the same bytes."""

from __future__ import annotations

import pytest
from starlette.responses import Response

from payhook.jsonfmt import WrittenBody, json_response
from payhook.providers import adyen, stripe
from payhook.providers.base import Provider
from payhook.providers.model import EventReceipt, EventVerdict
from payhook.transactions.models import TransactionStatus
from payhook.transactions.schemas import Acknowledgement
from payhook.webhooks.router import acknowledgement

IDS = ["txn_abc123def456", 'a"quote\\and-backslash', "café-ünï", "emoji-\U0001f600", "l\u2028s"]


@pytest.mark.parametrize("transaction_id", IDS)
@pytest.mark.parametrize("status", list(TransactionStatus))
@pytest.mark.parametrize("duplicate", [False, True])
def test_the_acknowledgement_has_the_models_bytes_and_headers(
    transaction_id: str, status: TransactionStatus, duplicate: bool
) -> None:
    model = Acknowledgement(transaction_id=transaction_id, status=status, duplicate=duplicate)
    expected = json_response(model, 202)

    body = acknowledgement(transaction_id, status, duplicate)
    reply = WrittenBody(body, 202)

    assert reply.body == expected.body
    assert reply.raw_headers == expected.raw_headers
    assert reply.status_code == 202
    assert Acknowledgement.model_validate_json(body) == model


@pytest.mark.parametrize("provider", [stripe.PROVIDER, adyen.PROVIDER], ids=["json", "adyen"])
def test_a_providers_answer_has_the_headers_starlette_wrote(provider: Provider) -> None:
    receipts = [EventReceipt("evt_1", "payment_intent.succeeded", "pi_1", EventVerdict.APPLIED)]
    ack = provider.acknowledge(receipts)
    # Adyen's media type was "text/plain", to which starlette adds the charset.
    media_type = "text/plain" if provider is adyen.PROVIDER else ack.media_type
    expected = Response(ack.body, status_code=ack.status_code, media_type=media_type)

    reply = WrittenBody(ack.body, ack.status_code, ack.media_type)

    assert (reply.status_code, reply.body) == (expected.status_code, expected.body)
    assert reply.raw_headers == expected.raw_headers
