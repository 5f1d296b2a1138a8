"""payhook itself as a real process: `serve` or `worker`, started, killed and restarted by tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.services import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
PAYHOOK = Path(sys.executable).parent / "payhook"


@dataclass
class PayhookProcess:
    """One `payhook <command>` process with its own environment and log file."""

    command: str
    env: dict[str, str]
    log_path: Path
    port: int | None = None
    ready_text: str | None = None  # for a process without a port: a log line that says ready
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def serve(cls, env: dict[str, str], log_dir: Path, name: str = "api") -> PayhookProcess:
        port = free_port()
        return cls("serve", {**env, "PORT": str(port)}, log_dir / f"{name}.log", port)

    @classmethod
    def worker(cls, env: dict[str, str], log_dir: Path, name: str = "worker") -> PayhookProcess:
        # A Celery worker logs "<name> ready."; the embedded one "payhook.worker_started".
        ready = " ready." if "REDIS_URL" in env else "payhook.worker_started"
        return cls("worker", {"LOG_LEVEL": "INFO", **env}, log_dir / f"{name}.log", None, ready)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        """The process's environment: this one's, JSON logs, the test's variables."""
        return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "LOG_FORMAT": "json", **self.env}

    def start(self, timeout: float = 30.0) -> PayhookProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(PAYHOOK), self.command],
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            if self.port is not None:
                self._wait_healthy(timeout)
            elif self.ready_text is not None:
                self.wait_for_log(self.ready_text, timeout)
        except BaseException:
            # Never ready, or the run was interrupted meanwhile: nothing stops it later.
            self.kill()
            raise
        return self

    def wait_for_log(self, text: str, timeout: float) -> None:
        start = self.log_path.stat().st_size if self.log_path.exists() else 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"payhook {self.command} exited: {self.log_path.read_text()}")
            with self.log_path.open("rb") as log:
                log.seek(start)
                if text.encode() in log.read():
                    return
            time.sleep(0.05)
        raise TimeoutError(f"payhook {self.command} did not log {text!r} within {timeout}s")

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"payhook {self.command} exited: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"payhook {self.command} not healthy after {timeout}s")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like a crash."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None


@dataclass
class Topology:
    """An API process and, on Celery, the worker it dispatches to."""

    api: PayhookProcess
    worker: PayhookProcess | None


@contextmanager
def started(env: dict[str, str], work: Path, redis_url: str | None = None) -> Iterator[Topology]:
    """`payhook serve` on `env`; with `redis_url`, a Celery worker too, ready first. Both are
    stopped when the block ends, whatever happened in it."""
    worker = None
    if redis_url is not None:
        env = {**env, "REDIS_URL": redis_url}
        worker = PayhookProcess.worker(env, work).start()
    try:
        api = PayhookProcess.serve(env, work).start()
        try:
            yield Topology(api, worker)
        finally:
            api.stop()
    finally:
        if worker is not None:
            worker.stop()
