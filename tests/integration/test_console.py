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


async def test_an_empty_status_from_the_search_form_means_any_status(tmp_path: Path) -> None:
    async with app_client(operator_settings(f"sqlite:///{tmp_path}/c.db")) as client:
        await post(client, "txn_ok_1")
        await log_in(client)
        page = await client.get("/console?q=txn_ok_1&status=")
        assert page.status_code == 200, page.text
        assert "txn_ok_1" in page.text.split('id="recent"')[1]
        paged = await client.get("/console?q=&status=&cursor=&failed_cursor=&conflicts_before=")
        assert paged.status_code == 200


async def test_errors_are_pages_a_person_can_act_on(database_url: str) -> None:
    """A stale Replay button's 409 and an unknown id's 404 are HTML, with a way back."""
    settings = operator_settings(database_url)
    async with app_client(settings) as client:
        await post(client, "stale-1")
        await make_failed(settings, "stale-1")
        await log_in(client)
        csrf = csrf_of((await client.get("/console")).text)
        action = "/console/transactions/stale-1/retry"
        assert (await client.post(action, data={"csrf": csrf}, headers=ORIGIN)).status_code == 303
        stale = await client.post(action, data={"csrf": csrf}, headers=ORIGIN)
        assert stale.status_code == 409
        assert stale.headers["content-type"].startswith("text/html")
        assert "Only FAILED transactions can be replayed" in stale.text
        assert 'href="/console/transactions/stale-1"' in stale.text
        unknown = await client.get("/console/transactions/no-such-id")
        assert unknown.status_code == 404
        assert unknown.headers["content-type"].startswith("text/html")
        assert "No transaction has id" in unknown.text
        assert 'href="/console"' in unknown.text
        bad = await client.get("/console?status=DONE")
        assert (bad.status_code, bad.headers["content-type"][:9]) == (422, "text/html")
        client.cookies.clear()
        logged_out = await client.get("/console/transactions/stale-1")
        assert logged_out.status_code == 401
        assert 'action="/console/login"' in logged_out.text
        stats = await client.get("/console/api/stats")
        assert stats.headers["content-type"] == "application/problem+json", "the API stays JSON"


async def test_conflicts_show_the_refused_bodies_and_what_differs(tmp_path: Path) -> None:
    async with app_client(operator_settings(f"sqlite:///{tmp_path}/c.db")) as client:
        await post(client, "clash-1")
        assert (await post(client, "clash-1", amount="9.99")).status_code == 409
        assert (await post(client, "clash-1", currency="USD")).status_code == 409
        await log_in(client)
        panel = (await client.get("/console")).text.split('id="conflicts"')[1]
        panel = panel.split('id="recent"')[0]
        assert panel.count("<tr data-delivery=") == 2
        assert "&#34;amount&#34;:9.99" in panel
        assert ">amount<" in panel
        assert ">currency<" in panel
        assert "150.50 INR" in panel


async def test_every_panel_pages_past_its_first_screen(tmp_path: Path) -> None:
    settings = operator_settings(f"sqlite:///{tmp_path}/c.db")
    async with app_client(settings) as client:
        ids = [f"many-{n:03d}" for n in range(55)]
        for transaction_id in ids:
            await post(client, transaction_id)
        await make_failed(settings, *ids[:25])
        for transaction_id in ids[:22]:
            await post(client, transaction_id, amount="1")
        await log_in(client)
        seen: dict[str, set[str]] = {"recent": set(), "failed": set(), "conflicts": set()}
        for section, size in (("recent", 50), ("failed", 20), ("conflicts", 20)):
            url = "/console"
            while url:
                page = (await client.get(url)).text
                part = page.split(f'id="{section}"')[1].split("</section>")[0]
                found = re.findall(r'href="/console/transactions/(many-\d+)"', part)
                assert 0 < len(found) <= size
                seen[section].update(found)
                older = re.search(r'<a href="([^"]+)" rel="next">', part)
                url = older.group(1).replace("&amp;", "&") if older else ""
        assert seen == {"recent": set(ids), "failed": set(ids[:25]), "conflicts": set(ids[:22])}


async def test_console_actions_are_audited_under_the_name_given_at_login(tmp_path: Path) -> None:
    settings = operator_settings(f"sqlite:///{tmp_path}/c.db")
    async with app_client(settings) as client:
        await post(client, "who-1")
        await post(client, "who-2")
        await make_failed(settings, "who-1", "who-2")
        named = {"token": TOKEN, "name": "carol"}
        assert (await client.post("/console/login", data=named, headers=ORIGIN)).is_redirect
        csrf = csrf_of((await client.get("/console")).text)
        await client.post("/console/transactions/who-1/retry", data={"csrf": csrf}, headers=ORIGIN)
        client.cookies.clear()
        await log_in(client)
        await client.post("/console/transactions/who-2/retry", data={"csrf": csrf}, headers=ORIGIN)
        for transaction_id, actor in (("who-1", "carol"), ("who-2", "console")):
            url = f"/v1/transactions/{transaction_id}/timeline"
            timeline = await client.get(url, headers=ADMIN)
            [action] = [e for e in timeline.json()["events"] if e["kind"] == "operator_action"]
            assert action["actor"] == actor
