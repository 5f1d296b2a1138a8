"""The built-in processing step when DESTINATION_URL is set: forward the due transaction.

The body is the transaction as `GET /v1/transactions/{id}` shows it (the same model,
`TransactionOut`, written the same way), in a Standard Webhooks envelope with the attempt number:

    {"type": "transaction.due", "timestamp": "...Z", "attempt": 1, "data": {...}}

The delivery's result becomes the attempt's outcome: delivered is done; refused is `FAILED` at
once; a retry spends an attempt unless the destination was down, when it is given back.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Protocol

from payhook.config import Settings
from payhook.db import STORAGE_ERRORS
from payhook.forwarding.delivery import DeliveryResult, Verdict
from payhook.forwarding.forwarder import Forwarder
from payhook.forwarding.health import DestinationHealth
from payhook.jsonfmt import dumps
from payhook.processing.steps import StepFailed
from payhook.timefmt import isoformat_z
from payhook.transactions.records import AttemptReport, ClaimedTransaction
from payhook.transactions.repository import TransactionRepository
from payhook.transactions.schemas import TransactionOut

EVENT_TYPE = "transaction.due"
RowKey = tuple[str, str]  # (transaction_id, provider): a transaction is unique per both
STORAGE_RETRY_SECONDS = 1.0


class DeliveryObserver(Protocol):
    """Told of every delivery's result as it happens (the metrics)."""

    def destination_result(self, result: DeliveryResult) -> None: ...


class ForwardingStep:
    """Posts each due transaction to DESTINATION_URL; one per process, closed with `aclose`."""

    def __init__(
        self,
        settings: Settings,
        repository: TransactionRepository,
        observer: DeliveryObserver | None = None,
    ) -> None:
        self._forwarder = Forwarder(settings)
        self._rows = RowLoader(repository)
        self._observer = observer

    @property
    def health(self) -> DestinationHealth:
        return self._forwarder.health

    async def aclose(self) -> None:
        await self._forwarder.aclose()

    async def __call__(self, transaction: ClaimedTransaction) -> AttemptReport | None:
        body = delivery_body(await self._row(transaction), transaction.attempt)
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

    async def _row(self, transaction: ClaimedTransaction) -> Any:
        try:
            row = await self._rows.load(transaction.key)
        except STORAGE_ERRORS as exc:
            raise StepFailed(
                f"storage unavailable: {exc!r}"[:500],
                counted=False,
                retry_after=STORAGE_RETRY_SECONDS,
            ) from exc
        if row is None:  # claimed a moment ago, so it is stored: only a bug gets here
            raise StepFailed("the transaction's row could not be read", retry=False)
        return row


def delivery_body(row: Any, attempt: int) -> bytes:
    """The JSON a delivery carries; amounts exact and in plain notation, as GET writes them."""
    envelope = {
        "type": EVENT_TYPE,
        "timestamp": isoformat_z(datetime.now(UTC)),
        "attempt": attempt,
        "data": TransactionOut.model_validate(row._mapping).model_dump(),
    }
    return dumps(envelope).encode()


class RowLoader:
    """Reads the rows of transactions forwarded together in one query.

    A batch's steps start together and each asks for its own row before its first real wait;
    the requests made in that moment are answered by one `SELECT ... WHERE id IN (...)`.
    """

    def __init__(self, repository: TransactionRepository) -> None:
        self._repository = repository
        self._waiting: dict[RowKey, list[asyncio.Future[Any]]] = {}
        self._reads: set[asyncio.Task[None]] = set()

    async def load(self, key: RowKey) -> Any:
        loop = asyncio.get_running_loop()
        if not self._waiting:
            loop.call_soon(self._read_waiting)
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.setdefault(key, []).append(future)
        return await future

    def _read_waiting(self) -> None:
        waiting, self._waiting = self._waiting, {}
        task = asyncio.create_task(self._read(waiting))
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)

    async def _read(self, waiting: dict[RowKey, list[asyncio.Future[Any]]]) -> None:
        error: Exception | None = None
        rows: dict[RowKey, Any] = {}
        try:
            rows = await self._repository.get_many(list(waiting))
        except Exception as exc:
            error = exc
        for key, futures in waiting.items():
            for future in futures:
                if future.done():  # its step was cancelled meanwhile
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(rows.get(key))
