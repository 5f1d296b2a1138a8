"""Crashes: `kill -9` while transactions wait or run; several executors on one database."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import DELAY_SECONDS, server_env
from tests.support.payloads import transaction_body
from tests.support.processes import PayhookProcess
from tests.support.steps import read_calls

pytestmark = [pytest.mark.e2e, pytest.mark.real_time]


def statuses(base_url: str, keys: list[str]) -> Counter[str]:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        return Counter(client.get(f"/v1/transactions/{key}").json()[0]["status"] for key in keys)


def wait_all_processed(base_url: str, keys: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if statuses(base_url, keys) == Counter({"PROCESSED": len(keys)}):
            return
        time.sleep(0.2)
    raise AssertionError(f"not all processed: {statuses(base_url, keys)}")


def wait_called(calls_file: Path, keys: list[str], timeout: float) -> None:
    """Until the step has been called for every one of `keys`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if set(keys) <= {key for key, _ in read_calls(calls_file)}:
            return
        time.sleep(0.05)
    raise AssertionError(f"the step was not called for all of {keys}")


def test_kill_9_while_waiting_and_running_then_restart_processes_each_once(
    e2e_database_url: str, tmp_path: Path
) -> None:
    env = {
        **server_env(e2e_database_url, tmp_path),
        "PAYHOOK_TEST_SLOW_SECONDS": "3",
        "PROCESSING_TIMEOUT_SECONDS": "4",
    }
    server = PayhookProcess.serve(env, tmp_path).start()
    waiting = [f"wait-{uuid.uuid4().hex}" for _ in range(20)]
    running = [f"slow-{uuid.uuid4().hex}" for _ in range(3)]
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            for key in running:
                assert (
                    client.post("/v1/webhooks/transactions", json=transaction_body(key)).status_code
                    == 202
                )
            wait_called(tmp_path / "calls.txt", running, timeout=DELAY_SECONDS + 15)  # mid-step
            for key in waiting:
                assert (
                    client.post("/v1/webhooks/transactions", json=transaction_body(key)).status_code
                    == 202
                )
        server.kill()
        called = {key for key, _ in read_calls(tmp_path / "calls.txt")}
        waiting_at_kill = [key for key in waiting if key not in called]
        server.env["PAYHOOK_TEST_SLOW_SECONDS"] = "0"
        server.start()
        wait_all_processed(server.base_url, waiting, timeout=DELAY_SECONDS + 15)
        wait_all_processed(server.base_url, running, timeout=30)
    finally:
        server.stop()
    calls = read_calls(tmp_path / "calls.txt")
    per_id = Counter(key for key, _ in calls)
    # Posted 1.5 s before falling due and killed at once: some were still waiting (on a loaded
    # machine others may have run before the kill; they too must have run once).
    assert waiting_at_kill, "none was still waiting at the kill: the test proved nothing"
    assert all(per_id[key] == 1 for key in waiting), per_id
    # A step that was mid-flight when the process died runs again once its lease lapses (the
    # crash hid whether it finished); the retry is attempt 2, with the same idempotency key.
    for key in running:
        assert [attempt for k, attempt in calls if k == key] == [1, 2]
