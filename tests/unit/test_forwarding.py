"""The forwarder against a real receiver: uvicorn on loopback, verifying with standardwebhooks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from payhook.config import Settings
from payhook.forwarding.delivery import DeliveryResult, Verdict, parse_retry_after
from payhook.forwarding.forwarder import Forwarder, proxy_for
from payhook.forwarding.health import Admission, DestinationHealth, GateState
from payhook.forwarding.window import SendWindow
from tests.support.paypal import loopback_tls
from tests.support.receiver import SECRET, Answer, Receiver

pytestmark = pytest.mark.anyio


def settings_for(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "destination_url": url,
        "destination_secret": SECRET,
        "destination_timeout_seconds": 2.0,
        "processing_timeout_seconds": 5.0,
        "destination_failure_threshold": 2,
        "destination_probe_seconds": 0.4,
        "destination_probe_max_seconds": 1.0,
        **overrides,
    }
    return Settings(_env_file=None, **values)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
async def forwarder(receiver: Receiver) -> AsyncIterator[Forwarder]:
    forwarder = Forwarder(settings_for(receiver.url))
    yield forwarder
    await forwarder.aclose()


class ManualClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def body(n: int = 1) -> bytes:
    return json.dumps({"transaction_id": f"txn_{n}", "amount": 150.50, "attempt": 1}).encode()


async def test_a_delivery_is_signed_verifiable_and_delivered(
    receiver: Receiver, forwarder: Forwarder
) -> None:
    first = await forwarder.forward("payhook:txn_1", body(1))
    await forwarder.forward("payhook:txn_2", body(2))

    assert (first.verdict, first.status, first.counted, first.error) == (
        Verdict.DELIVERED,
        200,
        True,
        None,
    )
    assert first.excerpt == '{"received": true}'
    assert first.latency_seconds is not None
    assert first.latency_seconds > 0
    assert receiver.unverified == []
    assert [r.webhook_id for r in receiver.received] == ["payhook:txn_1", "payhook:txn_2"]
    assert receiver.received[0].payload == {
        "transaction_id": "txn_1",
        "amount": 150.5,
        "attempt": 1,
    }
    # One pooled client with keep-alive: the second delivery reuses the first one's connection.
    assert receiver.received[0].client_port == receiver.received[1].client_port


async def test_the_webhook_id_is_the_same_on_every_attempt(
    receiver: Receiver, forwarder: Forwarder
) -> None:
    receiver.answer = lambda r: Answer(500) if r.seen == 1 else Answer(200)

    failed = await forwarder.forward("payhook:txn_again", body())
    delivered = await forwarder.forward("payhook:txn_again", body())

    assert (failed.verdict, delivered.verdict) == (Verdict.RETRY, Verdict.DELIVERED)
    assert receiver.seen() == {"payhook:txn_again": 2}
    assert receiver.unverified == []


async def test_a_5xx_is_an_outage_retried_with_the_answer_as_error(
    receiver: Receiver, forwarder: Forwarder
) -> None:
    receiver.answer = lambda r: Answer(503, b"x" * 5000)

    result = await forwarder.forward("payhook:txn_5xx", body())

    assert (result.verdict, result.status, result.outage) == (Verdict.RETRY, 503, True)
    assert result.error == "HTTP 503: " + "x" * 1024  # the first KB of the answer


@pytest.mark.parametrize("status", [408, 425, 429])
async def test_throttling_answers_are_retried_at_their_retry_after(
    receiver: Receiver, forwarder: Forwarder, status: int
) -> None:
    receiver.answer = lambda r: Answer(status, headers={"retry-after": "2"})

    result = await forwarder.forward(f"payhook:txn_{status}", body())

    assert (result.verdict, result.status, result.outage) == (Verdict.RETRY, status, False)
    assert result.retry_after == 2.0
    assert result.counted


async def test_a_429_holds_back_every_delivery_until_its_retry_after(
    receiver: Receiver, forwarder: Forwarder
) -> None:
    receiver.answer = lambda r: Answer(429, headers={"retry-after": "30"})
    await forwarder.forward("payhook:txn_throttled", body())

    held = await forwarder.forward("payhook:txn_next", body())

    assert held.verdict is Verdict.WAITING
    assert not held.counted
    assert held.retry_after is not None
    assert 20.0 < held.retry_after <= 30.0  # what is left of the 30 s (a stall may take some)
    assert receiver.seen() == {"payhook:txn_throttled": 1}


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
async def test_other_4xx_are_refused_for_good(
    receiver: Receiver, forwarder: Forwarder, status: int
) -> None:
    receiver.answer = lambda r: Answer(status, b'{"error": "unknown account"}')

    result = await forwarder.forward(f"payhook:txn_{status}", body())

    assert (result.verdict, result.status, result.counted) == (Verdict.REFUSED, status, True)
    assert result.error == f'HTTP {status}: {{"error": "unknown account"}}'


async def test_redirects_are_not_followed(receiver: Receiver, forwarder: Forwarder) -> None:
    receiver.answer = lambda r: Answer(307, b"", headers={"location": receiver.url + "/moved"})

    result = await forwarder.forward("payhook:txn_moved", body())

    assert (result.verdict, result.status) == (Verdict.REFUSED, 307)
    assert len(receiver.received) == 1


async def test_an_answer_slower_than_the_timeout_is_an_outage(receiver: Receiver) -> None:
    receiver.answer = lambda r: Answer(delay=8.0)
    forwarder = Forwarder(settings_for(receiver.url, destination_timeout_seconds=0.5))
    try:
        result = await forwarder.forward("payhook:txn_slow", body())
    finally:
        await forwarder.aclose()

    assert (result.verdict, result.status, result.outage) == (Verdict.RETRY, None, True)
    assert result.error == "no answer within 0.5s"
    assert result.latency_seconds is not None
    assert result.latency_seconds < 5.0  # given up at 0.5 s, not waited out (8 s)


async def test_a_refused_connection_is_an_outage(receiver: Receiver, forwarder: Forwarder) -> None:
    receiver.stop()

    result = await forwarder.forward("payhook:txn_down", body())

    assert (result.verdict, result.status, result.outage) == (Verdict.RETRY, None, True)
    assert result.error is not None
    assert result.error.startswith("could not connect: ")
    # Nothing reached the destination: no attempt is spent, even on a gate still closed.
    assert result.counted is False


async def test_an_https_destination_is_reached_when_its_ca_is_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca_file, served = loopback_tls(tmp_path)
    with Receiver(tls=served) as receiver:
        untrusting = Forwarder(settings_for(receiver.url))
        try:
            untrusted = await untrusting.forward("payhook:txn_untrusted", body())
        finally:
            await untrusting.aclose()
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # as a deployment names its own CAs
        trusting = Forwarder(settings_for(receiver.url))
        try:
            delivered = await trusting.forward("payhook:txn_trusted", body())
        finally:
            await trusting.aclose()

    assert receiver.url.startswith("https://")
    assert (delivered.verdict, delivered.status) == (Verdict.DELIVERED, 200)
    # A certificate nobody vouches for: nothing was sent, so no attempt is spent.
    assert (untrusted.verdict, untrusted.counted) == (Verdict.RETRY, False)
    assert "invalid peer certificate" in (untrusted.error or "")
    assert receiver.seen() == {"payhook:txn_trusted": 1}
    assert receiver.unverified == []


def test_the_proxy_for_the_destination_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert proxy_for("https://hooks.example.com/payhook") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://egress.internal:3128")
    monkeypatch.setenv("NO_PROXY", "hooks.internal")

    assert proxy_for("https://hooks.example.com/payhook") == "http://egress.internal:3128"
    assert proxy_for("https://hooks.internal/payhook") is None  # NO_PROXY
    assert proxy_for("http://hooks.example.com/payhook") is None  # no HTTP_PROXY


async def test_an_outage_holds_deliveries_back_and_a_probe_resumes_them(
    receiver: Receiver, forwarder: Forwarder
) -> None:
    # The gate's time is this test's: a stall of the machine cannot turn a hold into a probe.
    clock = ManualClock()
    forwarder.health = DestinationHealth(2, 0.4, 1.0, clock=clock)
    assert (await forwarder.forward("payhook:txn_before", body())).verdict is Verdict.DELIVERED
    receiver.stop()

    # Refused connections: nothing was sent, so neither spends an attempt, though the
    # destination answered a moment ago; the second in a row reaches the threshold.
    first = await forwarder.forward("payhook:txn_a", body())
    second = await forwarder.forward("payhook:txn_b", body())
    held = await forwarder.forward("payhook:txn_c", body())

    assert (first.counted, second.counted) == (False, False)
    assert forwarder.health.state is GateState.OPEN
    assert held.verdict is Verdict.WAITING
    assert not held.counted
    assert held.retry_after is not None
    assert 0.32 <= held.retry_after <= 0.4  # DESTINATION_PROBE_SECONDS, less up to 20% jitter

    # The probe goes out while the destination is still down: another outage, not counted.
    clock.advance(held.retry_after)
    probe = await forwarder.forward("payhook:txn_c", body())
    assert (probe.verdict, probe.outage, probe.counted) == (Verdict.RETRY, True, False)
    assert forwarder.health.snapshot().state is GateState.OPEN

    receiver.start()
    snapshot = forwarder.health.snapshot()
    assert snapshot.next_probe_in is not None
    assert 0.64 <= snapshot.next_probe_in <= 0.8  # doubled after the failed probe
    clock.advance(snapshot.next_probe_in)
    receiver.answer = lambda r: Answer(delay=0.3)  # a slow probe: the others wait for it
    results = await asyncio.gather(
        *(forwarder.forward(f"payhook:txn_{n}", body(n)) for n in range(10))
    )

    assert all(result.verdict is Verdict.DELIVERED for result in results)
    assert forwarder.health.snapshot().state is GateState.CLOSED
    arrivals = sorted(r.at for r in receiver.received if r.webhook_id.startswith("payhook:txn_"))
    # One probe first; the other nine only once it had answered (0.3 s later).
    later = [at for at in arrivals[-9:] if at >= arrivals[-10] + 0.25]
    assert len(later) == 9
    assert receiver.unverified == []


async def test_in_flight_requests_are_bounded(receiver: Receiver) -> None:
    receiver.answer = lambda r: Answer(delay=0.2)
    forwarder = Forwarder(settings_for(receiver.url, destination_max_in_flight=2))
    try:
        results = await asyncio.gather(
            *(forwarder.forward(f"payhook:txn_{n}", body(n)) for n in range(6))
        )
    finally:
        await forwarder.aclose()

    assert all(result.verdict is Verdict.DELIVERED for result in results)
    assert receiver.max_in_flight == 2


async def test_requests_per_second_are_bounded(receiver: Receiver) -> None:
    forwarder = Forwarder(settings_for(receiver.url, destination_max_per_second=5))
    try:
        results = await asyncio.gather(
            *(forwarder.forward(f"payhook:txn_{n}", body(n)) for n in range(10))
        )
    finally:
        await forwarder.aclose()

    assert all(result.verdict is Verdict.DELIVERED for result in results)
    arrivals = sorted(r.at for r in receiver.received)
    # A bucket of 5 a second: the first five at once, the next five spread over a second.
    assert arrivals[-1] - arrivals[0] >= 0.7


async def test_a_delivery_that_cannot_get_a_slot_in_time_waits_unsent(receiver: Receiver) -> None:
    receiver.answer = lambda r: Answer(delay=1.0)
    settings = settings_for(
        receiver.url,
        destination_max_in_flight=1,
        destination_timeout_seconds=1.5,
        processing_timeout_seconds=2.8,  # leaves 0.3 s of patience for a slot
    )
    forwarder = Forwarder(settings)
    try:
        first, second = await asyncio.gather(
            forwarder.forward("payhook:txn_first", body(1)),
            forwarder.forward("payhook:txn_second", body(2)),
        )
    finally:
        await forwarder.aclose()

    assert first.verdict is Verdict.DELIVERED
    assert (second.verdict, second.counted) == (Verdict.WAITING, False)
    assert receiver.seen() == {"payhook:txn_first": 1}


def test_retry_after_in_seconds_or_as_an_http_date_is_capped() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=90), usegmt=True)

    assert parse_retry_after("2", now, cap=300) == 2.0
    assert parse_retry_after(date, now, cap=300) == 90.0
    assert parse_retry_after("86400", now, cap=300) == 300.0
    assert parse_retry_after(format_datetime(now - timedelta(hours=1), usegmt=True), now, 300) == 0
    for unusable in (None, "", "soon", "-5", "1.5"):
        assert parse_retry_after(unusable, now, cap=300) is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_outages_spend_attempts_only_while_the_destination_answers_others() -> None:
    clock = Clock()
    health = DestinationHealth(3, probe_seconds=5, probe_max_seconds=20, clock=clock)
    sent = Admission(probe=False)

    # Nothing has answered yet: an outage is the destination's, not the transaction's.
    assert health.record(sent, outage=True) is False
    assert health.record(sent, outage=False) is True
    assert health.record(sent, outage=True) is True  # it answered a moment ago
    clock.now += 61
    assert health.record(sent, outage=True) is False  # but not for a minute
    assert health.snapshot().state is GateState.CLOSED
    assert health.record(sent, outage=True) is False  # the third in a row opens the gate
    assert health.snapshot().state is GateState.OPEN
    hold = health.hold_seconds()
    assert hold is not None
    assert 4 <= hold <= 5


async def test_failed_probes_double_the_interval_up_to_the_maximum() -> None:
    clock = Clock()
    health = DestinationHealth(1, probe_seconds=5, probe_max_seconds=12, clock=clock)
    health.record(Admission(probe=False), outage=True)
    intervals = []
    for _ in range(3):
        clock.now += health.hold_seconds() or 0
        admission = await health.admit(patience=1)
        assert admission == Admission(probe=True)
        health.record(admission, outage=True)
        intervals.append(health.hold_seconds())
    # 5 s, then 10 s, then 20 s capped at 12 s; each shortened by up to 20 % of jitter.
    low, middle, high = (i or 0 for i in intervals)
    assert (8 <= low <= 10, 9.6 <= middle <= 12, 9.6 <= high <= 12) == (True, True, True)
    clock.now += health.hold_seconds() or 0
    admission = await health.admit(patience=1)
    assert isinstance(admission, Admission)
    health.record(admission, outage=False)
    assert health.state is GateState.CLOSED
    assert health.hold_seconds() is None


async def test_an_abandoned_probe_lets_the_next_delivery_probe() -> None:
    clock = Clock()
    health = DestinationHealth(1, probe_seconds=5, probe_max_seconds=5, clock=clock)
    health.record(Admission(probe=False), outage=True)
    clock.now += 5
    probe = await health.admit(patience=1)
    assert probe == Admission(probe=True)

    health.abandon(probe)  # cancelled mid-request (the step's own timeout)

    assert await health.admit(patience=1) == Admission(probe=True)


def test_a_waiting_result_has_no_error_status() -> None:
    result = DeliveryResult(Verdict.WAITING, excerpt="destination unavailable", counted=False)
    assert result.error == "destination unavailable"


async def test_the_window_narrows_on_outages_and_widens_on_answers() -> None:
    window = SendWindow(8)
    for _ in range(8):
        await window.acquire()
    blocked = asyncio.ensure_future(window.acquire())
    await asyncio.sleep(0)
    assert not blocked.done()  # all eight are in flight

    window.failed()
    window.failed()
    assert window.limit == 2
    for _ in range(7):
        window.release()
    await asyncio.sleep(0)
    assert blocked.done()  # room again: 1 left in flight + the one let in = 2
    assert window.in_use == 2

    window.restart()
    window.answered()
    window.answered()
    assert window.limit == 3


async def test_a_waiter_that_gives_up_leaves_no_slot_taken() -> None:
    window = SendWindow(1)
    await window.acquire()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await window.acquire()
    window.release()
    assert window.in_use == 0
    await window.acquire()
    assert window.in_use == 1


async def test_after_an_outage_the_backlog_is_let_in_gradually(receiver: Receiver) -> None:
    forwarder = Forwarder(settings_for(receiver.url, destination_max_in_flight=16))
    try:
        receiver.stop()
        for n in range(2):  # the threshold: the gate opens
            await forwarder.forward(f"payhook:txn_down_{n}", body(n))
        receiver.start()
        receiver.answer = lambda r: Answer(delay=0.05)
        await asyncio.sleep(forwarder.health.hold_seconds() or 0)
        results = await asyncio.gather(
            *(forwarder.forward(f"payhook:txn_{n}", body(n)) for n in range(40))
        )
    finally:
        await forwarder.aclose()

    assert all(result.verdict is Verdict.DELIVERED for result in results)
    # The probe, then a window that starts at one and widens with each answer (each takes
    # 0.05 s): one alone, then two, then three or four... rather than sixteen at once.
    after_probe = sorted(r.at for r in receiver.received)[1:]
    assert after_probe[1] - after_probe[0] >= 0.04
    assert after_probe[7] - after_probe[0] >= 0.12
