"""What an operator reads at INFO: one line per delivery and one per processing outcome."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import PayhookProcess

pytestmark = pytest.mark.e2e


def post(base_url: str, transaction_id: str, amount: str = "150.50") -> int:
    raw = (
        f'{{"transaction_id":"{transaction_id}","source_account":"acc_src",'
        f'"destination_account":"acc_dst","amount":{amount},"currency":"INR"}}'
    )
    headers = {"content-type": "application/json"}
    url = f"{base_url}/v1/webhooks/transactions"
    return httpx.post(url, content=raw, headers=headers).status_code


def lines(log: Path, event_prefix: str) -> list[dict[str, Any]]:
    found = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in found if line["event"].startswith(event_prefix)]


def test_every_delivery_and_every_outcome_is_one_line(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'payhook.db'}",
        "PROCESSING_DELAY_SECONDS": "0.2",
        "PROCESSING_STEP": "tests.support.steps:record_and_script",
        "PAYHOOK_TEST_CALLS": str(tmp_path / "calls.txt"),
        "MAX_RETRIES": "1",
        "RETRY_BACKOFF_SECONDS": "0.1",
    }
    api = PayhookProcess.serve(env, tmp_path).start()
    try:
        assert [post(api.base_url, "log-ok"), post(api.base_url, "log-ok")] == [202, 202]
        assert post(api.base_url, "log-ok", amount="9") == 409
        assert post(api.base_url, "fail-always-log") == 202
        deadline = time.monotonic() + 30
        while len(lines(api.log_path, "processing.")) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        api.stop()
    deliveries = lines(api.log_path, "webhook.delivery")
    assert [(d["transaction_id"], d["outcome"], d["level"]) for d in deliveries] == [
        ("log-ok", "accepted", "info"),
        ("log-ok", "duplicate", "info"),
        ("log-ok", "conflict", "info"),
        ("fail-always-log", "accepted", "info"),
    ]
    assert all(d["request_id"] for d in deliveries)
    outcomes = sorted(
        (o["transaction_id"], o["event"], o["attempt"]) for o in lines(api.log_path, "processing.")
    )
    assert outcomes == [
        ("fail-always-log", "processing.attempt_failed", 1),
        ("fail-always-log", "processing.failed", 2),
        ("log-ok", "processing.processed", 1),
    ]
