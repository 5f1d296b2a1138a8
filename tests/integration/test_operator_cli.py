"""`payhook purge` on both databases, and `payhook replay` against a real server process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from payhook.cli import main
from payhook.config import Settings
from tests.support.operator_app import (
    ADMIN,
    TOKEN,
    app_client,
    make_failed,
    operator_settings,
    post,
)
from tests.support.processes import PayhookProcess


async def post_all(settings: Settings, *ids: str) -> None:
    async with app_client(settings) as client:
        for transaction_id in ids:
            assert (await post(client, transaction_id)).status_code == 202


async def after_purge(settings: Settings) -> dict[str, object]:
    """What a late re-delivery gets once bodies are purged, and what the timeline shows."""
    async with app_client(settings) as client:
        again = await post(client, "purged-1")
        conflict = await post(client, "purged-1", amount="1")
        timeline = await client.get("/v1/transactions/purged-1/timeline", headers=ADMIN)
        raw = await client.get("/v1/transactions/purged-1/timeline?raw=true", headers=ADMIN)
        return {
            "again": (again.status_code, again.json()),
            "conflict": conflict.status_code,
            "first_purged": timeline.json()["events"][0]["raw_body_purged"],
            "later_kept": raw.json()["events"][1]["raw_body"] is not None,
        }


def last_line(output: str) -> str:
    """The command's own answer, after any log lines."""
    return output.strip().splitlines()[-1]


def test_purge_forgets_bodies_but_not_transactions(database_url: str) -> None:
    settings = operator_settings(database_url)
    asyncio.run(post_all(settings, "purged-1", "purged-2"))
    env = {"DATABASE_URL": database_url}
    refused = CliRunner().invoke(main, ["purge", "--older-than", "90x"], env=env)
    assert refused.exit_code == 2
    kept = CliRunner().invoke(main, ["purge", "--older-than", "90d"], env=env)
    assert last_line(kept.output).startswith("purged 0 raw bodies"), kept.output
    result = CliRunner().invoke(main, ["purge", "--older-than", "0h", "--actor", "ops"], env=env)
    assert result.exit_code == 0, result.output
    assert last_line(result.output).startswith("purged 2 raw bodies")
    seen = asyncio.run(after_purge(settings))
    assert seen["again"] == (
        202,
        {"transaction_id": "purged-1", "status": "PROCESSING", "duplicate": True},
    )
    assert seen["conflict"] == 409
    assert seen["first_purged"] is True
    assert seen["later_kept"] is True


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[PayhookProcess, Settings]]:
    url = f"sqlite:///{tmp_path / 'replay.db'}"
    settings = operator_settings(url)
    asyncio.run(post_all(settings, "r-1", "r-2", "r-3"))
    asyncio.run(make_failed(settings, "r-1", "r-2"))
    env = {
        "DATABASE_URL": url,
        "ADMIN_TOKEN": TOKEN,
        "PROCESSING_DELAY_SECONDS": "3600",
        "EXECUTOR": "embedded",
        "PROCESSING_STEP": "tests.support.steps:record_and_script",
        "PAYHOOK_TEST_CALLS": str(tmp_path / "calls.txt"),
    }
    api = PayhookProcess.serve(env, tmp_path).start()
    try:
        yield api, settings
    finally:
        api.stop()


@pytest.mark.e2e
def test_replay_cli_goes_through_the_api(server: tuple[PayhookProcess, Settings]) -> None:
    api, _ = server
    runner = CliRunner()
    base = ["replay", "--url", api.base_url]
    assert runner.invoke(main, base, env={"ADMIN_TOKEN": TOKEN}).exit_code == 2
    wrong = runner.invoke(main, [*base, "--id", "r-1", "--token", "nope"])
    assert wrong.exit_code == 1
    assert "401" in wrong.output
    one = runner.invoke(
        main,
        [*base, "--id", "r-1", "--reason", "fixed", "--actor", "bob"],
        env={"ADMIN_TOKEN": TOKEN},
    )
    assert last_line(one.output) == "replayed 1 r-1", one.output
    # --provider narrows: r-2 is the generic endpoint's, so as a Stripe payment nothing matches.
    stripe = runner.invoke(
        main, [*base, "--id", "r-2", "--provider", "stripe"], env={"ADMIN_TOKEN": TOKEN}
    )
    assert last_line(stripe.output) == "replayed 0", stripe.output
    rest = runner.invoke(main, [*base, "--all"], env={"ADMIN_TOKEN": TOKEN})
    assert last_line(rest.output) == "replayed 1 r-2"
    timeline = httpx.get(f"{api.base_url}/v1/transactions/r-1/timeline", headers=ADMIN).json()
    [action] = [e for e in timeline["events"] if e["kind"] == "operator_action"]
    assert (action["action"], action["actor"], action["reason"]) == ("retry.bulk", "bob", "fixed")
