"""Replay with the real executor, and /metrics after traffic, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.operator_app import ADMIN, app_client, operator_settings, post
from tests.support.steps import read_calls

pytestmark = pytest.mark.anyio


@pytest.fixture
def scripted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The scripted step's call log and fail flag; the flag starts raised."""
    monkeypatch.setenv("PAYHOOK_TEST_CALLS", str(tmp_path / "calls.txt"))
    flag = tmp_path / "fail.flag"
    flag.touch()
    monkeypatch.setenv("PAYHOOK_TEST_FAIL_FLAG", str(flag))
    return flag


def lower(flag: Path) -> None:
    """Let fail-until-file-* ids succeed from now on."""
    flag.unlink()


def fast_failing(database_url: str) -> dict[str, object]:
    return {
        "database_url": database_url,
        "processing_step": "tests.support.steps:record_and_script",
        "processing_delay_seconds": 0.2,
        "max_retries": 0,
        "retry_backoff_seconds": 0.1,
        "executor_poll_seconds": 0.05,
    }


async def wait_for_status(client: httpx.AsyncClient, transaction_id: str, status: str) -> None:
    for _ in range(200):
        found = (await client.get(f"/v1/transactions/{transaction_id}")).json()[0]
        if found["status"] == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{transaction_id} never became {status}: {found}")


async def test_a_replayed_failure_runs_again_and_can_succeed(
    database_url: str, scripted: Path
) -> None:
    settings = operator_settings(**fast_failing(database_url))  # type: ignore[arg-type]
    async with app_client(settings, run_executor=True) as client:
        await post(client, "fail-until-file-1")
        await wait_for_status(client, "fail-until-file-1", "FAILED")
        lower(scripted)
        replay = await client.post("/v1/transactions/fail-until-file-1/retry", headers=ADMIN)
        assert replay.json()["retried"] == 1
        await wait_for_status(client, "fail-until-file-1", "PROCESSED")
        calls = read_calls(scripted.parent / "calls.txt")
        assert calls == [("fail-until-file-1", 1), ("fail-until-file-1", 1)]
        timeline = await client.get("/v1/transactions/fail-until-file-1/timeline", headers=ADMIN)
        kinds = [(e["kind"], e["outcome"] or e["action"]) for e in timeline.json()["events"]]
        assert kinds == [
            ("delivery", "accepted"),
            ("attempt", "failed"),
            ("operator_action", "retry"),
            ("attempt", "succeeded"),
        ]


Key = tuple[str, tuple[tuple[str, str], ...]]


def samples(text: str) -> dict[Key, float]:
    """Every sample of the exposition text, keyed by name and labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


CHECKED_OUT = ("payhook_db_pool_connections", (("state", "checked_out"),))


async def metrics_at_rest(client: httpx.AsyncClient) -> dict[Key, float]:
    """/metrics read at a moment no pool connection is checked out. The executor's poll (every
    0.05 s) holds one for a moment, so a read may catch it; a leaked connection never lets the
    gauge get back to 0."""
    for _ in range(100):
        response = await client.get("/metrics", headers=ADMIN)
        assert response.headers["content-type"].startswith("text/plain")
        found = samples(response.text)
        if found[CHECKED_OUT] == 0:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"a pool connection stayed checked out: {found[CHECKED_OUT]}")


async def test_metrics_parse_and_count_what_happened(database_url: str, scripted: Path) -> None:
    lower(scripted)
    settings = operator_settings(**fast_failing(database_url))  # type: ignore[arg-type]
    async with app_client(settings, run_executor=True) as client:
        await post(client, "m-1")
        await post(client, "m-1")
        await post(client, "m-1", amount="2")
        await post(client, "fail-always-m")
        bad = await client.post("/v1/webhooks/transactions", content=b"{}", headers={})
        assert bad.status_code == 415
        await wait_for_status(client, "m-1", "PROCESSED")
        await wait_for_status(client, "fail-always-m", "FAILED")
        found = await metrics_at_rest(client)
    assert found[("payhook_deliveries_total", (("outcome", "accepted"),))] == 2
    assert found[("payhook_deliveries_total", (("outcome", "duplicate"),))] == 1
    assert found[("payhook_deliveries_total", (("outcome", "conflict"),))] == 1
    assert found[("payhook_deliveries_rejected_total", (("reason", "415"),))] == 1
    assert found[("payhook_ingest_seconds_count", ())] == 5
    assert found[("payhook_transactions", (("status", "PROCESSED"),))] == 1
    assert found[("payhook_transactions", (("status", "FAILED"),))] == 1
    assert found[("payhook_processing_attempts_total", (("outcome", "succeeded"),))] == 1
    assert found[("payhook_processing_attempts_total", (("outcome", "failed"),))] == 1
    assert found[("payhook_transactions_failed_total", ())] == 1
    assert found[("payhook_lateness_seconds_count", ())] == 1
    assert found[("payhook_due_backlog", ())] == 0
    assert found[("payhook_oldest_due_age_seconds", ())] == 0
    # metrics_at_rest saw no connection checked out: the requests' and attempts' connections
    # went back to the pool, and it kept them there.
    assert found[("payhook_db_pool_connections", (("state", "idle"),))] >= 1
    assert found[("payhook_db_pool_connections", (("state", "size"),))] == settings.db_pool_size
