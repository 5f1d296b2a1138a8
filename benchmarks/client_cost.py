"""CPU per request of an HTTP client, alone: why forwarding posts with pyreqwest.

    .venv/bin/python -m benchmarks.client_cost [--requests 4000] [--rounds 3]

Starts the bench receiver (`receiver_app.py`, 200 after 5 ms) under uvicorn, then posts the same
signed-looking body of a forwarded delivery `--requests` times, 64 at a time, through each
client as payhook used it (httpx: 8 clients of 8 connections, the least busy one per request;
aiohttp: one session of 64; pyreqwest, today's: one client of at most 64 in flight, the first
KB of each answer read as a stream), in interleaved rounds. Prints the client process's CPU
time per request (`time.process_time`, which counts pyreqwest's own threads too), the median
of the rounds: the receiver's CPU is not in it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import uvloop
from pyreqwest.client import ClientBuilder
from tests.support.services import free_port

from benchmarks.run import server

IN_FLIGHT = 64
BODY = (
    b'{"type":"transaction.due","timestamp":"2026-11-27T23:00:00.000000Z","attempt":1,'
    b'"data":{"transaction_id":"wrk-123456789","source_account":"acc_src_0001",'
    b'"destination_account":"acc_dst_0002","amount":"1500.00","currency":"INR",'
    b'"status":"PROCESSING","created_at":"2026-11-27T23:00:00.000000Z",'
    b'"due_at":"2026-11-27T23:00:05.000000Z","processed_at":null,"attempts":1}}'
)
HEADERS = {
    "content-type": "application/json",
    "webhook-id": "payhook:wrk-123456789",
    "webhook-timestamp": "1795000000",
    "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
}
Post = Callable[[], Awaitable[None]]


async def with_httpx(url: str, count: int) -> float:
    clients = [
        httpx.AsyncClient(
            timeout=10,
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
            follow_redirects=False,
        )
        for _ in range(IN_FLIGHT // 8)
    ]
    busy = [0] * len(clients)

    async def post() -> None:
        shard = busy.index(min(busy))
        busy[shard] += 1
        try:
            async with clients[shard].stream("POST", url, content=BODY, headers=HEADERS) as answer:
                await answer.aread()
                answer.raise_for_status()
        finally:
            busy[shard] -= 1

    try:
        return await cpu_per_request(post, count)
    finally:
        for client in clients:
            await client.aclose()


async def with_aiohttp(url: str, count: int) -> float:
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=IN_FLIGHT), cookie_jar=aiohttp.DummyCookieJar()
    ) as session:

        async def post() -> None:
            async with session.post(
                url, data=BODY, headers=HEADERS, allow_redirects=False
            ) as answer:
                await answer.read()
                answer.raise_for_status()

        return await cpu_per_request(post, count)


async def with_pyreqwest(url: str, count: int) -> float:
    client = ClientBuilder().max_connections(IN_FLIGHT).follow_redirects(False).build()
    async with client:

        async def post() -> None:
            request = client.post(url).headers(HEADERS).body_bytes(BODY).build_streamed()
            async with request as answer:
                await answer.body_reader.read(1024)
                answer.error_for_status()

        return await cpu_per_request(post, count)


async def cpu_per_request(post: Post, count: int) -> float:
    """Seconds of this process's CPU per request, `IN_FLIGHT` at a time, after a warm-up."""
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one() -> None:
        async with slots:
            await post()

    await asyncio.gather(*(one() for _ in range(IN_FLIGHT * 4)))
    started = time.process_time()
    await asyncio.gather(*(one() for _ in range(count)))
    return (time.process_time() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    receiver = [sys.executable, "-m", "uvicorn", "benchmarks.receiver_app:app", "--port"]
    receiver += [str(port), "--log-level", "warning", "--no-access-log"]
    url = f"http://127.0.0.1:{port}/payhook"
    clients = {"httpx": with_httpx, "aiohttp": with_aiohttp, "pyreqwest": with_pyreqwest}
    rounds: dict[str, list[float]] = {name: [] for name in clients}
    with server(receiver, port, Path("/dev/null"), {}):
        for _ in range(args.rounds):
            for name, measure in clients.items():
                rounds[name].append(uvloop.run(measure(url, args.requests)))
    for name, seconds in rounds.items():
        each = ", ".join(f"{s * 1e6:,.0f}" for s in seconds)
        print(f"{name:9} {statistics.median(seconds) * 1e6:7,.0f} µs of CPU per request ({each})")


if __name__ == "__main__":
    main()
