"""Through the ASGI app: only allowed client addresses can post webhooks; nothing else changes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import pytest

import payhook.migrate
from payhook.app import create_app
from payhook.config import Settings

pytestmark = pytest.mark.anyio
WEBHOOK = "/v1/webhooks/transactions"
JSON = {"content-type": "application/json"}
Connect = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def body(transaction_id: str) -> bytes:
    return (
        f'{{"transaction_id":"{transaction_id}","source_account":"acc_src",'
        f'"destination_account":"acc_dst","amount":150.50,"currency":"INR"}}'
    ).encode()


@pytest.fixture
async def connect(tmp_path: Path) -> AsyncIterator[Connect]:
    """Clients of one app (allowlist 203.0.113.0/24, proxies 10.0.0.0/8) from chosen peers."""
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite:///{tmp_path}/allowlist.db",
        processing_delay_seconds=3600,
        webhook_allowed_ips="203.0.113.0/24, 2001:db8::/32",
        trusted_proxies="10.0.0.0/8",
    )
    await payhook.migrate.upgrade(settings)
    app = create_app(settings, run_executor=False)

    @asynccontextmanager
    async def client_from(peer: str) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app, client=(peer, 4711))
        async with httpx.AsyncClient(transport=transport, base_url="http://payhook.test") as c:
            yield c

    async with app.router.lifespan_context(app):
        yield client_from


async def test_an_allowed_address_is_stored(connect: Connect) -> None:
    async with connect("203.0.113.9") as client:
        response = await client.post(WEBHOOK, content=body("txn_allowed"), headers=JSON)
        assert response.status_code == 202, response.text
        assert (await client.get("/v1/transactions/txn_allowed")).status_code == 200


@pytest.mark.parametrize(
    ("peer", "forwarded_for"),
    [
        ("198.51.100.7", None),
        ("198.51.100.7", "203.0.113.9"),  # spoofed: the peer is not a trusted proxy
        ("10.0.0.1", "203.0.113.9, 198.51.100.7"),  # the right-most untrusted hop is outside
        ("10.0.0.1", "garbage"),
        ("2001:db9::1", None),
    ],
)
async def test_other_addresses_get_403_and_nothing_is_stored(
    connect: Connect, peer: str, forwarded_for: str | None
) -> None:
    headers = {**JSON, **({"x-forwarded-for": forwarded_for} if forwarded_for else {})}
    async with connect(peer) as client:
        response = await client.post(WEBHOOK, content=body("txn_refused"), headers=headers)
        assert response.status_code == 403, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert (await client.get("/v1/transactions/txn_refused")).status_code == 404


async def test_a_trusted_proxy_forwarding_an_allowed_client_is_stored(connect: Connect) -> None:
    async with connect("10.0.0.1") as client:
        headers = {**JSON, "x-forwarded-for": "2001:db8::42, 10.0.0.7"}
        response = await client.post(WEBHOOK, content=body("txn_proxied"), headers=headers)
        assert response.status_code == 202, response.text


async def test_the_403_comes_before_the_body_is_looked_at(connect: Connect) -> None:
    async with connect("198.51.100.7") as client:
        response = await client.post(WEBHOOK, content=b"{", headers={"content-type": "text/plain"})
        assert response.status_code == 403


async def test_other_endpoints_are_not_filtered(connect: Connect) -> None:
    async with connect("198.51.100.7") as client:
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/v1/transactions/txn_none")).status_code == 404


async def test_openapi_documents_the_403(connect: Connect) -> None:
    async with connect("203.0.113.9") as client:
        spec = (await client.get("/openapi.json")).json()
    response = spec["paths"][WEBHOOK]["post"]["responses"]["403"]
    assert "application/problem+json" in response["content"]
