"""Issue-2 figures on a real server: POST latency under 60 concurrent requests, and the time from
receipt to PROCESSED for one transaction at the default 30 s delay. Run: `make bench-contract`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
from tests.support.payloads import transaction_body
from tests.support.processes import PayhookProcess
from tests.support.services import throwaway_postgres

from payhook.config import Settings
from payhook.migrate import upgrade

WRK_SCRIPT = Path(__file__).parent / "wrk" / "unique_post.lua"


def wrk_latencies(base_url: str, connections: int, seconds: int) -> dict[str, str]:
    """Run wrk (one thread, `connections` connections, unique ids) and read its percentiles."""
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(WRK_SCRIPT)]
        + [base_url],
        check=True,
        capture_output=True,
        text=True,
    )
    figures = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in {"50%", "99%"}:
            figures[parts[0]] = parts[1]
        if line.startswith("Requests/sec:"):
            figures["req/s"] = parts[1]
    if "unexpected status" in result.stderr:
        raise AssertionError(f"non-202 answers: {result.stderr[:500]}")
    return figures


async def receipt_to_processed(base_url: str, delay: float) -> float:
    key = f"timing-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        assert (
            await client.post("/v1/webhooks/transactions", json=transaction_body(key))
        ).status_code == 202
        deadline = time.monotonic() + delay + 30
        while time.monotonic() < deadline:
            [view] = (await client.get(f"/v1/transactions/{key}")).json()
            if view["processed_at"]:
                created = datetime.fromisoformat(view["created_at"].replace("Z", "+00:00"))
                done = datetime.fromisoformat(view["processed_at"].replace("Z", "+00:00"))
                return (done - created).total_seconds()
            await asyncio.sleep(0.25)
    raise TimeoutError(key)


async def measure(name: str, url: str, work: Path, delay: float) -> None:
    await upgrade(Settings(database_url=url))
    server = PayhookProcess.serve(
        {"DATABASE_URL": url, "PROCESSING_DELAY_SECONDS": str(delay)}, work, name
    ).start()
    try:
        timing = asyncio.create_task(receipt_to_processed(server.base_url, delay))
        await asyncio.sleep(0.5)
        figures = await asyncio.to_thread(wrk_latencies, server.base_url, 60, 10)
        waited = await timing
    finally:
        server.stop()
    print(
        f"{name:8} POST, 60 connections, 10 s: {figures['req/s']} req/s, "
        f"p50 {figures['50%']}, p99 {figures['99%']} | receipt->PROCESSED at {delay:g} s delay: "
        f"{waited:.3f} s (lateness {1000 * (waited - delay):.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay", type=float, default=30.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="payhook-bench-"))
    try:
        with throwaway_postgres(fsync=True) as postgres:
            asyncio.run(measure("sqlite", f"sqlite:///{work / 'bench.db'}", work, args.delay))
            asyncio.run(measure("postgres", postgres.url, work, args.delay))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
