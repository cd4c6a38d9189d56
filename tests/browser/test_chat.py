"""The chat page in a real browser: incremental rendering, Stop, hostile output, resume."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from sluice.gateway.markdown import render_blocks
from tests.browser.conftest import TcpRelay
from tests.conftest import GatewayUnderTest, running_gateway
from tests.conftest import test_settings as settings_for

#: Bound on every wait of these tests: a hang fails, never blocks.
WAIT = 30


@pytest.fixture
async def paced_gateway(tmp_path: Path) -> AsyncIterator[GatewayUnderTest]:
    """Answers slow enough to be seen growing: 40 tokens a second, 120 tokens."""
    settings = settings_for(tmp_path, token_rate=40.0, output_tokens=120)
    async with running_gateway(settings) as gw:
        yield gw


async def ask(page: Page, base_url: str, model: str, prompt: str) -> str:
    """Open the chat page, send ``prompt`` to ``model``; the session id once it started."""
    await page.goto(base_url + "/")
    await page.wait_for_selector("html[data-chat-ready]")
    await page.fill("#model-other", model)
    await page.fill("#prompt", prompt)
    await page.click("#send")
    turn = await page.wait_for_selector("#turn[data-session-id]", timeout=WAIT * 1000)
    assert turn is not None
    session_id = await turn.get_attribute("data-session-id")
    assert session_id and session_id.startswith("op-")
    return session_id


async def watch_answer(page: Page) -> None:
    """Record every distinct text of the latest answer, as the browser renders it."""
    await page.evaluate(
        """() => {
            window.__states = [];
            // (the turn, and its answer, appear when the prompt is sent)
            new MutationObserver(() => {
                const answer = document.getElementById("answer");
                if (!answer) return;
                const text = answer.textContent;
                const states = window.__states;
                if (states[states.length - 1] !== text) states.push(text);
            }).observe(document.getElementById("turns"), {
                childList: true, subtree: true, characterData: true,
            });
        }"""
    )


async def wait_state(page: Page, *states: str) -> str:
    selector = ", ".join(f'#turn[data-state="{s}"]' for s in states)
    await page.wait_for_selector(selector, timeout=WAIT * 1000)
    return str(await page.get_attribute("#turn", "data-state"))


async def shown_blocks(page: Page) -> list[str]:
    return list(
        await page.eval_on_selector_all("#answer > .md-block", "els => els.map(e => e.innerHTML)")
    )


async def as_browser_html(page: Page, fragments: list[str]) -> list[str]:
    """``fragments`` as the browser serialises them, to compare with what it shows."""
    return list(
        await page.evaluate(
            """(htmls) => htmls.map(h => {
                const d = document.createElement("div"); d.innerHTML = h; return d.innerHTML;
            })""",
            fragments,
        )
    )


async def test_an_answer_renders_incrementally_then_matches_the_final_text(
    paced_gateway: GatewayUnderTest, page: Page
) -> None:
    gw = paced_gateway
    await page.goto(gw.url + "/")
    await page.wait_for_selector("html[data-chat-ready]")
    await watch_answer(page)
    await page.select_option("#model", "sim/support")
    await page.fill("#prompt", "My API key stopped working")
    await page.click("#send")
    assert await wait_state(page, "complete", "errored", "cancelled") == "complete"
    session_id = await page.get_attribute("#turn", "data-session-id")
    assert session_id is not None
    record = await gw.final_record(session_id)
    assert record["state"] == "complete" and len(record["text"]) > 200

    states: list[str] = await page.evaluate("window.__states")
    growing = [s for s in states if s.strip()]
    assert len(growing) >= 4, states  # several distinct renderings before the end
    assert growing[-1] != growing[0]
    assert await shown_blocks(page) == await as_browser_html(page, render_blocks(record["text"]))
    # markdown rendered, code highlighted once its fence closed
    assert await page.locator("#answer h2").count() >= 1
    assert await page.locator("#answer pre.code span").count() > 0
    assert await page.locator("#answer pre.code-open").count() == 0
    # telemetry and status
    assert (await page.text_content("#status")) == "Complete"
    assert (await page.text_content("#ttft") or "").endswith("ms")
    assert (await page.text_content("#rate") or "").endswith("tok/s")
    assert await page.text_content("#tokens") == str(record["usage"]["output_tokens"])


async def test_reasoning_shows_thinking_then_collapses_when_the_answer_starts(
    tmp_path: Path, page: Page
) -> None:
    settings = settings_for(tmp_path, token_rate=40.0, output_tokens=40, ttft=1.0)
    async with running_gateway(settings) as gw:
        await ask(page, gw.url, "sim/slow-start", "Why is my order late?")
        await page.wait_for_selector("#reasoning[open]", timeout=WAIT * 1000)
        assert await page.text_content("#status") == "Thinking…"
        assert await page.get_attribute("#status", "data-phase") == "thinking"
        assert (await page.text_content("#reasoning-text") or "").strip()
        assert await page.locator("#answer .md-block").count() == 0
        assert await wait_state(page, "complete", "errored") == "complete"
        assert await page.locator("#reasoning[open]").count() == 0
        assert await page.locator("#reasoning:not([hidden])").count() == 1


async def test_a_tool_call_shows_its_name(tmp_path: Path, page: Page) -> None:
    async with running_gateway(settings_for(tmp_path, token_rate=20.0)) as gw:
        await ask(page, gw.url, "sim/parallel-tools", "Where is order A-1042?")
        await page.wait_for_function(
            "() => document.getElementById('status').textContent.startsWith('Using tool: ')",
            timeout=WAIT * 1000,
        )
        assert await wait_state(page, "complete", "errored") == "complete"
        # (a model's turn of the conversation: its calls are its step's, which nothing ran)
        assert await page.text_content("#status") == "Complete (tool_calls)"
        names = await page.locator("#steps .call-name").all_text_contents()
        assert names == ["lookup_order", "list_open_tickets"]


async def test_stop_halts_the_text_and_the_generation(tmp_path: Path, page: Page) -> None:
    settings = settings_for(tmp_path, token_rate=20.0, output_tokens=5000)
    async with running_gateway(settings) as gw:
        session_id = await ask(page, gw.url, "sim/support", "Tell me everything")
        await page.wait_for_function(
            "() => document.getElementById('answer').textContent.length > 40", timeout=WAIT * 1000
        )
        await page.click("#stop")
        assert await wait_state(page, "cancelled", "complete", "errored") == "cancelled"
        shown = await page.text_content("#answer")
        sim = await gw.sim_request(session_id)
        # Keep watching for a while: neither the page nor the simulator goes on.
        await asyncio.sleep(1.5)
        assert await page.text_content("#answer") == shown
        later = await gw.sim_request(session_id)
        assert later["tokens_produced"] == sim["tokens_produced"] < 5000
        assert later["client_disconnected"] is True
        record = await gw.final_record(session_id)
        assert record["state"] == "cancelled" and record["cancel_reason"] == "client_stop"
        assert await page.is_visible("#retry")
        assert await page.text_content("#status") == "Stopped"


async def test_a_terminal_error_shows_the_reason_and_retry_recovers(
    tmp_path: Path, page: Page
) -> None:
    settings = settings_for(
        tmp_path, token_rate=100.0, output_tokens=60, fail_after=10, fail_count=1
    )
    async with running_gateway(settings) as gw:
        session_id = await ask(page, gw.url, "sim/error-mid-stream", "Check my invoice")
        assert await wait_state(page, "errored", "complete") == "errored"
        assert await page.is_visible("#error")
        assert "The answer failed" in (await page.text_content("#error-title") or "")
        assert (await page.text_content("#error-text") or "").strip()
        await page.click("#retry")
        assert await wait_state(page, "complete") == "complete"
        record = await gw.final_record(session_id)
        assert record["attempts"] == 2
        expected = await as_browser_html(page, render_blocks(record["text"]))
        assert await shown_blocks(page) == expected
        assert await page.is_hidden("#error")


HOSTILE = """Hello <script>window.__pwned = "script"; alert(1)</script>

<img src=x onerror="window.__pwned = 'img'; alert(2)">

[click me](javascript:window.__pwned='link') and <javascript:alert(3)>

<a href="javascript:window.__pwned='a'">anchor</a>

<div onmouseover="window.__pwned='div'" style="position:fixed;inset:0;background:red">cover</div>

<svg onload="window.__pwned='svg'"><script>alert(4)</script></svg>

<iframe src="javascript:alert(5)"></iframe>

![pixel](https://tracker.invalid/p.png)

```html
<script>window.__pwned = "fence"</script>
```
"""


async def test_injected_scripts_and_handlers_do_not_run(
    gateway: GatewayUnderTest, browser: Browser
) -> None:
    # The page's CSP would block inline scripts anyway: bypass it, so this proves the
    # sanitiser alone.
    context = await browser.new_context(bypass_csp=True)
    page = await context.new_page()
    dialogs: list[str] = []
    errors: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        session_id = await ask(page, gateway.url, "sim/echo", HOSTILE)
        assert await wait_state(page, "complete", "errored") == "complete"
        record = await gateway.final_record(session_id)
        assert record["text"] == HOSTILE.strip()  # the page trims the prompt
        await page.hover("#answer")
        await page.mouse.move(10, 10)
        found: dict[str, Any] = await page.evaluate(
            """() => {
                const answer = document.getElementById("answer");
                const all = [...answer.querySelectorAll("*")];
                return {
                    pwned: typeof window.__pwned,
                    tags: all.map(e => e.tagName.toLowerCase())
                        .filter(t => ["script", "img", "iframe", "svg", "style"].includes(t)),
                    handlers: all.flatMap(e => [...e.attributes].map(a => a.name))
                        .filter(n => n.startsWith("on") || n === "style" || n === "src"),
                    hrefs: [...answer.querySelectorAll("a")].map(a => a.getAttribute("href")),
                    text: answer.textContent,
                };
            }"""
        )
        assert found["pwned"] == "undefined"
        assert dialogs == []
        assert found["tags"] == []
        assert found["handlers"] == []
        assert all(href.startswith(("http://", "https://")) for href in found["hrefs"])
        assert "https://tracker.invalid/p.png" in found["hrefs"]  # an image became a link
        # the hostile text is shown as text
        assert '<script>window.__pwned = "script"; alert(1)</script>' in found["text"]
        assert await page.locator("#answer pre.code").count() == 1
        assert errors == []
    finally:
        await context.close()


async def test_the_page_resumes_after_the_connection_drops(
    paced_gateway: GatewayUnderTest, page: Page
) -> None:
    gw = paced_gateway
    async with TcpRelay(gw.url) as relay:
        await page.goto(relay.url + "/")
        await page.wait_for_selector("html[data-chat-ready]")
        await watch_answer(page)
        await page.evaluate(
            """() => {
                window.__connection = [];
                const badge = document.getElementById("connection");
                new MutationObserver(() => window.__connection.push(badge.dataset.connection))
                    .observe(badge, {attributes: true});
            }"""
        )
        await page.select_option("#model", "sim/support")
        await page.fill("#prompt", "Where is my parcel?")
        await page.click("#send")
        await page.wait_for_function(
            "() => document.getElementById('answer').textContent.length > 60", timeout=WAIT * 1000
        )
        assert await page.get_attribute("#turn", "data-state") == "streaming"
        cut = await relay.cut_all()
        assert cut >= 1
        assert await wait_state(page, "complete", "errored", "cancelled") == "complete"

        session_id = await page.get_attribute("#turn", "data-session-id")
        assert session_id is not None
        record = await gw.final_record(session_id)
        assert record["state"] == "complete"
        expected = render_blocks(record["text"])
        assert await shown_blocks(page) == await as_browser_html(page, expected)
        headings = await page.locator("#answer h2").all_text_contents()
        assert len(headings) == record["text"].count("## ") >= 1  # nothing shown twice

        # The browser reconnected with the last event id it had, not from the start.
        resumes = [r for r in relay.requests if "/stream" in r and "last-event-id:" in r.lower()]
        assert resumes, relay.requests
        last_ids = [
            int(line.split(":", 1)[1])
            for r in resumes
            for line in r.lower().splitlines()
            if line.startswith("last-event-id:")
        ]
        assert all(n > 0 for n in last_ids)
        assert "reconnecting" in await page.evaluate("window.__connection")
        # one connection left, counted once
        assert [d["reason"] for d in record["disconnects"]] == ["client_disconnected"]
        # and no text was shown twice at any moment while it streamed (a partial rendering
        # can show a few markdown characters not yet interpreted, never a repeated passage)
        states: list[str] = await page.evaluate("window.__states")
        final = await page.text_content("#answer") or ""
        assert len(states) >= 3
        assert max(len(s) for s in states) <= len(final) + 10
