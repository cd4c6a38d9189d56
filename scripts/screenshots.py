"""Regenerate the screenshots in docs/screenshots/ (`make screenshots`).

Starts a gateway with its embedded simulator on a free loopback port (records in a temporary
directory), drives the system Chromium through Playwright, and writes:

- chat-midstream.png: the chat page while an answer streams;
- chat-agent.png: a conversation of two turns with an agent, the last one's steps opened;
- ops-under-load.png: the operations center with about 200 live sessions;
- session-telemetry.png: a finished session's page with its final telemetry;
- login.png: the login page of a gateway with ``[auth] required`` on;
- ops-viewer.png: that gateway's operations center as a viewer sees it (no Stop or Retry).

``python scripts/screenshots.py login ops-viewer`` writes only the images named.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Browser, Page, async_playwright, expect

from sluice.config import AgentConfig, ProviderConfig, load_settings
from sluice.gateway.app import create_app
from sluice.gateway.server import RunningServer

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
#: the smallest screen the pages are made to fit (tests/browser/test_ops_center.py checks it)
VIEWPORT = {"width": 1280, "height": 800}
WAIT_MS = 60_000
LOAD = 200
#: live sessions under load: slow enough to stay live while the page is captured
LOAD_HEADERS = {"x-sim-token-rate": "12", "x-sim-output-tokens": "600", "x-sim-jitter": "0.5"}
PROMPT = "Our nightly deploy fails with 'permission denied' on the release step. How do I fix it?"
#: what the sessions under load ask, in turn
QUESTIONS = (
    "Every request now gets 401 Unauthorized. Was my API key revoked?",
    "My order A-1042 has not arrived and the tracking page has not changed for a week.",
    "We keep hitting 429 Too Many Requests when the nightly batch job starts.",
    "Why was my card charged twice on this month's invoice?",
    PROMPT,
)


def chromium_path() -> str:
    for candidate in (os.environ.get("SLUICE_CHROMIUM"), shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    raise SystemExit("Chromium is not installed: run `make system-deps` or set SLUICE_CHROMIUM")


async def start(
    http: httpx.AsyncClient,
    model: str,
    prompt: str,
    headers: dict[str, str] | None = None,
    **body: Any,
) -> str:
    response = await http.post(
        "/api/sessions", json={"model": model, "prompt": prompt, **body}, headers=headers
    )
    response.raise_for_status()
    return str(response.json()["id"])


async def chat_midstream(page: Page, url: str) -> None:
    await page.goto(f"{url}/")
    await page.select_option("#model", "sim/support")
    await page.fill("#prompt", PROMPT)
    await page.click("#send")
    # Capture once a good part of the answer is there, well before its end.
    answer = page.locator("#answer")
    async with asyncio.timeout(WAIT_MS / 1000):
        while True:
            if len(await answer.text_content() or "") > 500:
                break
            await asyncio.sleep(0.1)
    await page.screenshot(path=OUT / "chat-midstream.png")
    await page.click("#stop")


async def chat_agent(page: Page, url: str) -> None:
    await page.goto(f"{url}/")
    await page.select_option("#agent", "support")
    turn = page.locator("#turn")
    for prompt in ("What is 1234 * 5678? Use the calculator.", "And the time, by the clock?"):
        await page.fill("#prompt", prompt)
        await page.click("#send")
        await expect(turn).to_have_attribute("data-session-id", re.compile("."))
        await expect(turn).to_have_attribute("data-state", "complete", timeout=WAIT_MS)
    await page.click("#steps-summary")
    await page.locator("#composer").scroll_into_view_if_needed()
    await page.screenshot(path=OUT / "chat-agent.png")


async def ops_under_load(page: Page, url: str, http: httpx.AsyncClient) -> None:
    await page.goto(f"{url}/ops")
    await asyncio.gather(
        *(
            start(
                http,
                "sim/support",
                QUESTIONS[i % len(QUESTIONS)],
                headers=LOAD_HEADERS,
                max_tokens=600,
            )
            for i in range(LOAD)
        )
    )
    streaming = page.locator('#ops-rows tr[data-state="streaming"]')
    await expect(streaming).to_have_count(LOAD, timeout=WAIT_MS)
    # The newest rows come first: a few that end otherwise, to show every kind of row.
    errored = await start(http, "sim/error-mid-stream", "How do I rotate the deploy token?")
    other = await start(http, "simchat/support", "Can I get a refund?", max_tokens=60)
    stopped = await start(http, "sim/support", "Where is my parcel?", headers=LOAD_HEADERS)
    await expect(page.locator(f'tr[data-id="{stopped}"]')).to_have_attribute(
        "data-state", "streaming", timeout=WAIT_MS
    )
    await asyncio.sleep(2.0)  # sparklines fill, progress moves
    await http.post(f"/api/sessions/{stopped}/cancel")
    for session_id in (errored, other):
        await _until_final(http, session_id)
    await asyncio.sleep(0.5)
    await page.screenshot(path=OUT / "ops-under-load.png")


async def session_telemetry(page: Page, url: str, http: httpx.AsyncClient) -> None:
    session_id = await start(http, "sim/tools", "Where is my order 8812?", max_tokens=400)
    await _until_final(http, session_id)
    session_id = await start(http, "sim/support", PROMPT, max_tokens=400)
    await _until_final(http, session_id)
    await page.goto(f"{url}/ops/sessions/{session_id}")
    await expect(page.locator('[data-summary="state"]')).to_have_text("complete")
    await page.screenshot(path=OUT / "session-telemetry.png", full_page=True)


async def login_and_ops_as_viewer(
    page: Page, url: str, http: httpx.AsyncClient, viewer: str
) -> None:
    """The login page, then the operations center as the viewer it logs in."""
    for i in range(12):
        await start(http, "sim/support", f"question {i}", headers=LOAD_HEADERS, max_tokens=600)
    errored = await start(http, "sim/error-mid-stream", "this one breaks")
    stopped = await start(http, "sim/support", "stopped by an operator", headers=LOAD_HEADERS)
    await page.goto(f"{url}/ops")
    await expect(page.locator("#key")).to_be_visible()
    await page.fill("#key", viewer)
    await page.screenshot(path=OUT / "login.png")
    await page.click("#login-submit")
    await expect(page.locator(f'tr[data-id="{stopped}"]')).to_have_attribute(
        "data-state", "streaming", timeout=WAIT_MS
    )
    await asyncio.sleep(2.0)  # sparklines fill, progress moves
    await http.post(f"/api/sessions/{stopped}/cancel")
    await _until_final(http, errored)
    await asyncio.sleep(0.5)
    await page.screenshot(path=OUT / "ops-viewer.png")


async def _until_final(http: httpx.AsyncClient, session_id: str) -> None:
    async with asyncio.timeout(WAIT_MS / 1000):
        while True:
            record = (await http.get(f"/api/sessions/{session_id}")).json()
            if record["state"] in ("complete", "errored", "cancelled"):
                return
            await asyncio.sleep(0.1)


async def _stop_all(gateway: Any) -> None:
    """Stop the sessions still live, so that the server shuts down without waiting on them."""
    live = list(gateway.sessions.live.values())
    for session in live:
        session.cancel("client_stop")
    async with asyncio.timeout(WAIT_MS / 1000):
        for session in live:
            await session.finished.wait()


#: the images, by name, and whether each needs the gateway with auth on
OPEN_SHOTS = ("chat-midstream", "chat-agent", "session-telemetry", "ops-under-load")
AUTH_SHOTS = ("login", "ops-viewer")


async def main(names: list[str]) -> int:
    logging.getLogger("sluice").setLevel(logging.ERROR)  # the error scenario's warning is expected
    unknown = set(names) - set(OPEN_SHOTS) - set(AUTH_SHOTS)
    if unknown:
        print(f"no such screenshot: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    wanted = set(names or (*OPEN_SHOTS, *AUTH_SHOTS))
    OUT.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            if wanted & set(OPEN_SHOTS):
                await _open_gateway_shots(browser, wanted, errors)
            if wanted & set(AUTH_SHOTS):
                await _auth_gateway_shots(browser, errors)
        finally:
            await browser.close()
    if errors:
        print(f"errors on the pages: {errors}", file=sys.stderr)
        return 1
    written = [n for n in OPEN_SHOTS if n in wanted]
    if wanted & set(AUTH_SHOTS):
        written += AUTH_SHOTS  # one run of that gateway makes both
    for name in written:
        print(f"wrote {OUT / name}.png")
    return 0


async def _new_page(browser: Browser, errors: list[str]) -> Page:
    context = await browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


async def _open_gateway_shots(browser: Browser, wanted: set[str], errors: list[str]) -> None:
    """The demo: auth off, the embedded simulator."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(None, store_url=f"sqlite:///{tmp}/sluice.db")
        settings.sim = {"token_rate": 20.0, "ttft": 0.3}
        settings.providers["simchat"] = ProviderConfig("simchat", "sim", wire="chat")
        settings.agents = {
            "support": AgentConfig(
                name="support", model="sim/agent", tools=["calculator", "clock", "docs_search"]
            )
        }
        app = create_app(settings)
        async with (
            RunningServer(app) as server,
            httpx.AsyncClient(base_url=server.url, timeout=60) as http,
        ):
            page = await _new_page(browser, errors)
            if "chat-midstream" in wanted:
                await chat_midstream(page, server.url)
            if "chat-agent" in wanted:
                await chat_agent(page, server.url)
            if "session-telemetry" in wanted:
                await session_telemetry(page, server.url, http)
            if "ops-under-load" in wanted:
                await ops_under_load(page, server.url, http)
            await _stop_all(app.state.gateway)


async def _auth_gateway_shots(browser: Browser, errors: list[str]) -> None:
    """A gateway with ``[auth] required`` on: an operator's key for the sessions, a
    viewer's for the browser."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(None, store_url=f"sqlite:///{tmp}/sluice.db")
        settings.auth.required = True
        settings.sim = {"token_rate": 20.0, "ttft": 0.3}
        app = create_app(settings)
        gateway = app.state.gateway
        async with RunningServer(app) as server:
            operator, _ = await gateway.keys.create("ops-oncall", "operator")
            viewer, _ = await gateway.keys.create("support-lead", "viewer")
            async with httpx.AsyncClient(
                base_url=server.url, timeout=60, headers={"authorization": f"Bearer {operator}"}
            ) as http:
                page = await _new_page(browser, errors)
                await login_and_ops_as_viewer(page, server.url, http, viewer)
                await _stop_all(gateway)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
