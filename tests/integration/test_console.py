"""The console through the real ASGI app: login, pages, CSRF-protected replay, assets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from tests.support.operator_app import (
    ADMIN,
    TOKEN,
    app_client,
    make_failed,
    operator_settings,
    post,
)

pytestmark = pytest.mark.anyio
ORIGIN = {"Origin": "http://payhook.test"}


async def log_in(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/console/login", data={"token": TOKEN}, headers=ORIGIN)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, page
    return found.group(1)


async def test_login_sets_a_strict_httponly_cookie_holding_no_token(tmp_path: Path) -> None:
    async with app_client(operator_settings(f"sqlite:///{tmp_path}/c.db")) as client:
        page = await client.get("/console")
        assert page.status_code == 401
        assert 'action="/console/login"' in page.text
        wrong = await client.post("/console/login", data={"token": "guess"}, headers=ORIGIN)
        assert wrong.status_code == 401
        assert (await client.get("/console/api/stats")).status_code == 401
        response = await log_in(client)
        assert response.status_code == 303
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert TOKEN not in cookie
        stats = await client.get("/console/api/stats")
        assert stats.status_code == 200
        assert len(stats.json()["ingest_per_second"]) == 60


async def test_dashboard_lists_and_the_replay_button_needs_the_form_token(
    database_url: str,
) -> None:
    settings = operator_settings(database_url)
    async with app_client(settings) as client:
        await post(client, "console-ok")
        await post(client, "console-bad")
        await post(client, "console-bad", amount="3")
        await make_failed(settings, "console-bad")
        await log_in(client)
        page = await client.get("/console")
        assert page.status_code == 200
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "console-ok" in page.text
        assert 'data-replay="console-bad"' in page.text
        searched = await client.get("/console", params={"q": "console-o"})
        assert "console-ok" in searched.text.split('id="recent"')[1]
        assert "console-bad" not in searched.text.split('id="recent"')[1]
        action = "/console/transactions/console-bad/retry"
        csrf = csrf_of(page.text)
        forged = await client.post(action, data={"csrf": csrf}, headers={"Origin": "http://evil"})
        assert forged.status_code == 403
        assert (await client.post(action, data={}, headers=ORIGIN)).status_code == 403
        nul = await client.post(action, data={"csrf": csrf, "reason": "a\x00b"}, headers=ORIGIN)
        assert nul.status_code == 422, "a NUL in the reason must not reach PostgreSQL as a 503"
        done = await client.post(action, data={"csrf": csrf, "reason": "why"}, headers=ORIGIN)
        assert done.status_code == 303
        timeline = await client.get(done.headers["location"])
        assert 'id="status">PROCESSING' in timeline.text
        assert "Operator: retry" in timeline.text
        assert "why" in timeline.text


async def test_assets_are_served_by_the_service(tmp_path: Path) -> None:
    async with app_client(operator_settings(f"sqlite:///{tmp_path}/c.db")) as client:
        script = await client.get("/console/static/console.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert (await client.get("/console/static/console.css")).status_code == 200
        assert (await client.get("/console/static/../router.py")).status_code == 404
        page = (await client.get("/console")).text
        assert "http://" not in page
        assert "https://" not in page


async def test_operator_actions_are_logged_as_json_with_the_request_id(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = operator_settings(f"sqlite:///{tmp_path}/c.db", log_format="json")
    async with app_client(settings) as client:
        await post(client, "logged-1")
        await make_failed(settings, "logged-1")
        headers = {**ADMIN, "X-Request-ID": "req-console-42"}
        assert (await client.post("/v1/transactions/logged-1/retry", headers=headers)).is_success
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if "{" in line[:1]]
    [replayed] = [line for line in lines if line["event"] == "operator.replayed"]
    assert replayed["request_id"] == "req-console-42"
    assert (replayed["actor"], replayed["transaction_ids"]) == ("alice", ["logged-1"])
