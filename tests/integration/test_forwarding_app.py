"""Forwarding inside the app: /metrics and the console show what the destination is doing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.operator_app import ADMIN, TOKEN, app_client, operator_settings, post
from tests.support.receiver import SECRET, Receiver

pytestmark = pytest.mark.anyio


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def statuses(client: httpx.AsyncClient, ids: list[str]) -> list[str]:
    return [(await client.get(f"/v1/transactions/{key}")).json()[0]["status"] for key in ids]


async def wait_until(client: httpx.AsyncClient, ids: list[str], status: str) -> None:
    for _ in range(200):
        if await statuses(client, ids) == [status] * len(ids):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not all {status}: {await statuses(client, ids)}")


async def test_metrics_and_console_show_the_destination(
    sqlite_url: str, receiver: Receiver
) -> None:
    settings = operator_settings(
        sqlite_url,
        processing_delay_seconds=0.1,
        executor_poll_seconds=0.05,
        destination_url=receiver.url,
        destination_secret=SECRET,
        destination_timeout_seconds=1,
        destination_failure_threshold=2,
        destination_probe_seconds=30,
        destination_probe_max_seconds=30,
        max_retries=0,  # an attempt spent while the destination is down would be FAILED at once
    )
    async with app_client(settings, run_executor=True) as client:
        assert (await client.post("/console/login", data={"token": TOKEN})).status_code == 303
        await post(client, "fwd-1")
        await post(client, "fwd-2")
        await wait_until(client, ["fwd-1", "fwd-2"], "PROCESSED")
        healthy = samples((await client.get("/metrics", headers=ADMIN)).text)
        sending = (await client.get("/console/api/stats")).json()["destination"]
        page = (await client.get("/console")).text

        receiver.stop()
        down_keys = ["down-1", "down-2", "down-3"]
        for key in down_keys:
            await post(client, key)
        handled = await wait_handled(client, down_keys)
        failing = samples((await client.get("/metrics", headers=ADMIN)).text)
        down = (await client.get("/console/api/stats")).json()["destination"]
        waiting = await statuses(client, down_keys)

    delivered = ("payhook_destination_deliveries_total", (("outcome", "delivered"),))
    assert healthy[delivered] == 2
    assert healthy[("payhook_destination_latency_seconds_count", ())] == 2
    assert healthy[("payhook_destination_up", ())] == 1
    assert sending == "sending"
    assert "Destination" in page
    assert failing[("payhook_destination_up", ())] == 0
    assert failing[("payhook_destination_consecutive_failures", ())] >= 2
    assert down.startswith("failing: next probe in")
    # Each met the destination down (tried, or held back by the open gate), and none spent its
    # one attempt: nothing FAILED, they wait for the probe.
    assert waiting == ["PROCESSING"] * 3
    assert [timeline["transaction"]["attempts"] for timeline in handled] == [0, 0, 0]
    tried = [e["outcome"] for t in handled for e in t["events"] if e["kind"] == "attempt"]
    assert len(tried) >= 2  # the failures that opened the gate (threshold 2)
    assert set(tried) == {"deferred"}


async def wait_handled(client: httpx.AsyncClient, ids: list[str]) -> list[dict[str, Any]]:
    """The timelines of `ids` once the step has met each (a last error; at most 10 s)."""
    for _ in range(200):
        timelines = [
            (await client.get(f"/v1/transactions/{key}/timeline", headers=ADMIN)).json()
            for key in ids
        ]
        if all(t["transaction"]["last_error"] is not None for t in timelines):
            return timelines
        await asyncio.sleep(0.05)
    raise AssertionError(f"the step did not meet every one of {ids}: {timelines}")
