"""A real HTTP receiver for forwarded deliveries: an ASGI app under uvicorn on a loopback port.

It verifies every delivery's signature with the `standardwebhooks` package (the library a team's
own service would use), records each one with its `webhook-id`, and answers as the test's script
says: a status, headers, a body, after a delay. It can be stopped and started again on the same
port, which is what an outage of the team's service looks like from payhook.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.services import free_port

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b'{"received": true}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    webhook_id: str
    payload: dict[str, Any]  # the verified, parsed body
    at: float  # time.time() on arrival
    client_port: int  # the sender's port: one connection kept alive shows as one port
    seen: int  # how many times this webhook-id has arrived, this one included


Script = Callable[[Received], Answer]


def always_ok(received: Received) -> Answer:
    del received
    return Answer()


class Receiver:
    """The team's service, as a test plays it; `answer` may be replaced at any time."""

    def __init__(
        self, secret: str = SECRET, answer: Script = always_ok, tls: Path | None = None
    ) -> None:
        self.port = free_port()
        self.tls = tls  # a PEM file with the certificate and its key: served over HTTPS
        self.answer = answer
        self.received: list[Received] = []
        self.unverified: list[str] = []  # why each delivery that failed verification failed
        self.in_flight = 0
        self.max_in_flight = 0
        self._counts: Counter[str] = Counter()
        self._webhook = Webhook(secret)
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/hooks/payhook"

    def seen(self) -> Counter[str]:
        with self._lock:
            return self._counts.copy()

    def start(self) -> Receiver:
        config = uvicorn.Config(
            self,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=1,
            ssl_certfile=self.tls,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="receiver", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the receiver did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Close the listening socket: new connections are refused, as when the service is down."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the sender died mid-request (kill -9): no delivery, as for any server
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            payload = self._webhook.verify(body, headers)
        except (WebhookVerificationError, ValueError) as exc:
            with self._lock:
                self.unverified.append(f"{exc!r}: {headers}")
            await _respond(send, Answer(400, b'{"error": "bad signature"}'))
            return
        with self._lock:
            webhook_id = headers["webhook-id"]
            self._counts[webhook_id] += 1
            seen = self._counts[webhook_id]
            received = Received(webhook_id, payload, time.time(), scope["client"][1], seen)
            self.received.append(received)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            answer = self.answer(received)
            if answer.delay:
                await asyncio.sleep(answer.delay)
            await _respond(send, answer)
        finally:
            with self._lock:
                self.in_flight -= 1


async def _respond(send: Any, answer: Answer) -> None:
    headers = [(b"content-type", b"application/json")]
    headers += [(k.encode(), v.encode()) for k, v in answer.headers.items()]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
