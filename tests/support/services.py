"""Throwaway PostgreSQL and Redis servers, run as plain processes for tests and benchmarks.

PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` system user
and every server command runs through `runuser`.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class ServiceUnavailableHere(RuntimeError):
    """The server binaries are not installed on this machine."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def postgres_bindir() -> Path:
    if configured := os.environ.get("PG_BINDIR"):
        return Path(configured)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    if found := shutil.which("initdb"):
        return Path(found).parent
    raise ServiceUnavailableHere("PostgreSQL server binaries (initdb) are not installed")


def _as_postgres(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster in a temporary directory, on a loopback port."""

    bindir: Path
    datadir: Path
    port: int
    fsync: bool = False  # tests need crash-consistency of the app, not of the disk

    @classmethod
    def create(cls, root: Path, *, fsync: bool = False) -> PostgresServer:
        bindir = postgres_bindir()
        root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        server = cls(bindir, root / "data", free_port(), fsync)
        subprocess.run(
            _as_postgres(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(server.datadir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        return server

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.datadir}",
                "-c max_connections=300",
                f"-c fsync={'on' if self.fsync else 'off'}",
                "-c shared_buffers=256MB",
            ]
        )
        self._pg_ctl("start", "-w", "-t", "60", "-o", options, "-l", str(self.datadir / "log"))
        wait_for_port(self.port)

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("stop", "-w", "-m", mode)

    def restart(self) -> None:
        self.stop()
        self.start()

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stdout.strip()

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args]),
            check=True,
            capture_output=True,
        )


@contextmanager
def throwaway_postgres(*, fsync: bool = False) -> Iterator[PostgresServer]:
    """A started cluster in a new temporary directory, stopped and deleted afterwards.

    Raises ServiceUnavailableHere before creating anything when the binaries are missing.
    """
    postgres_bindir()
    root = Path(tempfile.mkdtemp(prefix="payhook-pg-"))
    try:
        server = PostgresServer.create(root, fsync=fsync)
        server.start()
        try:
            yield server
        finally:
            server.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class RedisServer:
    """A redis-server without persistence, on a loopback port; stopping it loses everything."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls) -> RedisServer:
        if shutil.which("redis-server") is None:
            raise ServiceUnavailableHere("redis-server is not installed")
        return cls(free_port())

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
