"""The webhook body tests and benchmarks post when the content itself does not matter."""

from __future__ import annotations


def transaction_body(transaction_id: str, **overrides: object) -> dict[str, object]:
    """A valid transaction with this id; `overrides` replace fields."""
    return {
        "transaction_id": transaction_id,
        "source_account": "acc_user_789",
        "destination_account": "acc_merchant_456",
        "amount": 1500,
        "currency": "INR",
        **overrides,
    }
