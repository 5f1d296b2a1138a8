"""Through a real `payhook serve` (uvicorn) over raw sockets: whom payhook believes about the
client, and every body other than the webhook's bounded before authentication (issue 13)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from payhook.config import Settings
from payhook.migrate import upgrade
from tests.e2e.test_hostile_input import read_answer, send_all, status_of
from tests.support.processes import PayhookProcess

pytestmark = pytest.mark.e2e
TIMEOUT = 1.5  # REQUEST_BODY_TIMEOUT_SECONDS of the server
TOKEN = "edge-test-token-0123456789abcdef0123456789"
HUNDRED_MB = 100 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PayhookProcess]:
    work = tmp_path_factory.mktemp("edge")
    url = f"sqlite:///{work / 'payhook.db'}"
    asyncio.run(upgrade(Settings(_env_file=None, database_url=url)))
    env = {
        "DATABASE_URL": url,
        "PROCESSING_DELAY_SECONDS": "3600",
        "REQUEST_BODY_TIMEOUT_SECONDS": str(TIMEOUT),
        "WEBHOOK_ALLOWED_IPS": "203.0.113.0/24",
        "ADMIN_TOKEN": TOKEN,
        # uvicorn's own default trusts X-Forwarded-* from 127.0.0.1; make it trust everyone, to
        # show that payhook does not ask it.
        "FORWARDED_ALLOW_IPS": "*",
    }
    process = PayhookProcess.serve(env, work).start()
    try:
        yield process
    finally:
        process.stop()


def transaction(transaction_id: str) -> bytes:
    return (
        f'{{"transaction_id": "{transaction_id}", "source_account": "a", '
        '"destination_account": "b", "amount": 1, "currency": "USD"}'
    ).encode()


# --- 1: TRUSTED_PROXIES alone decides whom to believe ------------------------------------------


def test_x_forwarded_for_from_an_untrusted_peer_does_not_pass_the_allowlist(
    server: PayhookProcess,
) -> None:
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for forwarded in ({"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"}):
            answer = client.post(
                "/v1/webhooks/transactions",
                content=transaction("txn_spoofed"),
                headers={"content-type": "application/json", **forwarded},
            )
            assert answer.status_code == 403, answer.text
        assert client.get("/v1/transactions/txn_spoofed").status_code == 404


def test_x_forwarded_proto_from_an_untrusted_peer_is_ignored(server: PayhookProcess) -> None:
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        # Believed, the scheme would be https and this Origin the service's own.
        headers = {"X-Forwarded-Proto": "https", "Origin": f"https://127.0.0.1:{server.port}"}
        answer = client.post("/console/login", data={"token": TOKEN}, headers=headers)
        assert answer.status_code == 403, answer.text


# --- 2: bodies bounded, read only after authentication -----------------------------------------


def raw_request(server: PayhookProcess, path: str, length: int, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n"
        f"{extra}\r\n"
    ).encode()


def unfinished(server: PayhookProcess, path: str, extra: str = "") -> bytes:
    """A head declaring 100 MB, then 1 MB of it, then nothing: the answer the server sends."""
    assert server.port is not None
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        send_all(sock, [raw_request(server, path, HUNDRED_MB, extra), b"x" * (1024 * 1024)])
        return read_answer(sock, limit_seconds=TIMEOUT + 8)


@pytest.mark.parametrize(
    ("path", "extra", "status"),
    [
        ("/console/login", "", 413),
        ("/v1/transactions/retry", "", 401),
        ("/v1/transactions/x/retry", "", 401),
        ("/v1/transactions/retry", f"Authorization: Bearer {TOKEN}\r\n", 413),
        ("/console/logout", "", 401),
    ],
)
def test_an_unfinished_hundred_megabytes_is_answered_and_closed(
    server: PayhookProcess, path: str, extra: str, status: int
) -> None:
    answer = unfinished(server, path, extra)
    assert status_of(answer) == status, answer[:300]
    # The API answers problem+json; the console, a page a person can act on.
    expected = b"text/html" if path.startswith("/console") else b"application/problem+json"
    assert expected in answer.partition(b"\r\n\r\n")[0]
    # read_answer returned: the server closed the connection rather than read on.


def test_a_slow_operator_body_gets_408_and_a_closed_connection(server: PayhookProcess) -> None:
    assert server.port is not None
    body = b'{"all": true, "reason": "slow"}'
    auth = f"Authorization: Bearer {TOKEN}\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        started = time.monotonic()
        send_all(sock, [raw_request(server, "/v1/transactions/retry", len(body), auth), body[:5]])
        answer = read_answer(sock, limit_seconds=TIMEOUT + 8)
    assert status_of(answer) == 408, answer[:300]
    assert time.monotonic() - started >= TIMEOUT
