"""Hostile input against a real `payhook serve` over HTTP: a clear 4xx (or a closed connection
for transport abuse), nothing stored, and the server still answering afterwards.

docs/SECURITY.md lists every attack here with the answer seen.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from urllib.parse import quote

import httpx
import pytest

from payhook.config import Settings
from payhook.migrate import upgrade
from tests.support.processes import PayhookProcess

pytestmark = pytest.mark.e2e
WEBHOOK = "/v1/webhooks/transactions"
TIMEOUT = 1.5  # REQUEST_HEAD_TIMEOUT_SECONDS and REQUEST_BODY_TIMEOUT_SECONDS of the server
TEN_MB = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PayhookProcess]:
    work = tmp_path_factory.mktemp("hostile")
    url = f"sqlite:///{work / 'payhook.db'}"
    asyncio.run(upgrade(Settings(_env_file=None, database_url=url)))
    env = {
        "DATABASE_URL": url,
        "PROCESSING_DELAY_SECONDS": "3600",
        "REQUEST_HEAD_TIMEOUT_SECONDS": str(TIMEOUT),
        "REQUEST_BODY_TIMEOUT_SECONDS": str(TIMEOUT),
    }
    process = PayhookProcess.serve(env, work).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def client(server: PayhookProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10) as c:
        yield c


def new_id() -> str:
    return f"txn_hostile_{uuid.uuid4().hex}"


def body(transaction_id: str = "", amount: str = "150.50", id_json: str = "") -> bytes:
    id_json = id_json or f'"{transaction_id}"'
    return (
        f'{{"transaction_id": {id_json}, "source_account": "acc_src", '
        f'"destination_account": "acc_dst", "amount": {amount}, "currency": "USD"}}'
    ).encode()


def assert_unharmed(server: PayhookProcess, *transaction_ids: str) -> None:
    """The server still answers, and none of these transactions was stored."""
    with httpx.Client(base_url=server.base_url, timeout=5) as c:
        assert c.get("/").status_code == 200
        for transaction_id in transaction_ids:
            path = quote(transaction_id, safe="", errors="surrogatepass")
            assert c.get(f"/v1/transactions/{path}").status_code == 404, transaction_id


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


# --- bodies the parser or the schema must refuse ----------------------------------------------

AMOUNTS = {
    "NaN": ("NaN", 400),
    "Infinity": ("Infinity", 400),
    "-Infinity": ("-Infinity", 400),
    "1e400": ("1e400", 422),
    "-0": ("-0", 422),
    "40 integer digits": ("1" * 40, 422),
    "40 fraction digits": ("0." + "1" * 40, 422),
    "amount as a string": ('"150.50"', 422),
}


@pytest.mark.parametrize(("amount", "status"), AMOUNTS.values(), ids=AMOUNTS.keys())
def test_hostile_amounts(
    server: PayhookProcess, client: httpx.Client, amount: str, status: int
) -> None:
    transaction_id = new_id()
    raw = body(transaction_id, amount=amount)
    response = client.post(WEBHOOK, content=raw, headers={"content-type": "application/json"})
    assert_problem(response, status)
    assert_unharmed(server, transaction_id)


IDS = {
    "NUL": r"txn_\u0000",
    "right-to-left override": r"txn_\u202etxet",
    "lone high surrogate": r"txn_\ud800",
    "lone low surrogate": r"txn_\udfff",
    "escape and bell": r"txn_\u001b[31m\u0007",
    "256 characters": "x" * 256,
}


@pytest.mark.parametrize("id_escaped", IDS.values(), ids=IDS.keys())
def test_hostile_ids(server: PayhookProcess, client: httpx.Client, id_escaped: str) -> None:
    raw = body(id_json=f'"{id_escaped}"')
    response = client.post(WEBHOOK, content=raw, headers={"content-type": "application/json"})
    assert_problem(response, 422)
    decoded = id_escaped.encode().decode("unicode_escape")
    assert_unharmed(server, decoded)


SHAPES = {
    "duplicate keys": (b'{"transaction_id": "a", "transaction_id": "b"}', 400),
    "nested 100k levels": (b"[" * 100_000 + b"]" * 100_000, 413),
    "nested 10k levels within the limit": (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, 400),
    "not JSON": (b"transaction_id=txn_1&amount=1", 400),
    "invalid UTF-8": (b'{"transaction_id": "\xff\xfe"}', 400),
    "top-level array": (b"[1, 2, 3]", 422),
    "empty body": (b"", 400),
}


@pytest.mark.parametrize(("raw", "status"), SHAPES.values(), ids=SHAPES.keys())
def test_hostile_shapes(
    server: PayhookProcess, client: httpx.Client, raw: bytes, status: int
) -> None:
    response = client.post(WEBHOOK, content=raw, headers={"content-type": "application/json"})
    assert_problem(response, status)
    assert_unharmed(server)


CONTENT_TYPES = {
    "text/plain": {"content-type": "text/plain"},
    "form": {"content-type": "application/x-www-form-urlencoded"},
    "missing": {},
    "json-looking garbage": {"content-type": "application/jsonx"},
}


@pytest.mark.parametrize("headers", CONTENT_TYPES.values(), ids=CONTENT_TYPES.keys())
def test_wrong_or_missing_content_type(
    server: PayhookProcess, client: httpx.Client, headers: dict[str, str]
) -> None:
    transaction_id = new_id()
    response = client.post(WEBHOOK, content=body(transaction_id), headers=headers)
    assert_problem(response, 415)
    assert_unharmed(server, transaction_id)


# --- transport abuse, over raw sockets --------------------------------------------------------


def connect(server: PayhookProcess) -> socket.socket:
    assert server.port is not None
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def head(content_length: int | None = None, extra: str = "") -> bytes:
    length = "" if content_length is None else f"Content-Length: {content_length}\r\n"
    return (
        f"POST {WEBHOOK} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{length}{extra}\r\n"
    ).encode()


def send_all(sock: socket.socket, parts: Iterable[bytes], pause: float = 0.0) -> None:
    """Send each part (pausing between), stopping quietly once the server has hung up."""
    try:
        for part in parts:
            sock.sendall(part)
            time.sleep(pause)
    except (BrokenPipeError, ConnectionResetError):
        pass


def read_answer(sock: socket.socket, limit_seconds: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (b'' if it only closed)."""
    received = b""
    deadline = time.monotonic() + limit_seconds
    try:
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk
    except ConnectionResetError:
        return received
    except TimeoutError:
        pass
    raise AssertionError(f"the server kept the connection open; it sent {received[:200]!r}")


def status_of(answer: bytes) -> int | None:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


def megabytes(total: int, size: int = 65536) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b"[" * size


def chunked(parts: Iterable[bytes]) -> Iterator[bytes]:
    for part in parts:
        yield f"{len(part):x}\r\n".encode() + part + b"\r\n"
    yield b"0\r\n\r\n"


def test_ten_megabytes_with_content_length(server: PayhookProcess) -> None:
    with connect(server) as sock:
        send_all(sock, [head(TEN_MB), *megabytes(TEN_MB)])
        # Refused from the declared length; the client may see the 413 or only the hang-up.
        assert status_of(read_answer(sock)) in (413, None)
    assert_unharmed(server)


def test_ten_megabytes_chunked(server: PayhookProcess) -> None:
    with connect(server) as sock:
        send_all(sock, [head(extra="Transfer-Encoding: chunked\r\n"), *chunked(megabytes(TEN_MB))])
        assert status_of(read_answer(sock)) in (413, None)
    assert_unharmed(server)


def test_ten_megabytes_without_any_length(server: PayhookProcess) -> None:
    # Without a length an HTTP/1.1 body is empty: the bytes after the head are a broken request.
    with connect(server) as sock:
        send_all(sock, [head(), *megabytes(TEN_MB)])
        answer = read_answer(sock)
    assert status_of(answer) in (400, None), answer[:200]
    assert_unharmed(server)


def test_content_length_larger_than_the_body(server: PayhookProcess) -> None:
    transaction_id = new_id()
    raw = body(transaction_id)
    with connect(server) as sock:
        started = time.monotonic()
        send_all(sock, [head(len(raw) + 100), raw])
        answer = read_answer(sock)
    assert status_of(answer) == 408, answer[:300]
    assert b"application/problem+json" in answer
    assert time.monotonic() - started < TIMEOUT + 6  # without the deadline: read_answer's 10 s
    assert_unharmed(server, transaction_id)


def test_content_length_smaller_than_the_body(server: PayhookProcess) -> None:
    transaction_id = new_id()
    raw = body(transaction_id)
    with connect(server) as sock:
        send_all(sock, [head(10), raw])
        answer = read_answer(sock)
    # The first 10 bytes are not JSON (400); the rest is not an HTTP request (400, then closed).
    assert status_of(answer) == 400, answer[:300]
    assert_unharmed(server, transaction_id)


@pytest.mark.parametrize(
    "header",
    [
        "Content-Length: -1\r\n",
        "Content-Length: abc\r\n",
        "Content-Length: 5\r\nContent-Length: 500\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    ],
    ids=["negative", "not a number", "two different", "with chunked (smuggling)"],
)
def test_malformed_framing_is_refused(server: PayhookProcess, header: str) -> None:
    transaction_id = new_id()
    with connect(server) as sock:
        send_all(sock, [head(extra=header), body(transaction_id)])
        answer = read_answer(sock)
    assert status_of(answer) in (400, None), answer[:300]
    assert_unharmed(server, transaction_id)


def test_slow_upload_is_cut_off(server: PayhookProcess) -> None:
    transaction_id = new_id()
    raw = body(transaction_id)
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(head(len(raw)))
        pieces = [raw[i : i + 3] for i in range(0, len(raw), 3)]
        send_all(sock, pieces[: int(TIMEOUT * 4) + 4], pause=0.25)  # ~12 bytes a second
        answer = read_answer(sock)
    assert status_of(answer) == 408, answer[:300]
    assert time.monotonic() - started < TIMEOUT + 6  # without the deadline: read_answer's 10 s
    assert_unharmed(server, transaction_id)


def test_slow_headers_are_cut_off(server: PayhookProcess) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(f"POST {WEBHOOK} HTTP/1.1\r\n".encode())
        send_all(sock, [b"X-Slow: a\r\n"] * int(TIMEOUT * 4 + 4), pause=0.25)
        assert read_answer(sock) == b""
    assert time.monotonic() - started < TIMEOUT + 6  # without the deadline: read_answer's 10 s
    assert_unharmed(server)


def get_on(sock: socket.socket) -> bytes:
    """One keep-alive GET / on an open connection; its whole answer, head and body."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    sock.settimeout(5)
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _length(answer):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {answer!r}"
        answer += chunk
    return answer


def _length(answer: bytes) -> int:
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return int(value)
    return 0


def test_a_kept_alive_connection_may_idle_longer_than_the_head_deadline(
    server: PayhookProcess,
) -> None:
    # Idle time between requests is the keep-alive timeout's business (75 s), not the head's.
    with connect(server) as sock:
        assert get_on(sock).startswith(b"HTTP/1.1 200")
        time.sleep(TIMEOUT + 0.5)
        assert get_on(sock).startswith(b"HTTP/1.1 200")


def test_a_slow_head_on_a_kept_alive_connection_is_cut_off(server: PayhookProcess) -> None:
    with connect(server) as sock:
        assert get_on(sock).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n")
        send_all(sock, [b"X-Slow: a\r\n"] * int(TIMEOUT * 4 + 4), pause=0.25)
        assert read_answer(sock) == b""
    assert time.monotonic() - started < TIMEOUT + 6  # without the deadline: read_answer's 10 s


def test_idle_connections_are_closed_and_do_not_block_others(server: PayhookProcess) -> None:
    sockets = [connect(server) for _ in range(200)]
    try:
        assert_unharmed(server)
        for sock in sockets:
            assert read_answer(sock, limit_seconds=TIMEOUT + 5) == b""
    finally:
        for sock in sockets:
            sock.close()
    assert_unharmed(server)


def test_a_valid_delivery_still_works_afterwards(client: httpx.Client) -> None:
    transaction_id = new_id()
    raw = body(transaction_id)
    response = client.post(WEBHOOK, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 202, response.text
    assert client.get(f"/v1/transactions/{transaction_id}").status_code == 200
