"""The generic webhook's 202, written without building its model, is the model's bytes."""

from __future__ import annotations

import pytest

from payhook.jsonfmt import WrittenJSON, json_response
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
    reply = WrittenJSON(body, 202)

    assert reply.body == expected.body
    assert reply.raw_headers == expected.raw_headers
    assert reply.status_code == 202
    assert Acknowledgement.model_validate_json(body) == model
