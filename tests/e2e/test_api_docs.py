"""docs/API.md's samples, run as written against a real `payhook serve`.

Every `python`, `js` and `sh` block in the document is run (Python with this interpreter,
JavaScript under Node as an ES module, shell with bash and curl), in document order, with
PAYHOOK_URL, ADMIN_TOKEN and STRIPE_WEBHOOK_SECRET pointing at the server. A sample that gets
an answer it does not expect raises, so a non-zero exit fails the test; the server's state is
checked as well.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import missing_service
from tests.support.processes import REPO_ROOT, PayhookProcess

pytestmark = pytest.mark.e2e

API_MD = REPO_ROOT / "docs" / "API.md"
TOKEN = "api-docs-test-admin-token-0123456789"
STRIPE_SECRET = "whsec_api_docs_test_secret_0123456789"
FAILED_ONE = "fail-always-docs"
BLOCK = re.compile(r"^```(python|js|sh)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def samples() -> list[tuple[str, str]]:
    return [(found.group(1), found.group(2)) for found in BLOCK.finditer(API_MD.read_text())]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PayhookProcess]:
    """A server holding one FAILED transaction for the operator samples to find and replay."""
    work = tmp_path_factory.mktemp("api-docs")
    env = {
        "DATABASE_URL": f"sqlite:///{work / 'payhook.db'}",
        "ADMIN_TOKEN": TOKEN,
        "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        "PROCESSING_DELAY_SECONDS": "0.3",
        "PROCESSING_STEP": "tests.support.steps:record_and_script",
        "PAYHOOK_TEST_CALLS": str(work / "calls.txt"),
        "MAX_RETRIES": "0",
    }
    api = PayhookProcess.serve(env, work).start()
    body = {
        "transaction_id": FAILED_ONE,
        "source_account": "acc_user_789",
        "destination_account": "acc_merchant_456",
        "amount": 5,
        "currency": "INR",
    }
    assert httpx.post(f"{api.base_url}/v1/webhooks/transactions", json=body).status_code == 202
    deadline = time.monotonic() + 20
    while httpx.get(f"{api.base_url}/v1/transactions/{FAILED_ONE}").json()[0]["status"] != "FAILED":
        assert time.monotonic() < deadline, "the scripted failure did not end FAILED"
        time.sleep(0.1)
    yield api
    api.stop()


def run(language: str, code: str, work: Path, base_url: str) -> str:
    env = {
        **os.environ,
        "PAYHOOK_URL": base_url,
        "ADMIN_TOKEN": TOKEN,
        "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
    }
    if language == "python":
        command = [sys.executable, "-c", code]
    elif language == "js":
        node = shutil.which("node")
        if node is None:
            missing_service("node is not installed (Debian: apt-get install nodejs)")
        script = work / f"sample-{len(list(work.iterdir()))}.mjs"
        script.write_text(code)
        command = [str(node), str(script)]
    else:
        command = ["bash", "-e", "-c", code]
    result = subprocess.run(
        command, env=env, cwd=work, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"{language} sample failed:\n{code}\n{result.stderr}"
    return result.stdout


def test_the_document_has_samples_in_every_language() -> None:
    languages = [language for language, _ in samples()]
    assert languages.count("python") >= 2
    assert languages.count("js") >= 2
    assert languages.count("sh") >= 2
    assert "```powershell" in API_MD.read_text()


def test_every_sample_runs_against_a_real_server(server: PayhookProcess, tmp_path: Path) -> None:
    outputs = [run(language, code, tmp_path, server.base_url) for language, code in samples()]
    everything = "\n".join(outputs)
    assert "'duplicate': False" in everything  # the Python sample's first answer
    assert "Transaction conflict - Transaction" in everything  # the JavaScript problem
    assert '"duplicate": false' in everything  # cURL's first answer
    assert "\n409\n" in f"\n{everything}"  # cURL's conflicting re-delivery
    assert "payhook_deliveries_total" in everything  # cURL's /metrics
    assert "'verdict': 'applied'" in everything  # the Stripe sample's signed event
    assert "stripe captured 10.99 USD" in everything  # ...folded into its payment
    headers = {"Authorization": f"Bearer {TOKEN}"}
    timeline = httpx.get(
        f"{server.base_url}/v1/transactions/{FAILED_ONE}/timeline", headers=headers
    )
    actions = [e for e in timeline.json()["events"] if e["kind"] == "operator_action"]
    assert actions, "the Python operator sample replays the FAILED transaction"
    assert {(a["actor"], a["reason"]) for a in actions} >= {("alice", "provider fixed")}
    curl = httpx.get(f"{server.base_url}/v1/transactions/txn_curl_sample_1")
    assert '"amount": 150.50,' in curl.text
