"""Forwarding through real servers: payhook posts each due transaction to a real receiver.

The receiver (uvicorn on loopback, in this process) verifies every delivery with the
`standardwebhooks` package and records its `webhook-id`; payhook runs as real processes, with the
embedded executor or with Celery workers. Delays, timeouts and probe intervals are short here.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import redis_url
from tests.e2e.conftest import module_database
from tests.support.payloads import transaction_body
from tests.support.processes import PayhookProcess, started
from tests.support.receiver import SECRET, Answer, Received, Receiver

pytestmark = pytest.mark.e2e

TOKEN = "forwarding-test-admin-token-0123456789"
THRESHOLD = 3


def forwarding_env(database_url: str, receiver: Receiver) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "PROCESSING_DELAY_SECONDS": "1",
        "DESTINATION_URL": receiver.url,
        "DESTINATION_SECRET": SECRET,
        "DESTINATION_TIMEOUT_SECONDS": "1",
        "DESTINATION_FAILURE_THRESHOLD": str(THRESHOLD),
        "DESTINATION_PROBE_SECONDS": "0.5",
        "DESTINATION_PROBE_MAX_SECONDS": "2",
        "PROCESSING_TIMEOUT_SECONDS": "4",
        "RETRY_BACKOFF_SECONDS": "0.2",
        "RETRY_BACKOFF_MAX_SECONDS": "5",
        "ADMIN_TOKEN": TOKEN,
    }


class Payhook:
    """The API plus, with Celery, one worker: the process that forwards is `forwarder`."""

    def __init__(self, api: PayhookProcess, worker: PayhookProcess | None) -> None:
        self.api = api
        self.worker = worker
        self.client = httpx.Client(
            base_url=api.base_url, timeout=10, headers={"authorization": f"Bearer {TOKEN}"}
        )

    @property
    def forwarder(self) -> PayhookProcess:
        return self.worker or self.api

    def post(self, key: str) -> None:
        response = self.client.post("/v1/webhooks/transactions", json=transaction_body(key))
        assert response.status_code == 202, response.text

    def view(self, key: str) -> dict[str, Any]:
        item: dict[str, Any] = self.client.get(f"/v1/transactions/{key}").json()[0]
        return item

    def summary(self, key: str) -> dict[str, Any]:
        item: dict[str, Any] = self.client.get(f"/v1/transactions/{key}/timeline").json()
        return item

    def wait_settled(self, keys: list[str], timeout: float) -> dict[str, str]:
        """Wait until none is PROCESSING; the status of each."""
        deadline = time.monotonic() + timeout
        while True:
            found = {key: self.view(key)["status"] for key in keys}
            if "PROCESSING" not in found.values() or time.monotonic() > deadline:
                return found
            time.sleep(0.2)


@contextmanager
def running_payhook(
    topology: str, request: pytest.FixtureRequest, work: Path, receiver: Receiver
) -> Iterator[Payhook]:
    kind, _, executor = topology.partition("+")
    with module_database(kind, request, work) as url:
        redis = redis_url(request) if executor == "celery" else None
        with started(forwarding_env(url, receiver), work, redis) as running:
            payhook = Payhook(running.api, running.worker)
            try:
                yield payhook
            finally:
                payhook.client.close()


def scripted(received: Received) -> Answer:
    """Answers by the transaction id's prefix: what the team's service does with each."""
    key = received.payload["data"]["transaction_id"]
    first = received.seen == 1
    if key.startswith("flaky-") and first:
        return Answer(500, b'{"error": "database is restarting"}')
    if key.startswith("throttled-") and first:
        return Answer(429, b'{"error": "slow down"}', headers={"retry-after": "2"})
    if key.startswith("refused-"):
        return Answer(400, b'{"error": "unknown merchant account"}')
    if key.startswith("slow-") and first:
        return Answer(delay=3.0)
    return Answer()


@pytest.mark.parametrize("topology", ["sqlite", "postgres", "postgres+celery"])
def test_each_answer_gets_its_outcome(
    topology: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with (
        Receiver(answer=scripted) as receiver,
        running_payhook(topology, request, tmp_path, receiver) as payhook,
    ):
        run = uuid.uuid4().hex[:8]
        healthy = [f"ok-{run}-{n}" for n in range(3)]
        for key in healthy:
            payhook.post(key)
        # The destination has answered: a failure from now on is the transaction's own.
        assert payhook.wait_settled(healthy, timeout=30) == dict.fromkeys(healthy, "PROCESSED")
        flaky, throttled, refused, slow = (
            f"{kind}-{run}" for kind in ("flaky", "throttled", "refused", "slow")
        )
        for key in (flaky, throttled, refused, slow):
            payhook.post(key)

        settled = payhook.wait_settled([flaky, throttled, refused, slow], timeout=60)

        timelines = {key: payhook.summary(key) for key in (*healthy, flaky, refused, slow)}
        stored = payhook.view(healthy[0])
    assert receiver.unverified == []
    assert settled == {
        flaky: "PROCESSED",
        throttled: "PROCESSED",
        refused: "FAILED",
        slow: "PROCESSED",
    }
    seen = receiver.seen()
    assert [seen[f"payhook:{key}"] for key in (*healthy, flaky, throttled, refused, slow)] == [
        1, 1, 1, 2, 2, 1, 2
    ]  # fmt: skip

    # The body: the transaction as GET shows it (while it was due), and the attempt number.
    first = next(r for r in receiver.received if r.webhook_id == f"payhook:{healthy[0]}")
    assert first.payload["type"] == "transaction.due"
    assert first.payload["attempt"] == 1
    assert stored["status"] == "PROCESSED"
    assert first.payload["data"] == {**stored, "status": "PROCESSING", "processed_at": None}
    assert first.payload["data"]["amount"] == 1500
    retried = [r for r in receiver.received if r.webhook_id == f"payhook:{flaky}"]
    assert [r.payload["attempt"] for r in retried] == [1, 2]

    # Retry-After: 2 was honoured.
    throttled_at = [r.at for r in receiver.received if r.webhook_id == f"payhook:{throttled}"]
    assert throttled_at[1] - throttled_at[0] >= 1.9

    assert attempts(timelines[flaky]) == [
        ("failed", 500, '{"error": "database is restarting"}'),
        ("succeeded", 200, '{"received": true}'),
    ]
    assert attempts(timelines[refused]) == [
        ("failed", 400, '{"error": "unknown merchant account"}')
    ]
    assert timelines[refused]["transaction"]["attempts"] == 1
    assert timelines[refused]["transaction"]["last_error"] == (
        'HTTP 400: {"error": "unknown merchant account"}'
    )
    slow_attempts = [e for e in timelines[slow]["events"] if e["kind"] == "attempt"]
    assert [(e["outcome"], e["destination_status"]) for e in slow_attempts] == [
        ("failed", None),
        ("succeeded", 200),
    ]
    assert slow_attempts[0]["error"] == "no answer within 1s"
    assert slow_attempts[0]["latency_ms"] >= 900  # the 1 s timeout, by another clock


def attempts(timeline: dict[str, Any]) -> list[tuple[str, int | None, str | None]]:
    return [
        (e["outcome"], e["destination_status"], e["answer"])
        for e in timeline["events"]
        if e["kind"] == "attempt"
    ]


class SteadyLoad:
    """Posts a transaction every `interval` seconds from a thread until stopped."""

    def __init__(self, payhook: Payhook, interval: float) -> None:
        self.keys: list[str] = []
        self.errors: list[str] = []
        self._payhook = payhook
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-load", daemon=True)

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(base_url=self._payhook.api.base_url, timeout=10) as client:
            while not self._stop.wait(self._interval):
                key = f"steady-{uuid.uuid4().hex}"
                response = client.post("/v1/webhooks/transactions", json=transaction_body(key))
                if response.status_code == 202:
                    self.keys.append(key)
                else:
                    self.errors.append(response.text)


@pytest.mark.slow
@pytest.mark.real_time
@pytest.mark.parametrize("topology", ["sqlite", "postgres+celery"])
def test_a_30_second_outage_costs_time_not_transactions(
    topology: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with Receiver() as receiver, running_payhook(topology, request, tmp_path, receiver) as payhook:
        with SteadyLoad(payhook, interval=0.1) as load:
            time.sleep(4)
            receiver.stop()
            down = (datetime.now(UTC), len(load.keys))
            time.sleep(30)
            receiver.start()
            up = (datetime.now(UTC), len(load.keys))
            time.sleep(4)
        keys = load.keys
        settled = payhook.wait_settled(keys, timeout=60)
        timelines = [payhook.summary(key) for key in keys]
    assert load.errors == []
    assert up[1] - down[1] > 50  # the load went on, and fell due, while it was down
    assert Counter(settled.values()) == {"PROCESSED": len(keys)}
    seen = receiver.seen()
    assert [key for key in keys if seen[f"payhook:{key}"] == 0] == []
    assert receiver.unverified == []
    # While it was down, attempts were given back ("deferred"): only the deliveries that failed
    # before the outage was recognised (fewer than the threshold) spent one.
    during = [
        event
        for timeline in timelines
        for event in timeline["events"]
        if event["kind"] == "attempt" and down[0] <= datetime.fromisoformat(event["at"]) <= up[0]
    ]
    spent = [event for event in during if event["outcome"] == "failed"]
    assert len(spent) <= THRESHOLD - 1
    assert any(event["outcome"] == "deferred" for event in during)  # probes, given back
    assert max(timeline["transaction"]["attempts"] for timeline in timelines) <= 3


@pytest.mark.slow
@pytest.mark.real_time
@pytest.mark.parametrize("topology", ["sqlite", "postgres+celery"])
def test_kill_9_mid_delivery_delivers_each_at_least_once_and_at_most_twice(
    topology: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with (
        Receiver(answer=lambda r: Answer(delay=1.5)) as receiver,
        running_payhook(topology, request, tmp_path, receiver) as payhook,
    ):
        keys = [f"kill-{uuid.uuid4().hex}" for _ in range(30)]
        for key in keys:
            payhook.post(key)
        deadline = time.monotonic() + 30
        while receiver.in_flight < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.in_flight >= 10  # deliveries are waiting for their answers
        payhook.forwarder.kill()
        receiver.answer = lambda r: Answer()
        payhook.forwarder.start()
        # The interrupted ones come back when their leases lapse (PROCESSING_TIMEOUT + 10 s).
        settled = payhook.wait_settled(keys, timeout=90)
    assert Counter(settled.values()) == {"PROCESSED": len(keys)}
    seen = receiver.seen()
    assert {
        key: seen[f"payhook:{key}"] for key in keys if seen[f"payhook:{key}"] not in (1, 2)
    } == {}
    assert receiver.unverified == []
