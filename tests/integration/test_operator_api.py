"""Operator API through the real ASGI app, on SQLite and PostgreSQL: auth, listing, timelines."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from payhook.operators.service import encode_cursor
from tests.support.operator_app import (
    ADMIN,
    TOKEN,
    add_failed_attempt,
    app_client,
    make_failed,
    operator_settings,
    post,
    set_due,
)

pytestmark = pytest.mark.anyio

OPERATOR_ROUTES = [
    ("GET", "/v1/transactions"),
    ("GET", "/v1/transactions/t-1/timeline"),
    ("POST", "/v1/transactions/t-1/retry"),
    ("POST", "/v1/transactions/retry"),
    ("GET", "/metrics"),
    ("GET", "/console"),
    ("GET", "/console/api/stats"),
]


async def test_without_admin_token_operator_routes_do_not_exist(tmp_path: Path) -> None:
    settings = operator_settings(f"sqlite:///{tmp_path}/a.db", admin_token=None)
    async with app_client(settings) as client:
        assert (await post(client, "t-1")).status_code == 202
        for method, path in OPERATOR_ROUTES:
            response = await client.request(method, path, headers=ADMIN, json={})
            assert response.status_code == 404, (method, path, response.text)
            assert "t-1" not in response.text


async def test_wrong_or_missing_token_gets_401_and_the_contract_stays_open(
    tmp_path: Path,
) -> None:
    async with app_client(operator_settings(f"sqlite:///{tmp_path}/a.db")) as client:
        assert (await post(client, "t-1")).status_code == 202
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            for method, path in OPERATOR_ROUTES[:5]:
                response = await client.request(method, path, headers=headers, json={})
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"].startswith("Bearer")
        assert (await client.get("/v1/transactions/t-1")).status_code == 200
        assert (await client.get("/")).status_code == 200
        listed = await client.get("/v1/transactions", headers=ADMIN)
        assert [t["transaction_id"] for t in listed.json()["items"]] == ["t-1"]


async def test_pages_run_newest_first_without_gaps_or_repeats(database_url: str) -> None:
    async with app_client(operator_settings(database_url)) as client:
        ids = [f"page-{n}" for n in range(7)]
        for transaction_id in ids:
            assert (await post(client, transaction_id)).status_code == 202
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/v1/transactions", params=params, headers=ADMIN)).json()
            seen += [item["transaction_id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == list(reversed(ids))
        bad = await client.get("/v1/transactions", params={"cursor": "nope"}, headers=ADMIN)
        assert bad.status_code == 422  # not of the documented shape


async def test_filters(database_url: str) -> None:
    settings = operator_settings(database_url)
    async with app_client(settings) as client:
        await post(client, "f-usd", currency="USD", source_account="acc_rich")
        await post(client, "f-inr")
        await post(client, "f-conflict")
        assert (await post(client, "f-conflict", amount="9")).status_code == 409
        await post(client, "f-failed")
        await make_failed(settings, "f-failed")
        await set_due(settings, "f-inr", datetime.now(UTC) - timedelta(hours=1))

        async def ids(**params: str) -> set[str]:
            response = await client.get("/v1/transactions", params=params, headers=ADMIN)
            assert response.status_code == 200, response.text
            return {item["transaction_id"] for item in response.json()["items"]}

        assert await ids(status="FAILED") == {"f-failed"}
        assert await ids(currency="USD") == {"f-usd"}
        assert await ids(account="acc_rich") == {"f-usd"}
        assert await ids(conflicted="true") == {"f-conflict"}
        assert await ids(late="true") == {"f-inr"}
        assert await ids(q="f-c") == {"f-conflict"}
        assert await ids(q="F-C") == set()  # a prefix is exact: SQLite's LIKE ignores case
        assert await ids(currency="usd") == {"f-usd"}  # codes are stored upper case
        assert await ids(created_after="2100-01-01T00:00:00Z") == set()
        assert len(await ids(conflicted="false")) == 3


async def test_timeline_shows_deliveries_attempts_and_operator_actions(database_url: str) -> None:
    settings = operator_settings(database_url)
    async with app_client(settings) as client:
        await post(client, "tl-1")
        await post(client, "tl-1")  # the same body again: counted on the first delivery's row
        await post(client, "tl-1", amount="150.5")  # the same content in other bytes: kept
        await post(client, "tl-1", amount="1")
        await add_failed_attempt(settings, "tl-1", "boom")
        await make_failed(settings, "tl-1")
        retried = await client.post(
            "/v1/transactions/tl-1/retry", json={"reason": "provider fixed"}, headers=ADMIN
        )
        assert retried.json() == {"retried": 1, "transaction_ids": ["tl-1"]}
        timeline = await client.get("/v1/transactions/tl-1/timeline?raw=true", headers=ADMIN)
        events = timeline.json()["events"]
        kinds = [(e["kind"], e["outcome"] or e["action"]) for e in events]
        assert kinds == [
            ("delivery", "accepted"),
            ("delivery", "duplicate"),
            ("delivery", "conflict"),
            ("attempt", "failed"),
            ("operator_action", "retry"),
        ]
        assert {e["signature"] for e in events[:3]} == {"none"}
        assert [e["repeats"] for e in events[:3]] == [2, 1, 1]
        assert '"amount":1,' in events[2]["raw_body"]
        assert events[3]["error"] == "boom"
        action = events[4]
        assert (action["actor"], action["reason"]) == ("alice", "provider fixed")
        assert action["detail"] == {"previous_attempts": 4, "last_error": "boom"}
        assert timeline.json()["transaction"]["status"] == "PROCESSING"
        missing = await client.get("/v1/transactions/nope/timeline", headers=ADMIN)
        assert missing.status_code == 404


async def test_attempt_numbers_carry_on_after_a_replay(database_url: str) -> None:
    """A replay resets the retry budget; the timeline still counts on (4 failed, then 5)."""
    settings = operator_settings(database_url)
    async with app_client(settings) as client:
        await post(client, "again-1")
        await add_failed_attempt(settings, "again-1", "first run")
        await make_failed(settings, "again-1")
        assert (await client.post("/v1/transactions/again-1/retry", headers=ADMIN)).is_success
        await add_failed_attempt(settings, "again-1", "after the replay")
        timeline = await client.get("/v1/transactions/again-1/timeline", headers=ADMIN)
        attempts = [e for e in timeline.json()["events"] if e["kind"] == "attempt"]
        assert [(e["attempt"], e["error"]) for e in attempts] == [
            (1, "first run"),
            (5, "after the replay"),
        ]


async def test_empty_query_parameters_mean_no_filter(database_url: str) -> None:
    """The README's template, copied as written, and a browser form's `status=` list all."""
    async with app_client(operator_settings(database_url)) as client:
        await post(client, "empty-1")
        await post(client, "empty-2", currency="USD")
        template = (
            "status=&created_after=&created_before=&account=&currency=&late="
            "&late_after_seconds=5&conflicted=&q=&limit=50&cursor="
        )
        listed = await client.get(f"/v1/transactions?{template}", headers=ADMIN)
        assert listed.status_code == 200, listed.text
        assert {t["transaction_id"] for t in listed.json()["items"]} == {"empty-1", "empty-2"}
        empty_limit = await client.get("/v1/transactions?limit=&late_after_seconds=", headers=ADMIN)
        assert len(empty_limit.json()["items"]) == 2
        narrowed = await client.get("/v1/transactions?status=&currency=USD", headers=ADMIN)
        assert [t["transaction_id"] for t in narrowed.json()["items"]] == ["empty-2"]
        bulk = {"filter": {"status": "", "currency": "", "q": "empty-"}, "limit": 10}
        replayed = await client.post("/v1/transactions/retry", json=bulk, headers=ADMIN)
        assert replayed.json() == {"retried": 0, "transaction_ids": []}
        still_refused = await client.get("/v1/transactions?status=DONE", headers=ADMIN)
        assert still_refused.status_code == 422


async def test_tiny_and_large_amounts_come_back_in_plain_notation(database_url: str) -> None:
    """1E-18 is a valid JSON number, but not what the provider sent nor what a person reads."""
    async with app_client(operator_settings(database_url)) as client:
        await post(client, "tiny-1", amount="0.000000000000000001")
        await post(client, "big-1", amount="10000000000000000000")
        contract = await client.get("/v1/transactions/tiny-1")
        assert '"amount": 0.000000000000000001,' in contract.text
        listed = (await client.get("/v1/transactions?q=", headers=ADMIN)).text
        assert "0.000000000000000001" in listed
        assert "10000000000000000000" in listed
        assert "E-" not in listed
        assert "E+" not in listed


async def test_only_failed_ones_are_replayed_and_concurrent_replays_count_once(
    database_url: str,
) -> None:
    settings = operator_settings(database_url)
    async with app_client(settings) as client:
        for transaction_id in ("b-1", "b-2", "b-3", "b-ok"):
            await post(client, transaction_id)
        await make_failed(settings, "b-1", "b-2", "b-3")
        not_failed = await client.post("/v1/transactions/b-ok/retry", headers=ADMIN)
        problem = not_failed.json()
        assert (not_failed.status_code, problem["status"]) == (409, 409)
        assert problem["transaction_status"] == "PROCESSING"
        assert (await client.post("/v1/transactions/nope/retry", headers=ADMIN)).status_code == 404
        bulk = {"filter": {"q": "b-"}, "reason": "outage over"}
        answers = await asyncio.gather(
            *(client.post("/v1/transactions/retry", json=bulk, headers=ADMIN) for _ in range(3))
        )
        assert sum(a.json()["retried"] for a in answers) == 3
        listed = await client.get("/v1/transactions", params={"q": "b-"}, headers=ADMIN)
        assert {t["status"] for t in listed.json()["items"]} == {"PROCESSING"}
        assert {t["attempts"] for t in listed.json()["items"]} == {0}
        by_ids = {"ids": ["b-ok"], "limit": 5}
        none = await client.post("/v1/transactions/retry", json=by_ids, headers=ADMIN)
        assert none.json() == {"retried": 0, "transaction_ids": []}
        too_many = {"limit": 10_001}
        big = await client.post("/v1/transactions/retry", json=too_many, headers=ADMIN)
        assert big.status_code == 422


async def test_input_no_stored_row_could_match_is_refused_not_blamed_on_storage(
    database_url: str,
) -> None:
    """A NUL (PostgreSQL refuses it in text) or an instant outside year 1..9999 in UTC once
    reached the driver and came back as 503 "storage unavailable": now 422, 400, or a filter
    (and the contract's GET, for which any id that cannot be stored is simply unknown: 404);
    a cursor of the documented shape always names a position."""
    async with app_client(operator_settings(database_url)) as client:
        await post(client, "in-range")
        nul_cursor = encode_cursor((datetime.now(UTC), "x\x00"))
        early = timezone(timedelta(hours=5))
        far_cursor = encode_cursor((datetime(1, 1, 1, tzinfo=early), "x"))
        refused: list[tuple[str, str, dict[str, Any], int]] = [
            ("GET", "/v1/transactions", {"params": {"q": "a\x00"}}, 422),
            ("GET", "/v1/transactions", {"params": {"account": "a\x00"}}, 422),
            ("GET", "/v1/transactions", {"params": {"currency": "\x00\x00\x00"}}, 422),
            ("GET", "/v1/transactions/a%00b/timeline", {}, 422),
            ("POST", "/v1/transactions/a%00b/retry", {}, 422),
            ("GET", "/v1/transactions/a%00b", {}, 404),
            ("POST", "/v1/transactions/in-range/retry", {"json": {"reason": "a\x00"}}, 422),
            ("POST", "/v1/transactions/retry", {"json": {"ids": ["a\x00"]}}, 422),
            ("POST", "/v1/transactions/retry", {"json": {"filter": {"q": "a\x00"}}}, 422),
        ]
        for method, url, options, status in refused:
            answer = await client.request(method, url, headers=ADMIN, **options)
            assert answer.status_code == status, (method, url, options, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
        everything = {
            "created_after": "0001-01-01T00:00:00+05:00",
            "created_before": "9999-12-31T23:59:59-05:00",
        }
        listed = await client.get("/v1/transactions", params=everything, headers=ADMIN)
        assert [t["transaction_id"] for t in listed.json()["items"]] == ["in-range"]
        # Every cursor of the documented shape is a position: a NUL reads as U+FFFD, an instant
        # before year 1 in UTC as the first one.
        for cursor in (nul_cursor, far_cursor):
            page = await client.get("/v1/transactions", params={"cursor": cursor}, headers=ADMIN)
            assert page.status_code == 200, page.text


async def test_values_of_the_wrong_type_are_refused_not_coerced(database_url: str) -> None:
    """Lax parsing took 0.0 for false, "5" for 5, 150.5 for a time and the last of repeated
    parameters; each is now a 422, while what the document describes is still accepted."""
    async with app_client(operator_settings(database_url)) as client:
        for bad in (
            {"filter": {"late": 0.0}},
            {"filter": {"conflicted": "true"}},
            {"filter": {"late_after_seconds": "5"}},
            {"filter": {"created_after": 1_700_000_000}},
            {"limit": "5"},
            {"limit": True},
        ):
            answer = await client.post("/v1/transactions/retry", json=bad, headers=ADMIN)
            assert answer.status_code == 422, bad
        good = {"filter": {"late": False, "late_after_seconds": 2}, "limit": 300.0}
        assert (await client.post("/v1/transactions/retry", json=good, headers=ADMIN)).is_success
        for query in ("late=0", "late=yes", "created_before=150.5", "late=true&late=false"):
            answer = await client.get(f"/v1/transactions?{query}", headers=ADMIN)
            assert answer.status_code == 422, query
        fine = "late=true&created_before=2026-01-31T12:00:00%2B05:30&limit=300"
        assert (await client.get(f"/v1/transactions?{fine}", headers=ADMIN)).is_success


async def test_ids_with_slashes_have_timelines_and_replays(database_url: str) -> None:
    """Ids may hold slashes (GET /v1/transactions/{id} takes them); the operator routes did not."""
    settings = operator_settings(database_url)
    async with app_client(settings) as client:
        await post(client, "acme/2026/42")
        await make_failed(settings, "acme/2026/42")
        timeline = await client.get("/v1/transactions/acme/2026/42/timeline", headers=ADMIN)
        assert timeline.json()["transaction"]["transaction_id"] == "acme/2026/42"
        replay = await client.post("/v1/transactions/acme/2026/42/retry", headers=ADMIN)
        assert replay.json() == {"retried": 1, "transaction_ids": ["acme/2026/42"]}
