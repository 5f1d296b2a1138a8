"""`make bench`: payhook's speed targets, measured against a ceiling taken in the same run.

Starts a throwaway PostgreSQL (fsync on) and Redis, then runs, printing progress as it goes:
ingest scenarios under wrk (64 connections, 10 s, unique ids) as ratios to a FastAPI no-op with
the same request model; a burst of 10,000 transactions with a 5 s delay on the embedded and the
Celery executor; the same burst forwarded to a local receiver answering in 5 ms (DESTINATION_URL);
1,000 transactions/s for 60 s with a 30 s delay (resident memory sampled);
and ingest rate and lateness as the table grows to 1,000,000 rows. Writes a table to stdout,
and `benchmarks/results/latest.json` and `latest.png`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import text
from tests.support.processes import PAYHOOK, REPO_ROOT, PayhookProcess
from tests.support.receiver import SECRET
from tests.support.services import (
    PostgresServer,
    RedisServer,
    free_port,
    throwaway_postgres,
    wait_for_port,
)

from payhook.config import Settings
from payhook.db import create_engine
from payhook.migrate import upgrade
from payhook.providers import stripe_samples
from payhook.webhooks import signatures

WRK_SCRIPT = Path(__file__).parent / "wrk" / "unique_post.lua"
EVENTS_SCRIPT = Path(__file__).parent / "wrk" / "provider_events.lua"
DELIVERY_SCRIPT = Path(__file__).parent / "wrk" / "forwarded_delivery.lua"
RESULTS = Path(__file__).parent / "results"
CONNECTIONS = 64
INGEST_SECONDS = 8
CEILING = "ceiling: FastAPI no-op"
STRIPE_CEILING = "ceiling: FastAPI no-op, Stripe body"
STRIPE_SECRET = "whsec_bench_stripe_endpoint"  # noqa: S105 (a throwaway endpoint's)
STRIPE_EVENTS = 60_000  # more than a 10 s run sends: each event is posted once


@dataclass
class IngestResult:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    percentiles_ms: dict[str, float] = field(default_factory=dict)
    ratio: float | None = None
    rounds_rps: list[float] = field(default_factory=list)
    cpu_us: float | None = None  # the server's CPU time per request (its processes, all cores)


@dataclass
class LatenessResult:
    name: str
    count: int
    p50_s: float
    p99_s: float
    max_s: float
    histogram: list[float] = field(default_factory=list)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    rss_series_mb: list[float] = field(default_factory=list)
    per_second: float | None = None  # forwarding: deliveries per second, first due to last
    ceiling_per_second: float | None = None  # forwarding: the receiver alone under wrk, req/s
    stored_in_s: float | None = None  # forwarding: first to last stored (when they fell due)


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def wrk(
    url: str,
    seconds: int,
    script: Path = WRK_SCRIPT,
    env: dict[str, str] | None = None,
    connections: int = CONNECTIONS,
) -> IngestResult:
    """Run wrk with one of the project's Lua scripts and read its figures."""
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=seconds + 120,
        check=True,
    )
    figures: dict[str, float] = {}
    errors, rps = 0, 0.0
    for line in result.stdout.splitlines():
        parts = line.split()
        if line.startswith("PERCENTILE"):
            figures[parts[1]] = int(parts[2]) / 1000
        elif line.startswith("REQUESTS"):
            errors = int(parts[3])
        elif line.startswith("Requests/sec:"):
            rps = float(parts[1])
    return IngestResult("", rps, figures["50"], figures["99"], errors, figures)


@contextmanager
def server(command: list[str], port: int, log: Path, env: dict[str, str]) -> Iterator[int]:
    """Any HTTP server process, up until the block ends; yields its pid."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(port, timeout=60)
        time.sleep(0.5)
        yield process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def rss_mb(pid: int) -> dict[str, float]:
    """Resident memory of a process and its children, per process, in MB."""
    found = {}
    for candidate in [pid, *_children(pid)]:
        try:
            status = Path(f"/proc/{candidate}/status").read_text()
        except OSError:
            continue
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        found[str(candidate)] = kb / 1024
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process and its children.

    Per request, it says what the server costs even when other work on the machine takes the
    cores the throughput figures need: a shared machine moves req/s far more than CPU/request.
    """
    ticks = 0
    for candidate in [pid, *_children(pid)]:
        try:
            stat = Path(f"/proc/{candidate}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        text_ = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    kids = [int(child) for child in text_.split()]
    return kids + [grandchild for kid in kids for grandchild in _children(kid)]


class Bench:
    def __init__(self, work: Path, postgres: PostgresServer, redis: RedisServer) -> None:
        self.work = work
        self.postgres = postgres
        self.redis = redis
        self.ingest: list[IngestResult] = []
        self.lateness: list[LatenessResult] = []
        self.growth: list[dict[str, float]] = []

    def fresh_database(self, name: str) -> str:
        self.postgres.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.postgres.psql(f"CREATE DATABASE {name}")
        url = self.postgres.url_for(name)
        asyncio.run(upgrade(Settings(database_url=url)))
        return url

    def payhook_env(self, url: str, **extra: str) -> dict[str, str]:
        return {"DATABASE_URL": url, "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json", **extra}

    # ---- ingest -------------------------------------------------------------------------
    def measure(
        self,
        name: str,
        command: list[str],
        port: int,
        env: dict[str, str],
        wrk_env: dict[str, str],
        script: Path = WRK_SCRIPT,
    ) -> IngestResult:
        with server(command, port, self.work / "ingest.log", env) as pid:
            wrk(f"http://127.0.0.1:{port}", 2, script, wrk_env)  # warm-up
            before = cpu_seconds(pid)
            result = wrk(f"http://127.0.0.1:{port}", INGEST_SECONDS, script, wrk_env)
            used = cpu_seconds(pid) - before
        result.name = name
        result.cpu_us = 1e6 * used / max(result.rps * INGEST_SECONDS, 1.0)
        say(
            f"  {name}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.1f} ms, "
            f"p99 {result.p99_ms:.1f} ms, {result.cpu_us:,.0f} us of server CPU a request"
        )
        return result

    def ingest_scenarios(self) -> list[tuple[str, list[str], dict[str, str], dict[str, str]]]:
        """(name, command, server env, wrk env) for each scenario, with fresh databases."""
        uvicorn = [sys.executable, "-m", "uvicorn", "benchmarks.noop_app:app"]
        uvicorn += ["--log-level", "warning", "--no-access-log", "--port"]
        granian = [str(Path(sys.executable).parent / "granian"), "--interface", "asgi"]
        granian += ["--factory", "--log-level", "warning", "--no-ws", "payhook.app:create_app"]
        serve = [str(PAYHOOK), "serve"]
        quiet = {"PROCESSING_DELAY_SECONDS": "3600"}
        sqlite = f"sqlite:///{self.work / f'bench-{time.monotonic_ns()}.db'}"
        return [
            (CEILING, uvicorn, {}, {}),
            (
                "PostgreSQL, unique ids",
                serve,
                self.payhook_env(self.fresh_database("pg1"), **quiet),
                {},
            ),
            (
                # What operators run: a JSON line per delivery, written to the log file.
                "PostgreSQL, unique ids, LOG_LEVEL=INFO",
                serve,
                self.payhook_env(self.fresh_database("pg1i"), LOG_LEVEL="INFO", **quiet),
                {},
            ),
            (
                "PostgreSQL, 50% re-deliveries",
                serve,
                self.payhook_env(self.fresh_database("pg2"), **quiet),
                {"DUPLICATE_EVERY": "2"},
            ),
            (
                "PostgreSQL, WEB_CONCURRENCY=2",
                serve,
                self.payhook_env(self.fresh_database("pg3"), WEB_CONCURRENCY="2", **quiet),
                {},
            ),
            (
                "PostgreSQL, unique ids, granian",
                granian,
                self.payhook_env(self.fresh_database("pg4"), **quiet),
                {},
            ),
            ("SQLite (embedded default)", serve, self.payhook_env(sqlite, **quiet), {}),
        ]

    def run_ingest(self, rounds: int) -> None:
        """Every scenario once per round, rounds interleaved; the median round is reported."""
        runs: dict[str, list[IngestResult]] = {}
        for number in range(1, rounds + 1):
            say(f"ingest, round {number} of {rounds}")
            for name, command, env, wrk_env in self.ingest_scenarios():
                port = free_port()
                command = _with_port(command, port)
                result = self.measure(name, command, port, {**env, "PORT": str(port)}, wrk_env)
                runs.setdefault(name, []).append(result)
        for results in runs.values():
            self.ingest.append(_median(results))
        ceiling = next(r for r in self.ingest if r.name == CEILING)
        for result in self.ingest:
            result.ratio = result.rps / ceiling.rps

    def run_stripe(self, rounds: int) -> None:
        """Signed Stripe events of a few KB, each once, against the no-op given the same body."""
        events = self.work / "stripe-events.tsv"
        count, size = write_stripe_events(events, STRIPE_EVENTS)
        say(f"stripe: {count:,} signed events, {size / count:,.0f} bytes each on average")
        uvicorn = [sys.executable, "-m", "uvicorn", "benchmarks.noop_app:app"]
        uvicorn += ["--log-level", "warning", "--no-access-log", "--port"]
        runs: dict[str, list[IngestResult]] = {}
        for number in range(1, rounds + 1):
            say(f"stripe ingest, round {number} of {rounds}")
            env = self.payhook_env(
                self.fresh_database("stripe"),
                PROCESSING_DELAY_SECONDS="3600",
                STRIPE_WEBHOOK_SECRET=STRIPE_SECRET,
                WEBHOOK_TOLERANCE_SECONDS="86400",  # the events were signed before the run
            )
            scenarios = [
                (STRIPE_CEILING, uvicorn, {}),
                ("PostgreSQL, Stripe events", [str(PAYHOOK), "serve"], env),
            ]
            for name, command, server_env in scenarios:
                port = free_port()
                result = self.measure(
                    name,
                    _with_port(command, port),
                    port,
                    {**server_env, "PORT": str(port)},
                    {"EVENTS_FILE": str(events)},
                    EVENTS_SCRIPT,
                )
                runs.setdefault(name, []).append(result)
        medians = [_median(results) for results in runs.values()]
        for result in medians:
            result.ratio = result.rps / medians[0].rps
            self.ingest.append(result)

    # ---- lateness -----------------------------------------------------------------------
    def run_burst(self, executor: str) -> None:
        name = f"burst 10,000 at 5 s delay, {executor}"
        say(name)
        url = self.fresh_database(f"burst_{executor}")
        port = free_port()
        env = self.payhook_env(url, PORT=str(port), PROCESSING_DELAY_SECONDS="5")
        processes = []
        if executor == "celery":
            env["REDIS_URL"] = self.redis.url
            worker_env = {**env, "LOG_LEVEL": "INFO"}  # its "ready." line is logged at INFO
            worker = PayhookProcess.worker(worker_env, self.work, "burst-worker").start()
            processes.append(worker)
        try:
            with server([str(PAYHOOK), "serve"], port, self.work / f"{name}.log", env) as pid:
                self.send_count(f"http://127.0.0.1:{port}", url, 10_000)
                peak = self.wait_processed(url, 10_000, pid, timeout=60)
        finally:
            for process in processes:
                process.stop()
        self.lateness.append(self.lateness_of(name, url, 5.0, peak))

    def run_forward_burst(self, executor: str) -> None:
        """A burst of 10,000 forwarded to a receiver answering in 5 ms, by one process."""
        name = f"burst 10,000 forwarded (5 ms answers), {executor}"
        say(name)
        url = self.fresh_database(f"forward_{executor}")
        port, receiver_port = free_port(), free_port()
        receiver = [sys.executable, "-m", "uvicorn", "benchmarks.receiver_app:app"]
        receiver += ["--log-level", "warning", "--no-access-log", "--port", str(receiver_port)]
        env = self.payhook_env(
            url,
            PORT=str(port),
            PROCESSING_DELAY_SECONDS="5",
            DESTINATION_URL=f"http://127.0.0.1:{receiver_port}/payhook",
            DESTINATION_SECRET=SECRET,
        )
        processes = []
        if executor == "celery":
            env["REDIS_URL"] = self.redis.url
            worker_env = {**env, "LOG_LEVEL": "INFO"}
            worker = PayhookProcess.worker(worker_env, self.work, "forward-worker").start()
            processes.append(worker)
        try:
            with server(receiver, receiver_port, self.work / "receiver.log", {}):
                # The ceiling: the receiver alone, as many connections as payhook may use.
                in_flight = Settings.model_fields["destination_max_in_flight"].default
                receiver_url = f"http://127.0.0.1:{receiver_port}"
                ceiling = wrk(receiver_url, 5, DELIVERY_SCRIPT, connections=in_flight)
                say(f"  the receiver alone: {ceiling.rps:,.0f} req/s, {ceiling.errors} errors")
                with server([str(PAYHOOK), "serve"], port, self.work / f"{name}.log", env) as pid:
                    self.send_count(f"http://127.0.0.1:{port}", url, 10_000)
                    # On a loaded machine wrk may store fewer within its minute: measure those.
                    stored = asyncio.run(_counts(url))[1]
                    peak = self.wait_processed(url, stored, pid, timeout=300)
        finally:
            for process in processes:
                process.stop()
        result = self.lateness_of(name, url, 5.0, peak)
        result.per_second, result.stored_in_s = asyncio.run(_deliveries_per_second(url))
        result.ceiling_per_second = ceiling.rps
        say(
            f"  {result.per_second:,.0f} deliveries/s from the first due to the last delivered; "
            f"wrk stored them in {result.stored_in_s:.1f} s"
        )
        self.lateness.append(result)

    def send_count(self, base_url: str, url: str, count: int) -> None:
        """wrk at full speed until `count` transactions are stored (wrk cannot stop by count)."""
        load = subprocess.Popen(
            ["wrk", "-t1", f"-c{CONNECTIONS}", "-d60s", "-s", str(WRK_SCRIPT), base_url],
            env={**os.environ, "COUNT": str(count)},
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while asyncio.run(_counts(url))[1] < count and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            load.terminate()
            load.wait(timeout=10)

    def run_sustained(self) -> None:
        name = "1,000/s for 60 s at 30 s delay, embedded"
        say(f"{name} (about 100 s)")
        url = self.fresh_database("sustained")
        port = free_port()
        env = self.payhook_env(url, PORT=str(port), PROCESSING_DELAY_SECONDS="30")
        with server([str(PAYHOOK), "serve"], port, self.work / "sustained.log", env) as pid:
            load = subprocess.Popen(
                ["wrk", "-t1", "-c50", "-d60s", "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}"],
                env={**os.environ, "RATE": "1000", "CONNECTIONS": "50"},
                stdout=subprocess.DEVNULL,
            )
            series = []
            while load.poll() is None:
                series.append(sum(rss_mb(pid).values()))
                time.sleep(5)
            peak = self.wait_processed(url, None, pid, timeout=60)
        result = self.lateness_of(name, url, 30.0, peak)
        result.rss_series_mb = series
        self.lateness.append(result)

    def wait_processed(
        self, url: str, expected: int | None, pid: int, timeout: float
    ) -> dict[str, float]:
        """Wait until nothing is pending; return the peak RSS seen per process."""
        deadline = time.monotonic() + timeout
        peak: dict[str, float] = {}
        while time.monotonic() < deadline:
            for key, value in rss_mb(pid).items():
                peak[key] = max(peak.get(key, 0.0), value)
            pending, total = asyncio.run(_counts(url))
            if pending == 0 and total >= (expected or 1):
                return peak
            time.sleep(0.5)
        raise TimeoutError(f"still pending after {timeout}s")

    def lateness_of(
        self, name: str, url: str, delay: float, peak: dict[str, float]
    ) -> LatenessResult:
        values = asyncio.run(_lateness(url, delay))
        values.sort()
        result = LatenessResult(
            name,
            len(values),
            values[len(values) // 2],
            values[int(0.99 * (len(values) - 1))],
            values[-1],
            values[:: max(1, len(values) // 2000)],
            {f"pid {k}": round(v, 1) for k, v in peak.items()},
        )
        say(
            f"  {result.count:,} processed; lateness p50 {result.p50_s:.3f} s, "
            f"p99 {result.p99_s:.3f} s, max {result.max_s:.3f} s; peak RSS {result.peak_rss_mb}"
        )
        return result

    # ---- growth -------------------------------------------------------------------------
    def run_growth(self, levels: list[int]) -> None:
        """One server through the whole curve, so cached plans and pools age as in production."""
        say("growth: ingest and lateness as the table fills to 1,000,000 rows")
        url = self.fresh_database("growth")
        port = free_port()
        env = self.payhook_env(url, PORT=str(port), PROCESSING_DELAY_SECONDS="2")
        filled = 0
        with server([str(PAYHOOK), "serve"], port, self.work / "growth.log", env) as pid:
            for level in levels:
                if level > filled:
                    say(f"  filling to {level:,} rows")
                    self.postgres.psql(_fill_sql(filled, level), database="growth")
                    filled = level
                ingest = wrk(f"http://127.0.0.1:{port}", 8)
                self.wait_processed(url, None, pid, timeout=60)
                self.growth.append(self.growth_point(url, level, ingest))

    def growth_point(self, url: str, level: int, ingest: IngestResult) -> dict[str, float]:
        lateness = sorted(asyncio.run(_lateness(url, 2.0)))
        asyncio.run(_mark_measured(url))
        point = {
            "rows": level,
            "rps": ingest.rps,
            "p99_ms": ingest.p99_ms,
            "lateness_p99_s": lateness[int(0.99 * (len(lateness) - 1))],
        }
        say(
            f"  {level:>9,} rows: {ingest.rps:,.0f} req/s, p99 {ingest.p99_ms:.1f} ms, "
            f"lateness p99 {point['lateness_p99_s']:.3f} s"
        )
        return point


def _median(results: list[IngestResult]) -> IngestResult:
    median = sorted(results, key=lambda r: r.rps)[len(results) // 2]
    median.rounds_rps = [r.rps for r in results]
    return median


def write_stripe_events(path: Path, wanted: int) -> tuple[int, int]:
    """Stripe events of every kind of payment, shuffled, each signed as Stripe signs it.

    One line each: header name, header value, body (the event's JSON on one line).
    """
    rng = random.Random(2026)
    bodies: list[bytes] = []
    while len(bodies) < wanted:
        stories = stripe_samples.stories(1000, rng)
        bodies += [json.dumps(event).encode() for story in stories for event in story.events]
    rng.shuffle(bodies)
    scheme = signatures.Stripe([STRIPE_SECRET], tolerance=86_400)
    now = int(time.time())
    size = 0
    with path.open("wb") as out:
        for body in bodies[:wanted]:
            ((name, value),) = scheme.sign(body, timestamp=now, msg_id="").items()
            out.write(f"{name}\t{value}\t".encode() + body + b"\n")
            size += len(body)
    return wanted, size


def _with_port(command: list[str], port: int) -> list[str]:
    """uvicorn takes the port as its last argument here; granian as `--port` before the app."""
    if command[-1] == "--port":
        return [*command, str(port)]
    if "granian" in command[0]:
        return [*command[:-1], "--port", str(port), command[-1]]
    return command


def _fill_sql(start: int, stop: int) -> str:
    """Processed transactions and their deliveries, as the table would hold after months."""
    series = f"generate_series({start + 1:d}, {stop:d}) AS g"
    return (
        "INSERT INTO transactions (transaction_id, source_account, destination_account, amount,"
        " currency, status, created_at, due_at, processed_at, attempts) "
        "SELECT 'fill-' || g, 'acc_src', 'acc_dst', 1500, 'INR', 'PROCESSED', "
        "now() - interval '1 day', now() - interval '1 day', now() - interval '1 day', 1 "
        f"FROM {series}; "
        "INSERT INTO deliveries (transaction_id, received_at, outcome, raw_body, signature) "
        f"SELECT 'fill-' || g, now() - interval '1 day', 'accepted', '{{}}'::bytea, 'none' "
        f"FROM {series};"
    )


async def _counts(url: str) -> tuple[int, int]:
    engine = create_engine(Settings(_env_file=None, database_url=url))
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE status = 'PROCESSING'), count(*) "
                        "FROM transactions WHERE transaction_id NOT LIKE 'fill-%'"
                    )
                )
            ).one()
            return int(row[0]), int(row[1])
    finally:
        await engine.dispose()


async def _lateness(url: str, delay: float) -> list[float]:
    engine = create_engine(Settings(_env_file=None, database_url=url))
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT extract(epoch FROM processed_at - created_at) FROM transactions "
                    "WHERE status = 'PROCESSED' AND transaction_id LIKE 'wrk-%'"
                )
            )
            return [float(row[0]) - delay for row in rows]
    finally:
        await engine.dispose()


async def _deliveries_per_second(url: str) -> tuple[float, float]:
    """Delivered transactions over the time from the first falling due to the last delivered,
    and the seconds from the first stored to the last: no process delivers faster than that
    spread lets them fall due."""
    engine = create_engine(Settings(_env_file=None, database_url=url))
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT count(*), extract(epoch FROM max(processed_at) - min(due_at)), "
                        "extract(epoch FROM max(created_at) - min(created_at)) "
                        "FROM transactions WHERE status = 'PROCESSED' "
                        "AND transaction_id LIKE 'wrk-%'"
                    )
                )
            ).one()
            return float(row[0]) / max(float(row[1]), 1e-3), float(row[2])
    finally:
        await engine.dispose()


async def _mark_measured(url: str) -> None:
    """Rename measured rows so the next growth point measures only its own."""
    engine = create_engine(Settings(_env_file=None, database_url=url))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SET session_replication_role = replica"))
            await conn.execute(
                text(
                    "UPDATE deliveries SET transaction_id = 'done-' || transaction_id "
                    "WHERE transaction_id LIKE 'wrk-%'"
                )
            )
            await conn.execute(
                text(
                    "UPDATE transactions SET transaction_id = 'done-' || transaction_id "
                    "WHERE transaction_id LIKE 'wrk-%'"
                )
            )
    finally:
        await engine.dispose()


# ---- report -------------------------------------------------------------------------------
TARGETS = {
    "ingest ratio (PostgreSQL, 1 process)": ">= 0.60 of the ceiling, p99 <= 25 ms, no errors",
    "stripe ingest ratio (PostgreSQL, signed events of a few KB)": (
        ">= 0.60 of the no-op given the same body, p99 <= 25 ms, no errors"
    ),
    "burst": "lateness p99 <= 0.5 s, max <= 2 s",
    "forwarded burst": "lateness p99 <= 0.5 s; deliveries/s per worker reported",
    "sustained": "lateness p99 <= 1 s, RSS <= 300 MB per process and flat",
}


def report(bench: Bench, out: Path) -> None:
    print("\nIngest (wrk, 1 thread, 64 connections, 8 s; the median of the rounds):")
    print(
        f"{'scenario':38} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'ratio':>6} "
        f"{'CPU us/req':>10}"
    )
    for r in bench.ingest:
        print(
            f"{r.name:38} {r.rps:9,.0f} {r.p50_ms:8.1f} {r.p99_ms:8.1f} {r.errors:7d} "
            f"{r.ratio or 0:6.2f} {r.cpu_us or 0:10,.0f}"
        )
    print("\nProcessing lateness (processed_at - created_at - delay):")
    print(f"{'scenario':44} {'count':>7} {'p50 s':>7} {'p99 s':>7} {'max s':>7}  peak RSS MB")
    for lt in bench.lateness:
        rss = ", ".join(f"{v:.0f}" for v in lt.peak_rss_mb.values())
        print(f"{lt.name:44} {lt.count:7,} {lt.p50_s:7.3f} {lt.p99_s:7.3f} {lt.max_s:7.3f}  {rss}")
        if lt.per_second is not None:
            print(f"{'':44} {lt.per_second:,.0f} deliveries/s (first due to last delivered)")
        if lt.stored_in_s is not None:
            print(f"{'':44} wrk stored them (and they fell due) over {lt.stored_in_s:.1f} s")
        if lt.ceiling_per_second is not None:
            print(f"{'':44} ceiling: the receiver alone, {lt.ceiling_per_second:,.0f} req/s (wrk)")
        if lt.rss_series_mb:
            print(f"{'':44} RSS every 5 s: {[round(v) for v in lt.rss_series_mb]}")
    if bench.growth:
        print("\nGrowth (PostgreSQL, embedded):")
        for point in bench.growth:
            rows, rps, p99 = point["rows"], point["rps"], point["p99_ms"]
            lateness = point["lateness_p99_s"]
            print(f"{rows:>10,} rows: {rps:8,.0f} req/s  p99 {p99:6.1f} ms", end="")
            print(f"  lateness p99 {lateness:.3f} s")
    print("\nTargets:", json.dumps(TARGETS, indent=1))
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ingest": [asdict(r) for r in bench.ingest],
        "lateness": [asdict(r) for r in bench.lateness],
        "growth": bench.growth,
        "targets": TARGETS,
    }
    (out / "latest.json").write_text(json.dumps(document, indent=1))
    chart(bench, out / "latest.png")
    say(f"wrote {out / 'latest.json'} and {out / 'latest.png'}")


def chart(bench: Bench, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(17, 5))
    for r in bench.ingest:
        points = sorted((float(p), ms) for p, ms in r.percentiles_ms.items())
        left.plot([p for p, _ in points], [ms for _, ms in points], marker="o", label=r.name)
    left.set(title="POST latency percentiles (wrk)", xlabel="percentile", ylabel="ms")
    left.set_yscale("log")
    left.legend(fontsize=7)
    for lt in bench.lateness:
        middle.hist(lt.histogram, bins=40, alpha=0.5, label=lt.name, density=True)
    middle.set(title="Lateness distribution", xlabel="seconds after due", ylabel="density")
    middle.legend(fontsize=7)
    if bench.growth:
        rows = [p["rows"] / 1000 for p in bench.growth]
        right.plot(rows, [p["rps"] for p in bench.growth], marker="o", label="req/s")
        right.set(title="Cost as the table grows", xlabel="stored rows (thousands)", ylabel="req/s")
        twin = right.twinx()
        twin.plot(rows, [p["lateness_p99_s"] for p in bench.growth], "r--o", label="lateness p99")
        twin.set_ylabel("lateness p99 (s)")
        right.set_ylim(bottom=0)
        twin.set_ylim(bottom=0)
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller growth curve")
    parser.add_argument(
        "--only", choices=["ingest", "stripe", "burst", "forward", "sustained", "growth"]
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--rounds", type=int, default=3, help="ingest rounds (median kept)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk); `make bench` installs it")
    work = Path(tempfile.mkdtemp(prefix="payhook-bench-"))
    redis = RedisServer.create()
    redis.start()
    try:
        with throwaway_postgres(fsync=True) as postgres:
            run_all(Bench(work, postgres, redis), args)
    finally:
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)


def run_all(bench: Bench, args: argparse.Namespace) -> None:
    """The parts asked for (all by default), then the report."""
    if args.only in (None, "ingest"):
        bench.run_ingest(args.rounds)
    if args.only in (None, "stripe"):
        bench.run_stripe(args.rounds)
    if args.only in (None, "burst"):
        bench.run_burst("embedded")
        bench.run_burst("celery")
    if args.only in (None, "forward"):
        bench.run_forward_burst("embedded")
        bench.run_forward_burst("celery")
    if args.only in (None, "sustained"):
        bench.run_sustained()
    if args.only in (None, "growth"):
        levels = [0, 100_000] if args.quick else [0, 250_000, 500_000, 1_000_000]
        bench.run_growth(levels)
    report(bench, args.out)


if __name__ == "__main__":
    main()
