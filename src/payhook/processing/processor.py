"""Run the processing step for one claimed transaction and decide what its outcome means."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import structlog

from payhook.config import Settings
from payhook.db import STORAGE_ERRORS
from payhook.forwarding.step import DeliveryObserver, ForwardingStep
from payhook.processing.steps import ProcessingStep, StepFailed, load_step
from payhook.transactions.records import AttemptReport, ClaimedTransaction, Outcome

log = structlog.get_logger(__name__)

R = TypeVar("R")
RECORD_RETRY_SECONDS = 0.5


class Processor:
    """Runs the step under a timeout; failures are retried with backoff, then given up."""

    def __init__(
        self,
        step: ProcessingStep,
        settings: Settings,
        forwarding: ForwardingStep | None = None,
    ) -> None:
        self._step = step
        self.forwarding = forwarding  # the step, when it is the built-in forwarding
        self._timeout = settings.processing_timeout_seconds
        self._max_attempts = settings.max_retries + 1
        self._backoff = settings.retry_backoff_seconds
        self._backoff_max = settings.retry_backoff_max_seconds

    @classmethod
    def from_settings(
        cls, settings: Settings, observer: DeliveryObserver | None = None
    ) -> Processor:
        """The processor for DESTINATION_URL (the forwarding step) or else PROCESSING_STEP."""
        if settings.destination_url is not None:
            step = ForwardingStep(settings, observer)
            return cls(step, settings, forwarding=step)
        return cls(load_step(settings.processing_step), settings)

    async def aclose(self) -> None:
        """Release what the step holds (forwarding: its connection pool)."""
        if self.forwarding is not None:
            await self.forwarding.aclose()

    async def run(self, claimed: ClaimedTransaction) -> Outcome:
        if claimed.attempt > self._max_attempts:
            # Only a lease that expired again and again gets here: its worker kept dying.
            return self._failure(claimed, f"abandoned after {claimed.attempt - 1} attempts")
        try:
            # asyncio.timeout, not wait_for: no extra task per step (3.11 wraps it in one).
            async with asyncio.timeout(self._timeout):
                report = await self._step(claimed)
        except TimeoutError:
            return self._failure(claimed, f"timed out after {self._timeout:g}s")
        except StepFailed as failure:
            return self._judged(claimed, failure)
        except Exception as exc:
            return self._failure(claimed, f"{type(exc).__name__}: {exc}"[:2000])
        return Outcome(claimed, datetime.now(UTC), report=report)

    def _judged(self, claimed: ClaimedTransaction, failure: StepFailed) -> Outcome:
        """A failure the step described: given up at once, retried when it says, or given back."""
        error = failure.error[:2000]
        if not failure.retry:
            return self._failure(claimed, error, report=failure.report, give_up=True)
        if failure.counted:
            return self._failure(claimed, error, failure.retry_after, failure.report)
        now = datetime.now(UTC)
        delay = failure.retry_after
        if delay is None:
            delay = self.backoff(claimed.attempt)
        retry_at = now + timedelta(seconds=delay)
        return Outcome(claimed, now, error, retry_at, counted=False, report=failure.report)

    def _failure(
        self,
        claimed: ClaimedTransaction,
        error: str,
        retry_after: float | None = None,
        report: AttemptReport | None = None,
        *,
        give_up: bool = False,
    ) -> Outcome:
        now = datetime.now(UTC)
        retry_at = None
        if claimed.attempt < self._max_attempts and not give_up:
            # No sooner than the far side asked (Retry-After), nor than the backoff: a
            # `Retry-After: 0`, or a date already past, would spend every attempt in a second.
            delay = self.backoff(claimed.attempt)
            if retry_after is not None:
                delay = max(delay, retry_after)
            retry_at = now + timedelta(seconds=delay)
        # Logged once recorded, with the other outcomes (payhook.processing.batch).
        return Outcome(claimed, now, error=error, retry_at=retry_at, report=report)

    def backoff(self, attempt: int) -> float:
        """Exponential in the attempt number, capped, with jitter in [50%, 100%]."""
        ceiling = min(self._backoff_max, self._backoff * 2 ** (attempt - 1))
        return float(ceiling * random.uniform(0.5, 1.0))


async def record_until_lease_lapses(
    record: Callable[[], Awaitable[R]], claimed_at: datetime, lease_seconds: float
) -> R | None:
    """Write outcomes, retrying through a storage outage for as long as the claim's lease holds.

    Steps that ran must not run again merely because the database blinked; once the lease has
    lapsed the rows are someone else's to claim, and retrying would be pointless.
    """
    deadline = claimed_at.timestamp() + lease_seconds
    while True:
        try:
            return await record()
        except STORAGE_ERRORS as exc:
            if time.time() + RECORD_RETRY_SECONDS > deadline:
                log.error("processing.outcomes_lost", error=repr(exc))
                return None
            log.warning("processing.record_failed", error=repr(exc))
            await asyncio.sleep(RECORD_RETRY_SECONDS)
