"""The console in a real headless Chromium against a real `payhook serve` process.

Debian's `chromium` is driven by Playwright with its executable path set (Playwright's own
browser download is not used). Screenshots go to test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from tests.conftest import missing_service
from tests.support.processes import REPO_ROOT, PayhookProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts"
TOKEN = "browser-test-admin-token-42"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAILING = "fail-until-file-browser"
HEALTHY = "txn_browser_ok"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PayhookProcess]:
    """payhook on SQLite with a step that fails while a flag file exists."""
    if not CHROMIUM.exists():
        missing_service(f"{CHROMIUM} is not installed (Debian: apt-get install chromium)")
    work = tmp_path_factory.mktemp("console")
    (work / "fail.flag").touch()
    (work / "hold.flag").touch()
    env = {
        "DATABASE_URL": f"sqlite:///{work / 'payhook.db'}",
        "ADMIN_TOKEN": TOKEN,
        "PROCESSING_DELAY_SECONDS": "0.2",
        "PROCESSING_STEP": "tests.support.steps:record_and_script",
        "PAYHOOK_TEST_CALLS": str(work / "calls.txt"),
        "PAYHOOK_TEST_FAIL_FLAG": str(work / "fail.flag"),
        # The replayed step waits while it exists, so the page can show PROCESSING.
        "PAYHOOK_TEST_HOLD_FLAG": str(work / "hold.flag"),
        "MAX_RETRIES": "0",
        "RETRY_BACKOFF_SECONDS": "0.1",
    }
    api = PayhookProcess.serve(env, work).start()
    try:
        yield api
    finally:
        api.stop()


def post(base_url: str, transaction_id: str, amount: str = "150.50") -> None:
    raw = (
        f'{{"transaction_id":"{transaction_id}","source_account":"acc_src",'
        f'"destination_account":"acc_dst","amount":{amount},"currency":"INR"}}'
    )
    response = httpx.post(
        f"{base_url}/v1/webhooks/transactions",
        content=raw,
        headers={"content-type": "application/json"},
    )
    assert response.status_code in (202, 409), response.text


def wait_for_status(base_url: str, transaction_id: str, status: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = httpx.get(f"{base_url}/v1/transactions/{transaction_id}").json()[0]["status"]
        if found == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"{transaction_id} did not become {status}")


PLACEHOLDER_FITS = """(input) => {
    const style = getComputedStyle(input);
    const context = document.createElement("canvas").getContext("2d");
    context.font = style.font;
    const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    return [context.measureText(input.placeholder).width, room];
}"""


@pytest.fixture(autouse=True)
def patient_expect() -> Iterator[None]:
    """Every `expect` here waits up to 60 s, then Playwright's default again: only a hang fails.
    (Swagger UI parsing its bundle and rendering every operation took over the default 5 s on a
    loaded 2-core machine under coverage.)"""
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)
    yield
    expect.set_options(timeout=5_000)


def test_console_shows_a_posted_transaction_and_replays_a_failed_one(
    server: PayhookProcess,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    base = server.base_url
    post(base, HEALTHY)
    post(base, "txn_browser_conflict")
    post(base, "txn_browser_conflict", amount="9")
    post(base, FAILING)
    wait_for_status(base, FAILING, "FAILED")
    wait_for_status(base, HEALTHY, "PROCESSED")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/console")
            page.fill("input[name=token]", TOKEN)
            page.fill("input[name=name]", "browser-tester")
            page.click("button[type=submit]")
            expect(page.locator("#recent")).to_contain_text(HEALTHY)
            expect(page.locator("#conflicts")).to_contain_text("txn_browser_conflict")
            expect(page.locator("#conflicts pre")).to_contain_text('"amount":9')
            expect(page.locator("[data-count=FAILED]")).to_have_text("1")
            search = page.locator("#recent input[type=search]")
            text_width, room = search.evaluate(PLACEHOLDER_FITS)
            assert text_width <= room, f"placeholder cut off: {text_width:.0f}px in {room:.0f}px"
            # Once the charts have polled and drawn: below a second in ms, above it with two
            # decimals (the label once said "max 1 s" for milliseconds, its floor).
            expect(page.locator("#lateness-chart")).to_have_attribute(
                "aria-label", re.compile(r"^Lateness: max (\d{1,3} ms|\d+\.\d\d s)$")
            )
            page.screenshot(path=str(ARTIFACTS / "console-dashboard.png"), full_page=True)

            search.fill(HEALTHY)
            with page.expect_navigation() as searched:
                page.click("#recent button[type=submit]")
            assert searched.value is not None
            assert searched.value.status == 200, "the form sends status= for any status"
            assert "status=" in page.url
            expect(page.locator("#recent tbody tr")).to_have_count(1)
            expect(page.locator("#recent")).to_contain_text(HEALTHY)

            page.goto(f"{base}/console")
            stale = browser.new_page(viewport={"width": 1280, "height": 900})
            # The cookies read back are what add_cookies takes (playwright types them apart).
            stale.context.add_cookies(cast(Any, page.context.cookies()))
            stale.goto(f"{base}/console")
            (Path(server.env["PAYHOOK_TEST_FAIL_FLAG"])).unlink()
            page.locator(f"#failed button[data-replay='{FAILING}']").click()
            status = page.locator("#status")
            expect(status).to_have_text("PROCESSING")
            page.screenshot(path=str(ARTIFACTS / "console-replayed.png"), full_page=True)
            Path(server.env["PAYHOOK_TEST_HOLD_FLAG"]).unlink()

            stale.locator(f"#failed button[data-replay='{FAILING}']").click()
            expect(stale.locator("h1")).to_contain_text("Not replayable")
            expect(stale.locator(".problem")).to_contain_text("Only FAILED transactions")
            stale.screenshot(path=str(ARTIFACTS / "console-stale-replay.png"), full_page=True)
            stale.get_by_role("link", name=f"See {FAILING} as it is now").click()
            expect(stale.locator("#status")).to_be_visible()

            deadline = time.monotonic() + 30  # the page shows what it was served: reload
            while time.monotonic() < deadline:
                page.reload()
                if status.inner_text() == "PROCESSED":
                    break
                page.wait_for_timeout(200)
            expect(status).to_have_text("PROCESSED")
            timeline = page.locator("table.timeline")
            expect(timeline).to_contain_text("Operator: retry")
            expect(timeline).to_contain_text("by browser-tester")
            # One failed attempt, the replay, then the next attempt: 2, not a second "1".
            expect(timeline).to_contain_text("Processing attempt 1")
            expect(timeline).to_contain_text("Processing attempt 2")
            page.screenshot(path=str(ARTIFACTS / "console-timeline.png"), full_page=True)

            page.goto(f"{base}/console/transactions/txn_browser_unknown")
            expect(page.locator("h1")).to_contain_text("Not found")
            expect(page.get_by_role("link", name="Back to the console")).to_be_visible()
        finally:
            browser.close()


def test_api_docs_render_with_nothing_but_the_service(server: PayhookProcess) -> None:
    """/docs loads Swagger UI from payhook itself: every other host is cut off here."""
    from playwright.sync_api import Route, expect, sync_playwright

    elsewhere: list[str] = []

    def only_the_service(route: Route) -> None:
        if route.request.url.startswith(server.base_url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", only_the_service)
            page.goto(f"{server.base_url}/docs")
            operation = page.locator(".opblock-summary-path", has_text="/v1/webhooks/transactions")
            expect(operation.first).to_be_visible()
            document = httpx.get(f"{server.base_url}/openapi.json").json()
            operations = sum(len(methods) for methods in document["paths"].values())
            expect(page.locator(".opblock")).to_have_count(operations)
            page.screenshot(path=str(ARTIFACTS / "api-docs.png"))
        finally:
            browser.close()
    assert elsewhere == []
