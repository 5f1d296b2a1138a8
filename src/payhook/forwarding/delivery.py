"""What one delivery to the destination came to, read from its answer or from the lack of one.

- `2xx`: delivered.
- `408`, `425`, `429`, `5xx`, a connection error or a timeout: try again, at `Retry-After` when
  the answer gives one (seconds or an HTTP date), capped.
- any other answer (`3xx` included: redirects are not followed): refused for good; the status and
  the first KB of the answer are the error.

Connection errors, timeouts and `5xx` are outages (the destination is failing, not refusing):
they feed the health gate (`payhook.forwarding.health`). A delivery that never reached the
destination (the connection was refused or could not be made) spends no attempt at all: an
endpoint that is down costs its transactions time, never attempts, however busy this process is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

EXCERPT_BYTES = 1024
RETRYABLE_STATUSES = frozenset({408, 425, 429})


class Verdict(StrEnum):
    DELIVERED = "delivered"  # a 2xx answer
    RETRY = "retry"  # worth trying again later
    REFUSED = "refused"  # the destination said no for good
    WAITING = "waiting"  # not sent: the destination is down or busy; no attempt spent


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """One delivery's result; `counted` says whether it spends one of the transaction's attempts."""

    verdict: Verdict
    status: int | None = None  # the HTTP status; None when nothing answered
    latency_seconds: float | None = None  # None when nothing was sent
    excerpt: str = ""  # the first KB of the answer, or what went wrong
    retry_after: float | None = None  # seconds from now, when the answer (or the gate) says
    outage: bool = False  # a connection error, timeout or 5xx
    counted: bool = True

    @property
    def error(self) -> str | None:
        """The error recorded for the attempt; None when delivered."""
        if self.verdict is Verdict.DELIVERED:
            return None
        if self.status is None:
            return self.excerpt
        return f"HTTP {self.status}: {self.excerpt}" if self.excerpt else f"HTTP {self.status}"

    def uncounted(self, retry_after: float | None) -> DeliveryResult:
        """The same result, spending no attempt, tried again after `retry_after` seconds."""
        return replace(self, counted=False, retry_after=retry_after)


def waiting(seconds: float, reason: str) -> DeliveryResult:
    """Held back before sending: try again in `seconds`, without spending an attempt."""
    return DeliveryResult(Verdict.WAITING, excerpt=reason, retry_after=seconds, counted=False)


def failed(reason: str, latency: float) -> DeliveryResult:
    """No answer in time, or the connection broke after the request may have been sent."""
    return DeliveryResult(Verdict.RETRY, latency_seconds=latency, excerpt=reason, outage=True)


def unreached(reason: str, latency: float) -> DeliveryResult:
    """No connection could be made: nothing was sent, so no attempt is spent."""
    return replace(failed(reason, latency), counted=False)


def answered(
    status: int, retry_after: str | None, excerpt: str, latency: float, *, cap: float
) -> DeliveryResult:
    """Judge an answer by its status; `Retry-After` is honoured (up to `cap` s) when retrying."""
    if 200 <= status < 300:
        return DeliveryResult(Verdict.DELIVERED, status, latency, excerpt)
    if status in RETRYABLE_STATUSES or status >= 500:
        return DeliveryResult(
            Verdict.RETRY,
            status,
            latency,
            excerpt,
            retry_after=parse_retry_after(retry_after, datetime.now(UTC), cap),
            outage=status >= 500,
        )
    return DeliveryResult(Verdict.REFUSED, status, latency, excerpt)


def parse_retry_after(value: str | None, now: datetime, cap: float) -> float | None:
    """Seconds to wait per a `Retry-After` header (delta-seconds or HTTP date), at most `cap`."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(int(value[:12]))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000" per RFC 5322: UTC without saying so
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), cap)


def excerpt_of(data: bytes) -> str:
    """The first KB of an answer as text (undecodable bytes replaced)."""
    return data[:EXCERPT_BYTES].decode("utf-8", "replace")
