"""Prometheus metrics, one registry per app, plus the short history the console charts draw.

Counters and histograms are incremented in-process where things happen (one `.inc()` or
`.observe()` on the hot path, never database work). Gauges that describe stored state
(transactions by status, the due backlog) are set from the database when `/metrics` is scraped.

With WEB_CONCURRENCY > 1 each worker process has its own counters and a scrape reaches one of
them: scrape each process (one port each) or sum over instances; the database gauges are
the same from every process. Celery workers record attempts in their own processes, which
export nothing: with Celery, attempts and lateness are not counted here.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from payhook.forwarding.delivery import DeliveryResult, Verdict
from payhook.forwarding.health import DestinationHealth, GateState, HealthSnapshot
from payhook.providers.model import EventVerdict
from payhook.transactions.models import DeliveryOutcome, TransactionStatus
from payhook.transactions.records import Outcome

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REJECTION_REASONS = ("400", "401", "413", "415", "422", "503")
LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
INGEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
HISTORY_SECONDS = 60


@dataclass(frozen=True, slots=True)
class DatabaseSnapshot:
    """Stored state, read at scrape time."""

    by_status: dict[str, int]
    due_backlog: int
    oldest_due_age_seconds: float
    pool: dict[str, int]


class RecentActivity:
    """Per-second ingest counts and recent lateness values, for the console's live charts."""

    def __init__(self) -> None:
        self._ingest: dict[int, int] = {}
        self._lateness: deque[tuple[float, float]] = deque(maxlen=300)

    def ingested(self) -> None:
        second = int(time.time())
        self._ingest[second] = self._ingest.get(second, 0) + 1
        if len(self._ingest) > 2 * HISTORY_SECONDS:
            # Forget seconds that fell out of the window; runs once a minute or so.
            for old in [s for s in self._ingest if s <= second - HISTORY_SECONDS]:
                del self._ingest[old]

    def late_by(self, seconds: float) -> None:
        self._lateness.append((time.time(), seconds))

    def snapshot(self) -> dict[str, Any]:
        """The last minute: ingest counts per second (oldest first) and lateness samples."""
        now = int(time.time())
        seconds = range(now - HISTORY_SECONDS + 1, now + 1)
        return {
            "now": now,
            "ingest_per_second": [self._ingest.get(s, 0) for s in seconds],
            "lateness_seconds": [round(v, 3) for at, v in self._lateness if at > now - 60],
        }


class Metrics:
    """Every metric payhook exports, in its own registry: two apps in one process never clash."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.recent = RecentActivity()
        r = self.registry
        self._deliveries = Counter(
            "payhook_deliveries", "Webhook deliveries stored, by outcome.", ["outcome"], registry=r
        )
        self._rejected = Counter(
            "payhook_deliveries_rejected",
            "Webhook deliveries refused (nothing stored), by HTTP status.",
            ["reason"],
            registry=r,
        )
        self.ingest_seconds = Histogram(
            "payhook_ingest_seconds",
            "Time to answer POST /v1/webhooks/transactions.",
            buckets=INGEST_BUCKETS,
            registry=r,
        )
        self._provider_events = Counter(
            "payhook_provider_events",
            "Provider webhook events received (each verified event, re-deliveries too), by "
            "provider, event type and verdict.",
            ["provider", "type", "verdict"],
            registry=r,
        )
        self._attempts = Counter(
            "payhook_processing_attempts",
            "Processing attempts, by outcome.",
            ["outcome"],
            registry=r,
        )
        self._failed = Counter(
            "payhook_transactions_failed", "Transactions that ended FAILED.", registry=r
        )
        self._lateness = Histogram(
            "payhook_lateness_seconds",
            "How long after its due time a transaction finished processing.",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self._gauges(r)
        self._destination_metrics(r)

    def _destination_metrics(self, r: CollectorRegistry) -> None:
        self._health: DestinationHealth | None = None
        self._forwarded = Counter(
            "payhook_destination_deliveries",
            "Deliveries to DESTINATION_URL, by verdict (waiting: held back, not sent).",
            ["outcome"],
            registry=r,
        )
        self._forward_seconds = Histogram(
            "payhook_destination_latency_seconds",
            "How long DESTINATION_URL took to answer (or to fail).",
            buckets=INGEST_BUCKETS + (5.0, 10.0, 30.0),
            registry=r,
        )
        self._destination_up = Gauge(
            "payhook_destination_up",
            "1 while deliveries are sent; 0 while the destination is failing and they wait.",
            registry=r,
        )
        self._destination_failures = Gauge(
            "payhook_destination_consecutive_failures",
            "Connection errors, timeouts and 5xx from DESTINATION_URL in a row.",
            registry=r,
        )
        # Each label's child resolved once (as for deliveries): one per forwarded delivery.
        self._forwarded_counts = {v: self._forwarded.labels(v.value) for v in Verdict}
        self._attempt_counts = {
            label: self._attempts.labels(label) for label in ("deferred", "failed", "succeeded")
        }

    def _gauges(self, r: CollectorRegistry) -> None:
        self._by_status = Gauge(
            "payhook_transactions", "Stored transactions, by status.", ["status"], registry=r
        )
        self._backlog = Gauge(
            "payhook_due_backlog", "PROCESSING transactions already due.", registry=r
        )
        self._oldest_due = Gauge(
            "payhook_oldest_due_age_seconds", "How long the oldest due one has waited.", registry=r
        )
        self._pool = Gauge(
            "payhook_db_pool_connections",
            "Database pool connections, by state.",
            ["state"],
            registry=r,
        )
        # Each outcome's child resolved once: `labels()` per delivery was a lock and a lookup.
        self._delivery_counts = {
            outcome: self._deliveries.labels(outcome.value) for outcome in DeliveryOutcome
        }
        for reason in REJECTION_REASONS:
            self._rejected.labels(reason)
        for status in TransactionStatus:
            self._by_status.labels(status.value)

    def delivery(self, outcome: DeliveryOutcome) -> None:
        """A delivery was stored (accepted, duplicate) or recorded as a conflict."""
        self._delivery_counts[outcome].inc()
        self.recent.ingested()

    def provider_event(self, provider: str, event_type: str, verdict: EventVerdict) -> None:
        """A verified provider event was stored (or counted as a re-delivery)."""
        self._provider_events.labels(provider, event_type, verdict.value).inc()
        self.recent.ingested()

    def rejected(self, status_code: int) -> None:
        self._rejected.labels(str(status_code)).inc()

    def attempt(self, outcome: Outcome) -> None:
        """A processing attempt's outcome was committed."""
        if not outcome.counted and outcome.report is None:
            return  # held back unsent (the destination was down): no attempt was made
        failed = outcome.error is not None
        label = "deferred" if not outcome.counted else "failed" if failed else "succeeded"
        self._attempt_counts[label].inc()
        if failed and outcome.retry_at is None:
            self._failed.inc()
        if not failed:
            late = (outcome.finished_at - outcome.claimed.due_at).total_seconds()
            self._lateness.observe(max(0.0, late))
            self.recent.late_by(max(0.0, late))

    def watch_destination(self, health: DestinationHealth) -> None:
        """This process forwards: export its destination's health."""
        self._health = health

    def destination(self) -> HealthSnapshot | None:
        """The destination's health as this process sees it; None unless it forwards."""
        return None if self._health is None else self._health.snapshot()

    def destination_result(self, result: DeliveryResult) -> None:
        """A delivery to DESTINATION_URL came back (or was held back)."""
        self._forwarded_counts[result.verdict].inc()
        if result.latency_seconds is not None:
            self._forward_seconds.observe(result.latency_seconds)

    def render(self, snapshot: DatabaseSnapshot) -> bytes:
        """The exposition text, with the database gauges set from `snapshot`."""
        for status in TransactionStatus:
            self._by_status.labels(status.value).set(snapshot.by_status.get(status.value, 0))
        self._backlog.set(snapshot.due_backlog)
        self._oldest_due.set(snapshot.oldest_due_age_seconds)
        for state, value in snapshot.pool.items():
            self._pool.labels(state).set(value)
        destination = self.destination()
        if destination is not None:
            self._destination_up.set(int(destination.state is GateState.CLOSED))
            self._destination_failures.set(destination.consecutive_failures)
        return generate_latest(self.registry)


def pool_usage(pool: Any) -> dict[str, int]:
    """Checked-out, idle and overflow connections of a SQLAlchemy QueuePool (empty otherwise)."""
    if not hasattr(pool, "checkedout"):
        return {}
    return {
        "checked_out": int(pool.checkedout()),
        "idle": int(pool.checkedin()),
        "overflow": max(0, int(pool.overflow())),
        "size": int(pool.size()),
    }
