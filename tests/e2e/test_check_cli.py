"""`payhook check` against real `payhook serve` processes: a healthy one, and broken ones."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from payhook.cli import main
from tests.support.processes import PayhookProcess
from tests.support.services import free_port

pytestmark = pytest.mark.e2e

SECRET = "whsec_" + base64.b64encode(b"check-end-to-end-secret-32-byte").decode()
CHECKS = [
    "health",
    "ready",
    "new",
    "duplicate",
    "conflict",
    "bad input",
    "unknown id",
    "response time",
    "processed",
]


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PayhookProcess]:
    work = tmp_path_factory.mktemp("healthy")
    env = {"DATABASE_URL": f"sqlite:///{work / 'payhook.db'}", "PROCESSING_DELAY_SECONDS": "0.5"}
    api = PayhookProcess.serve(env, work).start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PayhookProcess]:
    """Signed webhooks, and a step that always fails: every transaction ends FAILED."""
    work = tmp_path_factory.mktemp("broken")
    env = {
        "DATABASE_URL": f"sqlite:///{work / 'payhook.db'}",
        "PROCESSING_DELAY_SECONDS": "0.2",
        "PROCESSING_STEP": "tests.support.steps:always_fail",
        "MAX_RETRIES": "0",
        "WEBHOOK_SIGNATURE_SCHEME": "standard-webhooks",
        "WEBHOOK_SECRET": SECRET,
    }
    api = PayhookProcess.serve(env, work).start()
    yield api
    api.stop()


def check(*args: str) -> tuple[int, list[str]]:
    """`payhook check`; answers up to 30 s pass its response-time check unless `args` say
    otherwise (the default, 1 s, is the operator's bound, not one a loaded CI machine keeps)."""
    options = ["check", "--within", "20", "--max-ms", "30000", *args]
    result = CliRunner().invoke(main, options, catch_exceptions=False)
    return result.exit_code, result.output.splitlines()


def verdicts(lines: list[str]) -> dict[str, str]:
    """{check name: PASS or FAIL} from the output's lines."""
    return {line[6:20].strip(): line[:4] for line in lines if line[:4] in ("PASS", "FAIL")}


def test_a_healthy_instance_passes_every_check(healthy: PayhookProcess) -> None:
    code, lines = check("--url", healthy.base_url, "--scheme", "none")
    assert code == 0, lines
    assert verdicts(lines) == dict.fromkeys(CHECKS, "PASS")
    assert lines[-1] == f"{healthy.base_url}: all checks passed"


def test_an_answer_slower_than_max_ms_fails_the_response_time_check(
    healthy: PayhookProcess,
) -> None:
    code, lines = check("--url", healthy.base_url, "--scheme", "none", "--max-ms", "0.001")
    assert code == 1, lines
    assert verdicts(lines) == {**dict.fromkeys(CHECKS, "PASS"), "response time": "FAIL"}
    [slow] = [line for line in lines if line.startswith("FAIL  response time")]
    assert "(≤ 0 ms)" in slow
    assert lines[-1] == f"{healthy.base_url}: 1 failed"


def test_transactions_that_end_failed_fail_the_check(broken: PayhookProcess) -> None:
    code, lines = check(
        "--url", broken.base_url, "--scheme", "standard-webhooks", "--secret", SECRET
    )
    assert code == 1, lines
    assert verdicts(lines) == {**dict.fromkeys(CHECKS, "PASS"), "processed": "FAIL"}
    assert any(line.startswith("FAIL  processed") and "FAILED after" in line for line in lines)
    assert lines[-1] == f"{broken.base_url}: 1 failed"


def test_a_refused_signature_fails_and_says_what_to_pass(broken: PayhookProcess) -> None:
    code, lines = check("--url", broken.base_url, "--scheme", "none", "--within", "2")
    assert code == 1, lines
    [new] = [line for line in lines if line.startswith("FAIL  new")]
    assert "401" in new
    assert "--scheme and --secret" in new


def test_nothing_listening_is_one_failed_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, lines = check("--url", url, "--scheme", "none")
    assert code == 1
    assert lines == [f"FAIL  reach          {url}: ConnectError: [Errno 111] Connection refused"]
