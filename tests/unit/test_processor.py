"""The processor: success, failure with backoff, timeout, and giving up after the last retry."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from payhook.config import Settings
from payhook.processing.processor import Processor
from payhook.processing.steps import ProcessingStep, StepFailed
from payhook.transactions.records import AttemptReport, ClaimedTransaction

pytestmark = pytest.mark.anyio
SETTINGS = Settings(
    _env_file=None,
    max_retries=3,
    retry_backoff_seconds=1.0,
    retry_backoff_max_seconds=5.0,
    processing_timeout_seconds=0.05,
)


def claimed(attempt: int) -> ClaimedTransaction:
    now = datetime.now(UTC)
    return ClaimedTransaction("t1", "a", "b", Decimal(1), "USD", now, now, attempt, "tok", now)


async def succeed(_: ClaimedTransaction) -> None:
    return None


async def explode(_: ClaimedTransaction) -> None:
    raise ValueError("upstream said no")


async def hang(_: ClaimedTransaction) -> None:
    await asyncio.sleep(10)


async def test_success_has_no_error() -> None:
    outcome = await Processor(succeed, SETTINGS).run(claimed(1))
    assert outcome.error is None


async def test_failure_is_retried_later_with_the_error_kept() -> None:
    outcome = await Processor(explode, SETTINGS).run(claimed(1))
    assert outcome.error == "ValueError: upstream said no"
    assert outcome.retry_at is not None
    assert 0.5 <= (outcome.retry_at - outcome.finished_at).total_seconds() <= 1.0


async def test_the_fourth_failed_attempt_is_final() -> None:
    outcome = await Processor(explode, SETTINGS).run(claimed(4))
    assert outcome.error is not None
    assert outcome.retry_at is None


async def test_a_step_that_hangs_times_out() -> None:
    outcome = await Processor(hang, SETTINGS).run(claimed(1))
    assert outcome.error == "timed out after 0.05s"


async def test_a_claim_past_the_last_attempt_is_given_up_without_running() -> None:
    ran = False

    async def step(_: ClaimedTransaction) -> None:
        nonlocal ran
        ran = True

    outcome = await Processor(step, SETTINGS).run(claimed(5))
    assert not ran
    assert outcome.retry_at is None
    assert outcome.error is not None
    assert "abandoned" in outcome.error


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)])
def test_backoff_is_exponential_capped_and_jittered(attempt: int, ceiling: float) -> None:
    processor = Processor(succeed, SETTINGS)
    delays = [processor.backoff(attempt) for _ in range(200)]
    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert len(set(delays)) > 100


def failing_with(failure: StepFailed) -> ProcessingStep:
    async def step(_: ClaimedTransaction) -> None:
        raise failure

    return step


async def test_a_step_can_give_up_at_once() -> None:
    report = AttemptReport(400, 0.01, "unknown account")
    step = failing_with(StepFailed("HTTP 400: unknown account", retry=False, report=report))

    outcome = await Processor(step, SETTINGS).run(claimed(1))

    assert (outcome.error, outcome.retry_at, outcome.counted) == (
        "HTTP 400: unknown account",
        None,
        True,
    )
    assert outcome.report == report


async def test_a_step_can_say_when_to_retry() -> None:
    outcome = await Processor(failing_with(StepFailed("429", retry_after=3)), SETTINGS).run(
        claimed(1)
    )

    assert outcome.retry_at is not None
    assert (outcome.retry_at - outcome.finished_at).total_seconds() == pytest.approx(3)
    assert outcome.counted


@pytest.mark.parametrize("retry_after", [0.0, 0.25])
async def test_a_retry_after_shorter_than_the_backoff_waits_the_backoff(
    retry_after: float,
) -> None:
    """A `Retry-After: 0` (or a date already past, read as 0) must not spend every attempt
    within a second: the retry waits at least the backoff (1 s here at attempt 1, less jitter)."""
    step = failing_with(StepFailed("429", retry_after=retry_after))

    outcome = await Processor(step, SETTINGS).run(claimed(1))

    assert outcome.retry_at is not None
    waited = (outcome.retry_at - outcome.finished_at).total_seconds()
    assert 0.5 <= waited <= 1.0  # RETRY_BACKOFF_SECONDS 1, times 0.5 to 1 (jitter)
    assert outcome.counted


async def test_an_attempt_given_back_is_retried_even_after_the_last_one() -> None:
    step = failing_with(StepFailed("destination down", retry_after=7, counted=False))

    outcome = await Processor(step, SETTINGS).run(claimed(4))

    assert outcome.counted is False
    assert outcome.retry_at is not None
    assert (outcome.retry_at - outcome.finished_at).total_seconds() == pytest.approx(7)


async def test_a_step_report_is_kept_on_success() -> None:
    async def step(_: ClaimedTransaction) -> AttemptReport:
        return AttemptReport(200, 0.004, "ok")

    outcome = await Processor(step, SETTINGS).run(claimed(1))

    assert (outcome.error, outcome.report) == (None, AttemptReport(200, 0.004, "ok"))


@pytest.mark.parametrize(
    ("transaction_id", "key"),
    [
        ("txn_abc123", "payhook:txn_abc123"),
        ("order 42/7", "payhook:order 42/7"),
        ("txn_é", "payhook-utf8:txn_%C3%A9"),  # fits an HTTP header (webhook-id) as ASCII
        ("txn_%C3%A9", "payhook:txn_%C3%A9"),  # an ASCII id never collides with an encoded one
    ],
)
def test_the_idempotency_key_is_printable_ascii(transaction_id: str, key: str) -> None:
    now = datetime.now(UTC)
    claimed = ClaimedTransaction(
        transaction_id, "a", "b", Decimal(1), "USD", now, now, 1, "tok", now
    )
    assert claimed.idempotency_key == key


def payment(transaction_id: str = "pi_1", **snapshot: Any) -> ClaimedTransaction:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "payment_state": "partially_refunded",
        "amount_refunded": Decimal("2.00"),
        "disputed": False,
        **snapshot,
    }
    return ClaimedTransaction(
        transaction_id,
        None,
        None,
        Decimal("10.99"),
        "USD",
        now,
        now,
        1,
        "tok",
        now,
        provider="stripe",
        **values,
    )


def test_a_provider_payment_has_a_key_per_snapshot_not_only_per_state() -> None:
    """Processed again on a second partial refund or a dispute within one state, the payment
    is new to the receiver that dedupes on the key; the same snapshot keeps its key."""
    first = payment()
    key = first.idempotency_key
    assert key.startswith("payhook-stripe:pi_1:partially_refunded:")
    assert payment(amount_refunded=Decimal("2.0")).idempotency_key == key  # how it is written
    assert dataclasses.replace(first, attempt=2).idempotency_key == key  # every attempt
    others = {
        payment(amount_refunded=Decimal("3.00")).idempotency_key,
        payment(disputed=True).idempotency_key,
        payment(payment_state="refunded").idempotency_key,
    }
    assert key not in others
    assert len(others) == 3


def test_no_generic_id_takes_a_provider_payment_key() -> None:
    """An id sent to the generic endpoint (possibly by anyone, unsigned) cannot make a
    receiver drop a provider's payment as a repeat."""
    now = datetime.now(UTC)
    for provider_payment in (payment(), payment("pi_é")):
        key = provider_payment.idempotency_key
        forged = key.split(":", 1)[1]  # everything after the prefix, as a generic id
        for transaction_id in (forged, f"stripe:{forged}", key):
            generic = ClaimedTransaction(
                transaction_id, "a", "b", Decimal(1), "USD", now, now, 1, "tok", now
            )
            assert generic.idempotency_key != key
