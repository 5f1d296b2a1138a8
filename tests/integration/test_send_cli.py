"""`payhook send` against a real `payhook serve` process that verifies Standard Webhooks."""

from __future__ import annotations

import base64
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from payhook.cli import main

pytestmark = pytest.mark.e2e

SECRET = "whsec_" + base64.b64encode(b"cli-end-to-end-secret-32-bytes!!").decode()
STARTUP_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_healthy(url: str, server: subprocess.Popen[bytes]) -> None:
    """Poll the health check, bounded in attempts and in time; fail if the server died."""
    deadline = time.monotonic() + STARTUP_SECONDS
    for _ in range(400):
        if server.poll() is not None or time.monotonic() > deadline:
            break
        try:
            if httpx.get(f"{url}/", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    pytest.fail(f"payhook serve did not become healthy within {STARTUP_SECONDS} s")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port, database = free_port(), tmp_path / "x.db"
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": f"sqlite:///{database}",
        "PROCESSING_DELAY_SECONDS": "1",
        "WEBHOOK_SIGNATURE_SCHEME": "standard-webhooks",
        "WEBHOOK_SECRET": SECRET,
        "LOG_FORMAT": "json",
    }
    payhook = Path(sys.executable).parent / "payhook"
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen([str(payhook), "serve"], env=env, stdout=log, stderr=log)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_healthy(url, process)
            yield url, database
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def send(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["send", *args], catch_exceptions=False)
    return result.exit_code, result.output


def stored_transactions(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        count: int = connection.execute("SELECT count(*) FROM transactions").fetchone()[0]
    connection.close()
    return count


def test_send_signed_duplicates_and_conflicts_are_answered_as_expected(
    server: tuple[str, Path],
) -> None:
    url, database = server
    args = ["--url", url, "--count", "3", "--rate", "100", "--duplicate", "--conflict"]
    code, output = send(*args, "--scheme", "standard-webhooks", "--secret", SECRET)
    assert code == 0, output
    assert "sent 9" in output
    assert "202=6 409=3; all as expected" in output
    assert stored_transactions(database) == 3


@pytest.mark.parametrize(
    "signing",
    [
        ["--scheme", "none"],
        ["--scheme", "standard-webhooks", "--secret", "whsec_" + base64.b64encode(b"x").decode()],
        ["--scheme", "stripe", "--secret", SECRET],
    ],
    ids=["unsigned", "wrong-secret", "wrong-scheme"],
)
def test_send_without_the_right_signature_is_refused(
    server: tuple[str, Path], signing: list[str]
) -> None:
    url, database = server
    code, output = send("--url", url, "--count", "2", *signing)
    assert code == 1, output
    assert "401=2; 2 unexpected" in output
    assert stored_transactions(database) == 0


def test_send_posts_to_the_port_serve_listens_on(server: tuple[str, Path]) -> None:
    """Without --url, `payhook send` reads PORT as `payhook serve` does (it posted to :8000)."""
    url, database = server
    env = {
        "PORT": url.rsplit(":", 1)[1],
        "HOST": "0.0.0.0",
        "WEBHOOK_SIGNATURE_SCHEME": "standard-webhooks",
        "WEBHOOK_SECRET": SECRET,
    }
    result = CliRunner().invoke(main, ["send", "--count", "2"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"sent 2 to {url}: 202=2" in result.output
    assert stored_transactions(database) == 2
