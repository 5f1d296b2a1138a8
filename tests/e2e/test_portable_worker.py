"""`payhook worker` (embedded) stops cleanly on Ctrl+C and SIGTERM without POSIX-only asyncio.

asyncio's loop.add_signal_handler does not exist on Windows (NotImplementedError). The worker
runs here as a real process in which that method raises just as it does there, and gets real
signals.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT, PayhookProcess

pytestmark = pytest.mark.e2e

# The worker command, with asyncio's loops lacking add_signal_handler as on Windows.
AS_ON_WINDOWS = """
import asyncio, sys

def unsupported(self, *args, **kwargs):
    raise NotImplementedError("add_signal_handler: not on Windows")

asyncio.AbstractEventLoop.add_signal_handler = unsupported
asyncio.BaseEventLoop.add_signal_handler = unsupported
asyncio.SelectorEventLoop.add_signal_handler = unsupported

from payhook.cli import main
sys.exit(main(["worker"]))
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_embedded_worker_stops_on_signals_without_add_signal_handler(
    tmp_path: Path, signum: signal.Signals
) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'payhook.db'}"}
    worker = PayhookProcess.worker(env, tmp_path)
    script = tmp_path / "worker_as_on_windows.py"
    script.write_text(AS_ON_WINDOWS)
    worker.command = "worker"
    with worker.log_path.open("ab") as log:
        worker.process = subprocess.Popen(
            [sys.executable, str(script)],
            env=worker.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    worker.wait_for_log("payhook.worker_started", timeout=30)
    worker.process.send_signal(signum)
    assert worker.process.wait(timeout=30) == 0, worker.log_path.read_text()
    assert "payhook.worker_stopped" in worker.log_path.read_text()
