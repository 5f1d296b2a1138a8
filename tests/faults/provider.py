"""A client that behaves like a payment provider: a steady rate of new transactions, and any
non-2xx answer or connection error retried later with the same body, until acknowledged."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

from tests.support.payloads import transaction_body

WEBHOOK = "/v1/webhooks/transactions"


@dataclass
class ProviderLog:
    sent: set[str] = field(default_factory=set)
    acknowledged: dict[str, float] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    connection_errors: int = 0
    retries: int = 0
    conflicts: list[str] = field(default_factory=list)


def transaction(key: str) -> bytes:
    return json.dumps(transaction_body(key, amount=42.5, currency="EUR")).encode()


class Provider:
    """Sends `keys` at `rate` per second across `base_urls` (round robin, like a load balancer)."""

    def __init__(self, base_urls: list[str], keys: list[str], rate: float) -> None:
        self._urls = itertools.cycle(base_urls)
        self._keys = keys
        self._rate = rate
        self._retry_heap: list[tuple[float, str]] = []
        self._in_flight = asyncio.Semaphore(64)
        self.log = ProviderLog()

    async def run(self, deadline_seconds: float) -> ProviderLog:
        """Send everything; keep retrying until every key is acknowledged or time runs out."""
        deadline = time.monotonic() + deadline_seconds
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(timeout=10, limits=limits) as client:
            tasks: set[asyncio.Task[None]] = set()
            fresh = iter(self._keys)
            while len(self.log.acknowledged) < len(self._keys) and time.monotonic() < deadline:
                key = self._next_key(fresh)
                if key is not None:
                    task = asyncio.create_task(self._send(client, key))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                await asyncio.sleep(1 / self._rate)
            for task in tasks:
                task.cancel()
        return self.log

    def _next_key(self, fresh: Iterator[str]) -> str | None:
        now = time.monotonic()
        if self._retry_heap and self._retry_heap[0][0] <= now:
            self.log.retries += 1
            return heapq.heappop(self._retry_heap)[1]
        key = next(fresh, None)
        if key is not None:
            self.log.sent.add(key)
        return key

    async def _send(self, client: httpx.AsyncClient, key: str) -> None:
        async with self._in_flight:
            try:
                response = await client.post(
                    next(self._urls) + WEBHOOK,
                    content=transaction(key),
                    headers={"content-type": "application/json"},
                )
            except httpx.TransportError:
                self.log.connection_errors += 1
                self._retry_later(key)
                return
        self.log.statuses[response.status_code] += 1
        if response.status_code == 202:
            self.log.acknowledged.setdefault(key, time.time())
        elif response.status_code == 409:
            self.log.conflicts.append(key)
        else:
            self._retry_later(key)

    def _retry_later(self, key: str) -> None:
        heapq.heappush(self._retry_heap, (time.monotonic() + 0.5, key))
