"""The destination's health gate: an outage costs time, not transactions.

Closed (healthy), every delivery is sent. DESTINATION_FAILURE_THRESHOLD outages in a row
(connection errors, timeouts, 5xx) open it: nothing is sent until the next probe time, and
deliveries held back spend no attempt. At the probe time one delivery goes out as the probe
while the others due then wait for its answer: an answer closes the gate and they go; another
outage opens it again for twice as long (up to DESTINATION_PROBE_MAX_SECONDS, with jitter so that
several processes do not probe in step).

A connection that could not be made spends no attempt in any state (nothing was sent; the
forwarder marks it so). Any other outage spends a transaction's attempt only while the gate is
closed and the destination has answered this process recently: a failure on a destination that
answers others is the transaction's own, while one on a destination nobody has heard from is the
destination's.

A `Retry-After` on a 429 pauses every delivery of the process until then.

The gate is per process: each process learns of an outage from its own deliveries.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

# How recent an answer must be for an outage to count as the transaction's own failure.
ANSWERED_RECENTLY_SECONDS = 60.0


class GateState(StrEnum):
    CLOSED = "closed"  # healthy: sending
    OPEN = "open"  # failing: waiting for the next probe
    PROBING = "probing"  # one probe in flight; others wait for its answer


@dataclass(frozen=True, slots=True)
class Admission:
    """Leave to send one delivery; `probe` when it is the one that tests an open gate."""

    probe: bool


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    state: GateState
    consecutive_failures: int
    next_probe_in: float | None  # seconds, while open
    paused_for: float | None  # seconds left of a 429's Retry-After
    last_answer_ago: float | None  # seconds since the destination last answered anything

    def summary(self) -> str:
        """One line for people (the console)."""
        if self.state is GateState.PROBING:
            return "failing: probing"
        if self.state is GateState.OPEN:
            return f"failing: next probe in {self.next_probe_in or 0:.0f} s"
        if self.paused_for:
            return f"paused {self.paused_for:.0f} s (429)"
        return "sending"


class DestinationHealth:
    def __init__(
        self,
        threshold: int,
        probe_seconds: float,
        probe_max_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._probe_seconds = probe_seconds
        self._probe_max_seconds = probe_max_seconds
        self._clock = clock
        self._failures = 0
        self._openings = 0  # in a row, since the last answer: the probe interval doubles
        self._probe_at: float | None = None  # set while open
        self._probing = False
        self._probe_answered = asyncio.Event()
        self._paused_until = 0.0
        self._last_answer: float | None = None

    @property
    def state(self) -> GateState:
        if self._probe_at is None:
            return GateState.CLOSED
        return GateState.PROBING if self._probing else GateState.OPEN

    def hold_seconds(self) -> float | None:
        """How long a delivery must wait before it may be sent; None when it may go now."""
        now = self._clock()
        wait = self._paused_until - now
        if self._probe_at is not None and not self._probing:
            wait = max(wait, self._probe_at - now)
        return wait if wait > 0 else None

    async def admit(self, patience: float) -> Admission | float:
        """Leave to send now, or the seconds to hold back.

        While a probe is in flight, waits up to `patience` seconds for its answer.
        """
        while True:
            hold = self.hold_seconds()
            if hold is not None:
                return hold
            if self._probe_at is None:
                return Admission(probe=False)
            if not self._probing:
                self._probing = True
                return Admission(probe=True)
            answered = self._probe_answered
            try:
                async with asyncio.timeout(patience):
                    await answered.wait()
            except TimeoutError:
                return patience

    def record(self, admission: Admission, outage: bool) -> bool:
        """Take a sent delivery's result into account; True if it spends an attempt."""
        now = self._clock()
        if admission.probe:
            self._end_probe()
        if not outage:
            self._failures = 0
            self._openings = 0
            self._probe_at = None
            self._last_answer = now
            return True
        self._failures += 1
        if admission.probe or (self._probe_at is None and self._failures >= self._threshold):
            self._open(now)
            return False
        if self._probe_at is not None:
            return False
        return self._last_answer is not None and now - self._last_answer <= (
            ANSWERED_RECENTLY_SECONDS
        )

    def abandon(self, admission: Admission) -> None:
        """A delivery let through was never completed (cancelled): another may probe at once."""
        if admission.probe:
            self._end_probe()
            self._probe_at = self._clock()

    def pause(self, seconds: float) -> None:
        """Hold every delivery back for `seconds` (a 429's Retry-After)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def snapshot(self) -> HealthSnapshot:
        now = self._clock()
        return HealthSnapshot(
            state=self.state,
            consecutive_failures=self._failures,
            next_probe_in=None if self._probe_at is None else max(0.0, self._probe_at - now),
            paused_for=max(0.0, self._paused_until - now) or None,
            last_answer_ago=None if self._last_answer is None else now - self._last_answer,
        )

    def _open(self, now: float) -> None:
        self._openings += 1
        interval = min(self._probe_max_seconds, self._probe_seconds * 2 ** (self._openings - 1))
        self._probe_at = now + interval * random.uniform(0.8, 1.0)

    def _end_probe(self) -> None:
        self._probing = False
        self._probe_answered.set()
        self._probe_answered = asyncio.Event()
