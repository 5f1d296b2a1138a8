"""Run the processing step for one claimed transaction and decide what its outcome means."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import structlog

from payhook.config import Settings
from payhook.processing.steps import ProcessingStep
from payhook.transactions.repository import ClaimedTransaction, Outcome

log = structlog.get_logger(__name__)


class Processor:
    """Runs the step under a timeout; failures are retried with backoff, then given up."""

    def __init__(self, step: ProcessingStep, settings: Settings) -> None:
        self._step = step
        self._timeout = settings.processing_timeout_seconds
        self._max_attempts = settings.max_retries + 1
        self._backoff = settings.retry_backoff_seconds
        self._backoff_max = settings.retry_backoff_max_seconds

    async def run(self, claimed: ClaimedTransaction) -> Outcome:
        if claimed.attempt > self._max_attempts:
            # Only a lease that expired again and again gets here: its worker kept dying.
            return self._failure(claimed, f"abandoned after {claimed.attempt - 1} attempts")
        try:
            await asyncio.wait_for(self._step(claimed), self._timeout)
        except TimeoutError:
            return self._failure(claimed, f"timed out after {self._timeout:g}s")
        except Exception as exc:
            return self._failure(claimed, f"{type(exc).__name__}: {exc}"[:2000])
        return Outcome(claimed, datetime.now(UTC))

    def _failure(self, claimed: ClaimedTransaction, error: str) -> Outcome:
        now = datetime.now(UTC)
        retry_at = None
        if claimed.attempt < self._max_attempts:
            retry_at = now + timedelta(seconds=self.backoff(claimed.attempt))
        log.warning(
            "processing.attempt_failed",
            transaction_id=claimed.transaction_id,
            attempt=claimed.attempt,
            error=error,
            will_retry=retry_at is not None,
        )
        return Outcome(claimed, now, error=error, retry_at=retry_at)

    def backoff(self, attempt: int) -> float:
        """Exponential in the attempt number, capped, with jitter in [50%, 100%]."""
        ceiling = min(self._backoff_max, self._backoff * 2 ** (attempt - 1))
        return float(ceiling * random.uniform(0.5, 1.0))
