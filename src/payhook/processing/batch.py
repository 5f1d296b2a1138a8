"""One claimed batch, whoever runs it: run its steps, then record the outcomes under its lease.

The embedded runner and the Celery worker both hand their batches here, so a batch is processed,
fenced and logged the same way in either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog

from payhook.processing.processor import Processor, record_until_lease_lapses
from payhook.transactions.records import ClaimedTransaction, Outcome
from payhook.transactions.repository import TransactionRepository

log = structlog.get_logger(__name__)

# A batch's finished steps are recorded at least this often while others still run: one slow
# delivery (up to DESTINATION_TIMEOUT_SECONDS) then holds back neither the others' outcomes nor
# their `processed_at`, and a crash meanwhile sends again only what was not recorded yet.
RECORD_EVERY_SECONDS = 1.0


class BatchProcessor:
    """Runs a batch's steps concurrently and writes their outcomes in one transaction (a batch
    with a slow step: the finished ones every RECORD_EVERY_SECONDS)."""

    def __init__(
        self,
        repository: TransactionRepository,
        processor: Processor,
        lease_seconds: float,
        on_recorded: Callable[[Outcome], None] | None = None,
        *,
        stop_record_seconds: float,
    ) -> None:
        self.repository = repository
        self._processor = processor
        self._lease_seconds = lease_seconds
        self._on_recorded = on_recorded
        # How long a cancelled batch (a stop) may take to record its finished steps: the
        # database may be down, and a stop must still end.
        self._stop_record_seconds = stop_record_seconds

    async def process(
        self,
        claimed: Sequence[ClaimedTransaction],
        step_done: Callable[[], None] | None = None,
    ) -> None:
        """Each outcome is applied only while its claim token still holds the row (fencing).

        The outcomes are written in one transaction when the steps finish within
        RECORD_EVERY_SECONDS (the usual case), else those finished so far every time it passes.
        `step_done` is called as each step finishes, before its outcome is written.

        Cancelled (the runner stopping), the batch still records the steps that finished, those
        waiting for the next periodic record and any whose write was in flight: else their rows
        would wait for the lease and the steps run again. Steps still running are cancelled and
        left to their leases, as after a crash mid-step.
        """
        if not claimed:
            return
        steps = [asyncio.ensure_future(self._processor.run(item)) for item in claimed]
        if step_done is not None:
            for step in steps:
                step.add_done_callback(lambda _: step_done())
        pending = set(steps)
        handed: set[asyncio.Future[Outcome]] = set()  # steps whose outcome a write has taken
        writing: asyncio.Future[None] | None = None
        try:
            while pending:
                done, pending = await asyncio.wait(pending, timeout=RECORD_EVERY_SECONDS)
                if done:
                    finished = [step for step in steps if step in done]
                    handed.update(finished)
                    writing = asyncio.ensure_future(self._record([s.result() for s in finished]))
                    # Shielded: a cancellation meanwhile leaves the write to end (_stopped).
                    await asyncio.shield(writing)
        except asyncio.CancelledError:
            await self._stopped(steps, handed, writing)
            raise
        finally:
            unfinished = [step for step in steps if not step.done()]
            for step in unfinished:  # cancelled with the batch (stopping): left to their leases
                step.cancel()
            if unfinished:
                await asyncio.gather(*unfinished, return_exceptions=True)

    async def _stopped(
        self,
        steps: Sequence[asyncio.Future[Outcome]],
        handed: set[asyncio.Future[Outcome]],
        writing: asyncio.Future[None] | None,
    ) -> None:
        """The batch was cancelled: record the finished steps not recorded yet, after the write
        in flight if any, within the stop's bound; the steps still running are cancelled first.

        Our own wait does not cancel the writes: a second cancellation ends it at once and
        propagates, and the writes go on; past the bound they are cancelled, their rows left
        to their leases (a database that does not answer must not hold up the stop).
        """
        finished = [
            step
            for step in steps
            if step.done()
            and step not in handed
            and not step.cancelled()
            and step.exception() is None
        ]
        for step in steps:
            step.cancel()  # only those still running: a finished one stays as it is
        in_flight = writing if writing is not None and not writing.done() else None
        if not finished and in_flight is None:
            return

        async def finish() -> None:
            # A write's failure is logged here: no one else awaits these any more.
            try:
                if in_flight is not None:
                    await in_flight
            except Exception as exc:  # the others are still to be recorded
                log.error("processing.record_failed_on_stop", error=repr(exc))
            try:
                if finished:
                    await self._record([step.result() for step in finished])
            except Exception as exc:
                log.error("processing.record_failed_on_stop", error=repr(exc))

        finishing = asyncio.ensure_future(finish())
        _, late = await asyncio.wait({finishing}, timeout=self._stop_record_seconds)
        if late:
            finishing.cancel()  # and with it the write it waits for
            log.error(
                "processing.outcomes_lost_on_stop",
                finished=len(finished),
                write_in_flight=in_flight is not None,
                timeout_seconds=self._stop_record_seconds,
            )

    async def _record(self, outcomes: Sequence[Outcome]) -> None:
        applied = await record_until_lease_lapses(
            lambda: self.repository.record_outcomes(outcomes),
            outcomes[0].claimed.claimed_at,
            self._lease_seconds,
        )
        for outcome, ok in zip(outcomes, applied or [], strict=False):
            if not ok:
                log.warning("executor.claim_lost", transaction_id=outcome.claimed.transaction_id)
                continue
            log_outcome(outcome)
            if self._on_recorded is not None:
                self._on_recorded(outcome)


def log_outcome(outcome: Outcome) -> None:
    """One line per recorded outcome: processed (INFO), to be retried or failed (WARNING)."""
    claimed = outcome.claimed
    if not outcome.counted and outcome.report is None:
        # Held back unsent while the destination is down: a line each would flood the log;
        # the destination's probes and outages are logged by payhook.forwarding.
        log.debug("processing.held_back", transaction_id=claimed.transaction_id)
        return
    if outcome.error is None:
        log.info(
            "processing.processed", transaction_id=claimed.transaction_id, attempt=claimed.attempt
        )
        return
    log.warning(
        "processing.attempt_failed" if outcome.retry_at else "processing.failed",
        transaction_id=claimed.transaction_id,
        attempt=claimed.attempt,
        error=outcome.error,
        retry_at=outcome.retry_at.isoformat() if outcome.retry_at else None,
        given_back=not outcome.counted,
    )
