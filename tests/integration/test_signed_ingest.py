"""Through the real ASGI app: only correctly signed deliveries are stored."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import payhook.migrate
from payhook.app import create_app
from payhook.config import Settings, SignatureScheme
from payhook.webhooks.signatures import build_verifier

pytestmark = pytest.mark.anyio

NEW_STANDARD = "whsec_" + base64.b64encode(b"integration-new-secret-bytes-32!").decode()
OLD_STANDARD = "whsec_" + base64.b64encode(b"integration-old-secret-bytes-32!").decode()
SECRETS = {
    SignatureScheme.STANDARD_WEBHOOKS: (NEW_STANDARD, OLD_STANDARD),
    SignatureScheme.STRIPE: ("whsec_integration_new", "whsec_integration_old"),
    SignatureScheme.RAZORPAY: ("razorpay-integration-new", "razorpay-integration-old"),
}
STRANGER = {
    SignatureScheme.STANDARD_WEBHOOKS: "whsec_" + base64.b64encode(b"a-stranger-secret").decode(),
    SignatureScheme.STRIPE: "whsec_stranger",
    SignatureScheme.RAZORPAY: "stranger",
}


@pytest.fixture(params=list(SECRETS), ids=lambda scheme: scheme.value)
def scheme(request: pytest.FixtureRequest) -> SignatureScheme:
    chosen: SignatureScheme = request.param
    return chosen


@pytest.fixture
async def client(tmp_path: Path, scheme: SignatureScheme) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite:///{tmp_path}/signed.db",
        webhook_signature_scheme=scheme,
        webhook_secret=",".join(SECRETS[scheme]),
        processing_delay_seconds=3600,
    )
    await payhook.migrate.upgrade(settings)
    app = create_app(settings, run_executor=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://payhook.test") as c:
            yield c


def body(transaction_id: str, amount: str = "150.50") -> bytes:
    return (
        f'{{"transaction_id":"{transaction_id}","source_account":"acc_src",'
        f'"destination_account":"acc_dst","amount":{amount},"currency":"INR"}}'
    ).encode()


def sign(scheme: SignatureScheme, raw: bytes, secret: str, at: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if at is None else at
    signer = build_verifier(scheme, [secret])
    return signer.sign(raw, timestamp=timestamp, msg_id=f"msg_{timestamp}")


async def post(client: httpx.AsyncClient, raw: bytes, headers: dict[str, str]) -> httpx.Response:
    headers = {**headers, "content-type": "application/json"}
    return await client.post("/v1/webhooks/transactions", content=raw, headers=headers)


async def assert_not_stored(client: httpx.AsyncClient, response: httpx.Response, txn: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Signature")
    assert response.json()["title"] == "Signature invalid"
    assert (await client.get(f"/v1/transactions/{txn}")).status_code == 404


async def test_signed_delivery_is_stored(
    client: httpx.AsyncClient, scheme: SignatureScheme
) -> None:
    raw = body("txn_signed")
    response = await post(client, raw, sign(scheme, raw, SECRETS[scheme][0]))
    assert response.status_code == 202, response.text
    stored = await client.get("/v1/transactions/txn_signed")
    assert stored.status_code == 200
    assert stored.json()[0]["amount"] == 150.5


async def test_old_secret_is_accepted_during_rotation(
    client: httpx.AsyncClient, scheme: SignatureScheme
) -> None:
    raw = body("txn_rotated")
    response = await post(client, raw, sign(scheme, raw, SECRETS[scheme][1]))
    assert response.status_code == 202, response.text


async def test_unsigned_delivery_is_rejected(client: httpx.AsyncClient) -> None:
    response = await post(client, body("txn_unsigned"), {})
    await assert_not_stored(client, response, "txn_unsigned")


async def test_tampered_delivery_is_rejected(
    client: httpx.AsyncClient, scheme: SignatureScheme
) -> None:
    headers = sign(scheme, body("txn_tampered"), SECRETS[scheme][0])
    response = await post(client, body("txn_tampered", amount="999999"), headers)
    await assert_not_stored(client, response, "txn_tampered")


async def test_wrong_secret_is_rejected(client: httpx.AsyncClient, scheme: SignatureScheme) -> None:
    raw = body("txn_forged")
    response = await post(client, raw, sign(scheme, raw, STRANGER[scheme]))
    await assert_not_stored(client, response, "txn_forged")
    assert not any(secret in response.text for secret in SECRETS[scheme])


@pytest.mark.parametrize("skew", [-3600, 3600])
@pytest.mark.parametrize(
    "scheme", [SignatureScheme.STANDARD_WEBHOOKS, SignatureScheme.STRIPE], indirect=True
)
async def test_stale_or_future_delivery_is_rejected(
    client: httpx.AsyncClient, scheme: SignatureScheme, skew: int
) -> None:
    raw = body("txn_stale")
    response = await post(
        client, raw, sign(scheme, raw, SECRETS[scheme][0], int(time.time()) + skew)
    )
    await assert_not_stored(client, response, "txn_stale")


async def test_replay_within_tolerance_changes_nothing(
    client: httpx.AsyncClient, scheme: SignatureScheme
) -> None:
    # A captured delivery replayed at once (or any time, for Razorpay) meets the permanent dedupe.
    raw = body("txn_replayed")
    headers = sign(scheme, raw, SECRETS[scheme][0])
    first, replay = [await post(client, raw, headers) for _ in range(2)]
    assert (first.status_code, replay.status_code) == (202, 202)
    assert replay.json()["duplicate"] is True


async def test_signature_is_checked_before_the_body_is_parsed(client: httpx.AsyncClient) -> None:
    # An unsigned sender must not reach the parser: 401, not the 400 broken JSON would earn.
    response = await post(client, b'{"not": "json"', {})
    assert response.status_code == 401
    assert response.json()["title"] == "Signature invalid"


async def test_openapi_documents_the_401(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "401" in spec["paths"]["/v1/webhooks/transactions"]["post"]["responses"]


async def test_unsigned_scheme_warns_at_start(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(_env_file=None, database_url=f"sqlite:///{tmp_path}/none.db")
    app = create_app(settings, run_executor=False)
    async with app.router.lifespan_context(app):
        pass
    assert "webhook.signatures_disabled" in capfd.readouterr().err


async def test_unusable_secret_stops_the_start(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite:///{tmp_path}/bad.db",
        webhook_signature_scheme=SignatureScheme.STANDARD_WEBHOOKS,
        webhook_secret="whsec_not base64!",
    )
    app = create_app(settings, run_executor=False)
    with pytest.raises(ValueError, match="whsec_<base64>"):
        async with app.router.lifespan_context(app):
            pass
