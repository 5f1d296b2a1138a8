"""Findings of the outside testing (issue 13), through the ASGI app: each answered with a 4xx
problem+json that changes nothing, or with the behaviour docs/SECURITY.md now describes."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payhook.operators.schemas import CURSOR_PATTERN, MAX_CURSOR_LENGTH
from tests.support.operator_app import (
    ADMIN,
    TOKEN,
    app_client,
    execute,
    make_failed,
    operator_settings,
    post,
)

pytestmark = pytest.mark.anyio
ORIGIN = {"Origin": "http://payhook.test"}
JSON = {"content-type": "application/json"}


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/hardening.db"


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


def assert_console_error(response: httpx.Response, status: int) -> None:
    """The console answers errors with a page (issue 14), the status still the problem's."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")


async def log_in(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/console/login", data={"token": TOKEN}, headers=ORIGIN)


# --- 2: operator bodies are read only after authentication -----------------------------------


@pytest.mark.parametrize("path", ["/v1/transactions/retry", "/v1/transactions/x/retry"])
async def test_without_admin_token_a_malformed_body_is_404_not_422(
    tmp_path: Path, path: str
) -> None:
    settings = operator_settings(sqlite(tmp_path), admin_token=None)
    async with app_client(settings) as client:
        for content in (b"{not json", b'{"limit": "x"}', "\ufeff{}".encode("utf-16")):
            assert_problem(await client.post(path, content=content, headers=JSON), 404)


async def test_without_the_token_a_body_is_not_read_and_the_connection_closes(
    tmp_path: Path,
) -> None:
    async with app_client(operator_settings(sqlite(tmp_path))) as client:
        answer = await client.post("/v1/transactions/retry", content=b"{" * 100, headers=JSON)
        assert_problem(answer, 401)
        assert answer.headers["connection"] == "close"


async def test_operator_and_console_bodies_are_bounded(tmp_path: Path) -> None:
    async with app_client(operator_settings(sqlite(tmp_path))) as client:
        huge = b'{"ids": [' + b'"x",' * 1_100_000 + b'"x"]}'
        assert_problem(
            await client.post("/v1/transactions/retry", content=huge, headers={**ADMIN, **JSON}),
            413,
        )
        form = {"token": "x" * 20_000}
        assert_console_error(await client.post("/console/login", data=form, headers=ORIGIN), 413)


# --- 5: no 500s -------------------------------------------------------------------------------


async def test_an_exponent_beyond_decimal_is_a_400_in_any_field(tmp_path: Path) -> None:
    async with app_client(operator_settings(sqlite(tmp_path))) as client:
        huge = "1e9999999999999999999"
        for document in (
            f'{{"transaction_id": "e1", "source_account": "a", "destination_account": "b", '
            f'"amount": {huge}, "currency": "USD"}}',
            f'{{"transaction_id": "e2", "source_account": "a", "destination_account": "b", '
            f'"amount": 1, "currency": "USD", "extra": [{huge}]}}',
        ):
            answer = await client.post("/v1/webhooks/transactions", content=document, headers=JSON)
            assert_problem(answer, 400)
            assert "Traceback" not in answer.text
        for key in ("e1", "e2"):
            assert (await client.get(f"/v1/transactions/{key}")).status_code == 404


async def test_a_login_form_with_too_many_fields_is_a_400(tmp_path: Path) -> None:
    async with app_client(operator_settings(sqlite(tmp_path))) as client:
        form = {f"f{i}": "x" for i in range(21)}
        answer = await client.post("/console/login", data=form, headers=ORIGIN)
        assert_console_error(answer, 400)
        assert "at most 20 fields" in answer.text


async def test_a_cursor_of_brackets_is_not_a_500(tmp_path: Path) -> None:
    async with app_client(operator_settings(sqlite(tmp_path))) as client:
        brackets = await client.get(
            "/v1/transactions", params={"cursor": "[" * 1500}, headers=ADMIN
        )
        assert_problem(brackets, 422)
        # base64url of 1,500 "[": once decoded as nested JSON (RecursionError, a 500); now a
        # cursor of the documented shape, so a page.
        encoded = base64.urlsafe_b64encode(b"[" * 1500).decode().rstrip("=")
        page = await client.get("/v1/transactions", params={"cursor": encoded}, headers=ADMIN)
        assert page.status_code == 200, page.text


# --- 14: every cursor of the documented shape is accepted -------------------------------------


async def test_every_cursor_of_the_documented_shape_is_accepted(tmp_path: Path) -> None:
    async with app_client(operator_settings(sqlite(tmp_path))) as client:
        for key in ("c1", "c2", "c3"):
            await post(client, key)
        cursors = st.from_regex(CURSOR_PATTERN, fullmatch=True).filter(
            lambda c: len(c) <= MAX_CURSOR_LENGTH
        )
        seen: list[str] = []

        @given(cursors)
        @settings(max_examples=60, database=None, suppress_health_check=list(HealthCheck))
        def collect(cursor: str) -> None:
            seen.append(cursor)

        collect()
        for cursor in [*seen, "AAAAAAAAAAA", "_" * 11, "A" * 2047]:
            if not re.fullmatch(CURSOR_PATTERN, cursor):
                continue
            params = {"cursor": cursor}
            answer = await client.get("/v1/transactions", params=params, headers=ADMIN)
            assert answer.status_code == 200, (cursor, answer.text)


# --- 6: look-alike ids ------------------------------------------------------------------------

LOOK_ALIKES = {
    "nfd": "caf\u0065\u0301",
    "zero-width-space": "txn\u200b1",
    "zero-width-joiner": "txn\u200d1",
    "word-joiner": "txn\u20601",
    "bom": "\ufefftxn1",
    "soft-hyphen": "txn\u00ad1",
    "tag": "txn\U000e00311",
    "nbsp": "txn\u00a01",
    "trailing-space": "txn1 ",
    "leading-space": " txn1",
    "ideographic-space": "txn\u30001",
    "line-separator": "txn\u20281",
}


@pytest.mark.parametrize("look_alike", LOOK_ALIKES.values(), ids=LOOK_ALIKES.keys())
async def test_look_alike_ids_are_refused(database_url: str, look_alike: str) -> None:
    async with app_client(operator_settings(database_url)) as client:
        assert (await post(client, "txn1")).status_code == 202
        for field in ("transaction_id", "source_account"):
            document = {
                "transaction_id": "txn1",
                "source_account": "acc",
                "destination_account": "acc2",
                "amount": 5,
                "currency": "USD",
                field: look_alike,
            }
            raw = json.dumps(document).encode()
            answer = await client.post("/v1/webhooks/transactions", content=raw, headers=JSON)
            assert_problem(answer, 422)
        page = await client.get("/v1/transactions", headers=ADMIN)
        assert [item["transaction_id"] for item in page.json()["items"]] == ["txn1"]


async def test_an_nfc_id_with_inner_spaces_is_accepted(tmp_path: Path) -> None:
    async with app_client(operator_settings(sqlite(tmp_path))) as client:
        for key in ("caf\u00e9 au lait", "order 42/7"):
            assert (await post(client, key)).status_code == 202


# --- 7: console links keep a transaction's id in one path segment ------------------------------


async def test_a_console_replay_button_replays_its_own_row(database_url: str) -> None:
    settings = operator_settings(database_url)
    tricky, other = "FAIL/../../transactions/FAILother", "FAILother"
    async with app_client(settings) as client:
        await post(client, tricky)
        await post(client, other)
        await make_failed(settings, tricky, other)
        await log_in(client)
        page = await client.get("/console")
        action = "/console/transactions/FAIL%2F..%2F..%2Ftransactions%2FFAILother/retry"
        assert f'action="{action}"' in page.text
        assert 'href="/console/transactions/FAIL%2F..%2F..%2Ftransactions%2FFAILother"' in page.text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert csrf
        # What a browser posts: the action as written (it resolves no dot segment inside %2F).
        url = httpx.URL("http://payhook.test").join(action)
        assert url.raw_path.decode() == action
        answer = await client.post(
            action, data={"csrf": csrf.group(1), "reason": "mine"}, headers=ORIGIN
        )
        assert answer.status_code == 303, answer.text
        statuses = {
            key: (await client.get(f"/v1/transactions/{quote(key, safe='')}")).json()[0]["status"]
            for key in (tricky, other)
        }
        assert statuses == {tricky: "PROCESSING", other: "FAILED"}
        timeline = await client.get(
            "/console/transactions/FAIL%2F..%2F..%2Ftransactions%2FFAILother"
        )
        assert timeline.status_code == 200
        assert "mine" in timeline.text


# --- 8: sessions ------------------------------------------------------------------------------


async def test_logout_ends_the_session_for_every_copy_of_the_cookie(database_url: str) -> None:
    async with app_client(operator_settings(database_url)) as client:
        await log_in(client)
        cookie = client.cookies.get("payhook_console")
        assert cookie
        assert TOKEN not in cookie
        page = await client.get("/console")
        assert page.status_code == 200
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert csrf
        out = await client.post("/console/logout", data={"csrf": csrf.group(1)}, headers=ORIGIN)
        assert out.status_code == 303
        # A copy kept by whoever saw the cookie no longer works.
        client.cookies.set("payhook_console", cookie, domain="payhook.test", path="/console")
        assert (await client.get("/console/api/stats")).status_code == 401
        assert (await client.get("/console")).status_code == 401


async def test_a_session_ends_at_its_server_side_expiry(database_url: str) -> None:
    settings = operator_settings(database_url)
    async with app_client(settings) as client:
        await log_in(client)
        assert (await client.get("/console/api/stats")).status_code == 200
        await execute(settings, "UPDATE console_sessions SET expires_at = created_at")
        assert (await client.get("/console/api/stats")).status_code == 401


async def test_a_forged_or_other_token_cookie_is_refused(tmp_path: Path) -> None:
    async with app_client(operator_settings(sqlite(tmp_path))) as client:
        for forged in ("x.y", "", "a" * 43 + "." + "0" * 64):
            client.cookies.set("payhook_console", forged, domain="payhook.test", path="/console")
            assert (await client.get("/console/api/stats")).status_code == 401


async def test_failed_logins_are_logged_and_throttled(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    async with app_client(operator_settings(sqlite(tmp_path))) as client:
        answers = [
            (await client.post("/console/login", data={"token": "guess"}, headers=ORIGIN))
            for _ in range(12)
        ]
        assert [a.status_code for a in answers] == [401] * 10 + [429] * 2
        assert int(answers[-1].headers["retry-after"]) >= 1
        # Even the right token waits: the throttle does not tell a guess from the token.
        assert (await log_in(client)).status_code == 429
    logged = [
        json.loads(line) for line in capfd.readouterr().err.splitlines() if "console." in line
    ]
    failed = [line for line in logged if line["event"] == "console.login_failed"]
    assert len(failed) == 10
    assert failed[-1]["client"] == "127.0.0.1"
    assert failed[-1]["failures_in_window"] == 10
    assert any(line["event"] == "console.login_throttled" for line in logged)


# --- 9: a bulk replay must say what it replays -------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"filter": {}},
        {"filter": {"status": "FAILED"}},
        {"filter": {"status": "PROCESSED"}},
        {"reason": "x"},
        {"all": False},
    ],
)
async def test_a_bulk_replay_without_ids_filter_or_all_is_refused(
    tmp_path: Path, body: dict[str, object]
) -> None:
    settings = operator_settings(sqlite(tmp_path))
    async with app_client(settings) as client:
        await post(client, "bulk-1")
        await make_failed(settings, "bulk-1")
        answer = await client.post("/v1/transactions/retry", json=body, headers=ADMIN)
        assert_problem(answer, 422)
        assert '"all": true' in answer.json()["detail"]
        assert (await client.get("/v1/transactions/bulk-1")).json()[0]["status"] == "FAILED"
        everything = await client.post("/v1/transactions/retry", json={"all": True}, headers=ADMIN)
        assert everything.json()["transaction_ids"] == ["bulk-1"]


async def test_a_bulk_replay_narrowed_by_provider_is_taken_as_docs_api_says(
    tmp_path: Path,
) -> None:
    """`provider` and `payment_state` narrow a bulk replay like any other condition."""
    settings = operator_settings(sqlite(tmp_path))
    async with app_client(settings) as client:
        await post(client, "bulk-generic")
        await make_failed(settings, "bulk-generic")
        for narrowing in ({"provider": "none"}, {"payment_state": "captured"}):
            answer = await client.post(
                "/v1/transactions/retry", json={"filter": narrowing}, headers=ADMIN
            )
            assert answer.status_code == 200, answer.text
        # Only the generic one was FAILED: it was replayed by the first, none by the second.
        assert (await client.get("/v1/transactions/bulk-generic")).json()[0]["status"] == (
            "PROCESSING"
        )


# --- 10: nosniff, Host check, UTF-8 only -------------------------------------------------------


async def test_every_response_says_nosniff(tmp_path: Path) -> None:
    async with app_client(operator_settings(sqlite(tmp_path))) as client:
        for answer in (
            await client.get("/"),
            await client.get("/v1/transactions/none"),
            await post(client, "nosniff-1"),
            await client.get("/console"),
            await client.get("/openapi.json"),
        ):
            assert answer.headers["x-content-type-options"] == "nosniff"


async def test_allowed_hosts_refuses_other_host_names(tmp_path: Path) -> None:
    settings = operator_settings(sqlite(tmp_path), allowed_hosts="payhook.test, *.payhook.dev")
    async with app_client(settings) as client:
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/", headers={"host": "a.payhook.dev:8443"})).status_code == 200
        for host in ("evil.example", "payhook.test.evil.example", "payhook.dev"):
            answer = await client.get("/", headers={"host": host})
            assert_problem(answer, 400)
        refused = await post_with_host(client, "evil.example")
        assert_problem(refused, 400)
        assert (await client.get("/v1/transactions/host-1")).status_code == 404


async def post_with_host(client: httpx.AsyncClient, host: str) -> httpx.Response:
    raw = (
        b'{"transaction_id": "host-1", "source_account": "a", "destination_account": "b", '
        b'"amount": 1, "currency": "USD"}'
    )
    return await client.post(
        "/v1/webhooks/transactions", content=raw, headers={**JSON, "host": host}
    )


async def test_allowed_hosts_defaults_to_every_host(tmp_path: Path) -> None:
    async with app_client(operator_settings(sqlite(tmp_path))) as client:
        assert (await client.get("/", headers={"host": "anything.example"})).status_code == 200


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
async def test_json_bodies_must_be_utf8(tmp_path: Path, encoding: str) -> None:
    document = (
        '{"transaction_id": "enc-\u00e9", "source_account": "a", "destination_account": "b", '
        '"amount": 1, "currency": "USD"}'
    )
    async with app_client(operator_settings(sqlite(tmp_path))) as client:
        raw = document.encode(encoding)
        answer = await client.post("/v1/webhooks/transactions", content=raw, headers=JSON)
        assert_problem(answer, 400)
        bulk = json.dumps({"all": True}).encode(encoding)
        answer = await client.post(
            "/v1/transactions/retry", content=bulk, headers={**ADMIN, **JSON}
        )
        assert_problem(answer, 400)
        assert (await client.get("/v1/transactions/enc-\u00e9")).status_code == 404


async def test_an_empty_filter_value_does_not_count_as_narrowing(tmp_path: Path) -> None:
    async with app_client(operator_settings(sqlite(tmp_path))) as client:
        body = {"filter": {"account": "", "q": ""}}
        answer = await client.post("/v1/transactions/retry", json=body, headers=ADMIN)
        assert_problem(answer, 422)
