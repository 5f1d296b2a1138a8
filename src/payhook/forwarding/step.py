"""The built-in processing step when DESTINATION_URL is set: forward the due transaction.

The body is the transaction as `GET /v1/transactions/{id}` shows it (the fields of its model,
`TransactionOut`, written by the same rules), in a Standard Webhooks envelope with the attempt
number:

    {"type": "transaction.due", "timestamp": "...Z", "attempt": 1, "data": {...}}

The delivery's result becomes the attempt's outcome: delivered is done; refused is `FAILED` at
once; a retry spends an attempt unless the destination was down, when it is given back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from payhook.config import Settings
from payhook.forwarding.delivery import DeliveryResult, Verdict
from payhook.forwarding.forwarder import Forwarder
from payhook.forwarding.health import DestinationHealth
from payhook.jsonfmt import dumps_bytes
from payhook.processing.steps import StepFailed
from payhook.transactions.models import TransactionStatus
from payhook.transactions.records import AttemptReport, ClaimedTransaction
from payhook.transactions.schemas import TransactionOut

EVENT_TYPE = "transaction.due"


class DeliveryObserver(Protocol):
    """Told of every delivery's result as it happens (the metrics)."""

    def destination_result(self, result: DeliveryResult) -> None: ...


class ForwardingStep:
    """Posts each due transaction to DESTINATION_URL; one per process, closed with `aclose`."""

    def __init__(self, settings: Settings, observer: DeliveryObserver | None = None) -> None:
        self._forwarder = Forwarder(settings)
        self._observer = observer

    @property
    def health(self) -> DestinationHealth:
        return self._forwarder.health

    async def aclose(self) -> None:
        await self._forwarder.aclose()

    async def __call__(self, transaction: ClaimedTransaction) -> AttemptReport | None:
        body = delivery_body(transaction)
        result = await self._forwarder.forward(transaction.idempotency_key, body)
        if self._observer is not None:
            self._observer.destination_result(result)
        report = None
        if result.verdict is not Verdict.WAITING:
            answer = None if result.status is None else result.excerpt  # else it is the error
            report = AttemptReport(result.status, result.latency_seconds, answer)
        if result.verdict is Verdict.DELIVERED:
            return report
        raise StepFailed(
            result.error or result.verdict.value,
            retry=result.verdict is not Verdict.REFUSED,
            retry_after=result.retry_after,
            counted=result.counted,
            report=report,
        )


# The fields of GET's view, in its order; a claimed transaction is PROCESSING by definition.
_DATA_FIELDS = tuple(TransactionOut.model_fields)
_STATUS = TransactionStatus.PROCESSING.value


def delivery_body(transaction: ClaimedTransaction) -> bytes:
    """The JSON a delivery carries: the transaction as GET shows it while it is due (the row
    as the claim read it), amounts exact and in plain notation, and the attempt number.

    Written from the claimed record, not through the response model: validating and dumping
    the model and reading the row again were a fifth of a forwarding process's CPU (py-spy).
    tests/unit/test_delivery_body.py pins that it is the model's JSON.
    """
    data = {
        name: _STATUS if name == "status" else getattr(transaction, name) for name in _DATA_FIELDS
    }
    return dumps_bytes(
        {
            "type": EVENT_TYPE,
            "timestamp": datetime.now(UTC),
            "attempt": transaction.attempt,
            "data": data,
        }
    )
