"""Agents on the pages, in a real browser: a conversation of runs on the chat page, the status
as the run moves, the steps' timeline, Stop during a tool; the operations center and the
session page of a run. The simulator's ``agent`` model, built-in tools and a real MCP server."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from sluice.config import AgentConfig, Settings
from tests.agents.conftest import stdio_server
from tests.conftest import GatewayUnderTest, running_gateway
from tests.conftest import test_settings as settings_for

#: Bound on every wait of these tests: a hang fails, never blocks.
WAIT = 30
WAIT_MS = WAIT * 1000


def agent_settings(tmp_path: Path) -> Settings:
    # Paced so that each state can be seen: the model's first word after 0.5 s, 40 words a
    # second after it.
    settings = settings_for(tmp_path, token_rate=40.0, ttft=0.5, output_tokens=40)
    settings.mcp = {"testtools": stdio_server()}
    settings.agents = {
        "support": AgentConfig(name="support", model="sim/agent", tools=["calculator", "clock"]),
        "field": AgentConfig(
            name="field",
            model="sim/agent",
            tools=["testtools.survey", "testtools.hang", "testtools.echo"],
        ),
    }
    return settings


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[GatewayUnderTest]:
    async with running_gateway(agent_settings(tmp_path)) as gateway:
        yield gateway


async def open_chat(page: Page, url: str) -> None:
    await page.goto(url)
    await page.wait_for_selector("html[data-chat-ready]")


async def ask(page: Page, prompt: str, agent: str | None = None) -> str:
    """Send ``prompt`` (to ``agent``, else the model picked); the new turn's session id."""
    turns = await page.locator("#turns > .turn").count()
    if agent is not None:
        await page.select_option("#agent", agent)
    await page.fill("#prompt", prompt)
    await page.click("#send")
    turn = page.locator("#turns > .turn").nth(turns)
    await expect(turn).to_have_attribute("data-session-id", re.compile(r"^op-"), timeout=WAIT_MS)
    session_id = await turn.get_attribute("data-session-id")
    assert session_id is not None
    return session_id


async def wait_state(page: Page, *states: str) -> str:
    selector = ", ".join(f'#turn[data-state="{s}"]' for s in states)
    await page.wait_for_selector(selector, timeout=WAIT_MS)
    return str(await page.get_attribute("#turn", "data-state"))


async def record_statuses(page: Page) -> None:
    """Record every text the latest turn's status shows, in order, as the browser draws it."""
    await page.evaluate(
        """() => {
            window.__statuses = [];
            const note = () => {
                const status = document.getElementById("status");
                const seen = window.__statuses;
                if (status && seen[seen.length - 1] !== status.textContent) {
                    seen.push(status.textContent);
                }
            };
            new MutationObserver(note).observe(document.getElementById("turns"), {
                childList: true, subtree: true, characterData: true,
            });
        }"""
    )


def in_order(seen: list[str], *wanted: Callable[[str], bool]) -> bool:
    """Whether ``seen`` holds, in this order, a text that each of ``wanted`` accepts."""
    position = 0
    for accepts in wanted:
        while position < len(seen) and not accepts(seen[position]):
            position += 1
        if position == len(seen):
            return False
        position += 1
    return True


async def test_a_two_turn_conversation_whose_second_answer_uses_the_first(
    gw: GatewayUnderTest, page: Page
) -> None:
    await open_chat(page, gw.url + "/")
    agents = await page.locator("#agent option").all_text_contents()
    assert agents == ["none: the model alone", "support · sim/agent", "field · sim/agent"]
    first = await ask(page, "What is 12 * (3 + 4)? Use the calculator.", agent="support")
    assert await page.is_disabled("#model")  # the agent's own model answers
    assert await wait_state(page, "complete", "errored", "cancelled") == "complete"
    await expect(page.locator("#answer")).to_contain_text("calculator: 84.")
    conversation = await page.get_attribute("#conversation", "data-conversation-id")
    assert conversation and conversation.startswith("cv-")
    assert f"conversation={conversation}" in page.url

    second = await ask(page, "And what time is it by the clock?")
    assert await wait_state(page, "complete", "errored", "cancelled") == "complete"
    answer = await page.text_content("#answer") or ""
    assert answer.startswith(
        'Following up on your earlier question ("What is 12 * (3 + 4)? Use the calculator."):'
    )
    assert "clock: 20" in answer  # the tool's ISO time, quoted

    # Both turns on the page, the first one's answer as it was, its Retry gone.
    turns = page.locator("#turns > .turn")
    await expect(turns).to_have_count(2)
    assert await turns.nth(0).get_attribute("data-session-id") == first
    await expect(turns.nth(0).locator(".answer")).to_contain_text("calculator: 84.")
    assert await turns.nth(0).locator("[id]").count() == 0  # the ids name the latest turn
    records = [await gw.final_record(s) for s in (first, second)]
    assert [r["conversation_id"] for r in records] == [conversation, conversation]
    kept = (await gw.http.get(f"/api/conversations/{conversation}")).json()
    assert [m["role"] for m in kept["messages"]] == ["user", "assistant", "user", "assistant"]
    assert kept["sessions"] == [first, second]

    # A reload shows the conversation again, every turn from its record, steps folded.
    await page.reload()
    await page.wait_for_selector("html[data-chat-ready]")
    await expect(turns).to_have_count(2, timeout=WAIT_MS)
    for index in (0, 1):  # (each turn's stream replayed to its end)
        await expect(turns.nth(index).locator(".status")).to_have_text("Complete", timeout=WAIT_MS)
    assert await page.text_content("#answer") == answer
    assert await page.input_value("#agent") == "support"
    await expect(turns.nth(0).locator(".steps")).not_to_have_attribute("open", "")
    await expect(turns.nth(0).locator(".turn-prompt")).to_have_text(
        "What is 12 * (3 + 4)? Use the calculator."
    )

    # New conversation starts afresh.
    await page.click("#new-conversation")
    await expect(turns).to_have_count(0)
    assert "conversation=" not in page.url


async def test_the_status_moves_through_its_states_and_the_steps_collapse_at_the_end(
    gw: GatewayUnderTest, page: Page
) -> None:
    await open_chat(page, gw.url + "/")
    await record_statuses(page)
    session_id = await ask(page, "Run a survey of 3 sites, please.", agent="field")
    # While the tool runs, the steps are open and show it running.
    steps = page.locator("#steps")
    await expect(steps.locator('.call[data-state="running"] .call-name')).to_have_text(
        "survey", timeout=WAIT_MS
    )
    assert await steps.get_attribute("open") is not None
    assert await wait_state(page, "complete", "errored", "cancelled") == "complete"

    seen: list[str] = await page.evaluate("window.__statuses")
    assert in_order(
        seen,
        lambda s: s == "Thinking…",
        lambda s: s.startswith("Using tool: survey… site "),
        lambda s: s == "Thinking…",
        lambda s: s == "Answering…",
        lambda s: s == "Complete",
    ), seen
    assert seen[0] == "Starting…"
    assert seen[-1] == "Complete"
    progress = [s for s in seen if s.startswith("Using tool: survey… site ")]
    assert all(re.fullmatch(r"Using tool: survey… site \d · \d of 3", s) for s in progress)

    # The answer complete, the timeline collapses; reopened, it shows both steps.
    await expect(steps).not_to_have_attribute("open", "")
    assert await steps.is_visible()
    await expect(page.locator("#steps-summary")).to_have_text(
        re.compile(r"^Steps: 2 steps · 1 tool call · \d")
    )
    await page.click("#steps-summary")
    items = steps.locator(".step")
    await expect(items).to_have_count(2)
    first = items.nth(0)
    assert await first.get_attribute("data-state") == "done"
    await expect(first.locator(".step-state")).to_have_text("tool_calls")
    await expect(first.locator(".step-text")).to_have_text("Let me check that.")
    await expect(first.locator(".call-args")).to_have_text('{\n  "sites": 3\n}')
    await expect(first.locator(".call-result")).to_have_text("surveyed 3 sites")
    await expect(first.locator(".call-duration")).to_have_text(re.compile(r"^\d\.\d\d s$"))
    await expect(items.nth(1).locator(".step-state")).to_have_text("stop")
    await expect(page.locator("#answer")).to_contain_text("survey: surveyed 3 sites.")
    record = await gw.final_record(session_id)
    assert [s["finish_reason"] for s in record["steps"]] == ["tool_calls", "stop"]


async def test_stop_during_a_tool_stops_the_tool_and_the_run(
    gw: GatewayUnderTest, page: Page
) -> None:
    await open_chat(page, gw.url + "/")
    session_id = await ask(page, "Please hang on for a moment.", agent="field")
    await expect(page.locator("#status")).to_have_text("Using tool: hang…", timeout=WAIT_MS)
    await page.click("#stop")
    assert await wait_state(page, "cancelled", "complete", "errored") == "cancelled"
    await expect(page.locator("#status")).to_have_text("Stopped")
    # What the run did stays in view, the call marked stopped.
    steps = page.locator("#steps")
    assert await steps.get_attribute("open") is not None
    await expect(steps.locator(".step").nth(0)).to_have_attribute("data-state", "stopped")
    await expect(steps.locator(".call")).to_have_attribute("data-state", "stopped")
    assert await page.is_visible("#retry")

    record = await gw.final_record(session_id)
    assert record["state"] == "cancelled" and record["cancel_reason"] == "client_stop"
    assert record["step"] == 1
    # The MCP server was told: its hang handler was cancelled (counted by its own tool).
    [cancelled] = await gw.gateway.toolbox.tools(["testtools.cancelled"])
    told = []
    for _ in range(WAIT * 10):  # (the server counts it when its handler's cancellation ends)
        told.append((await cancelled.call({}, time_limit=WAIT)).text)
        if told[-1] == "1":
            break
        await asyncio.sleep(0.1)
    assert told[-1] == "1", told


async def test_a_tools_arguments_and_result_are_shown_as_text(
    gw: GatewayUnderTest, browser: Browser
) -> None:
    # The CSP would block an inline script anyway: bypass it, so this proves the escaping.
    context = await browser.new_context(bypass_csp=True)
    page = await context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    hostile = '<img src=x onerror="window.__pwned=1"> and <script>window.__pwned=2</script>'
    try:
        await open_chat(page, gw.url + "/")
        session_id = await ask(page, f"Please echo {hostile}", agent="field")
        assert await wait_state(page, "complete", "errored") == "complete"
        await page.click("#steps-summary")
        call = page.locator("#steps .call")
        await expect(call.locator(".call-result")).to_contain_text(f"echo: Please echo {hostile}")
        await expect(call.locator(".call-args")).to_contain_text(hostile.replace('"', '\\"'))
        for where in ("#steps", "#answer"):
            assert await page.locator(f"{where} img, {where} script").count() == 0
        await page.goto(f"{gw.url}/ops/sessions/{session_id}")
        await expect(page.locator("#steps .call-result")).to_contain_text(hostile)
        assert await page.locator("#steps img, #steps script").count() == 0
        assert await page.evaluate("typeof window.__pwned") == "undefined"
        assert dialogs == []
    finally:
        await context.close()


async def test_the_operations_center_and_the_session_page_show_a_runs_steps(
    gw: GatewayUnderTest, page: Page
) -> None:
    started = await gw.http.post(
        "/api/agents/field/runs", json={"prompt": "Please hang on.", "disconnect_policy": "drain"}
    )
    assert started.status_code == 201, started.text
    run_id = started.json()["id"]
    await page.goto(gw.url + "/ops")
    row = page.locator(f'#ops-rows tr[data-id="{run_id}"]')
    await expect(row.locator('[data-field="run"]')).to_have_text("field · step 1", timeout=WAIT_MS)
    await expect(row.locator(".col-model")).to_have_attribute(
        "title", "agent field on sim/agent: step 1, 0 steps ended"
    )
    assert not await row.locator('[data-field="model"]').is_visible()  # (the agent instead)

    # Its page: the step under way, the tool running with its arguments, live.
    await page.goto(f"{gw.url}/ops/sessions/{run_id}")
    await expect(page.locator('#session [data-field="agent"]')).to_have_text("agent field")
    call = page.locator("#steps .call")
    await expect(call).to_have_attribute("data-state", "running", timeout=WAIT_MS)
    await expect(call.locator(".call-name")).to_have_text("hang")
    await expect(call.locator(".call-origin")).to_have_text("testtools.hang")
    await expect(call.locator(".call-args")).to_have_text("{}")
    await page.click('#session button[data-action="cancel"]')
    await expect(call).to_have_attribute("data-state", "stopped", timeout=WAIT_MS)
    await expect(page.locator("#steps .step")).to_have_attribute("data-state", "stopped")
    await expect(page.locator('[data-summary="steps"]')).to_have_text("1", timeout=WAIT_MS)
    await expect(page.locator("#timeline")).to_contain_text("tool hang: cancelled")

    # A finished run with two steps: its row and its page from the record.
    finished = await gw.http.post(
        "/api/agents/support/runs", json={"prompt": "What is 2 + 3? Use the calculator."}
    )
    done_id = finished.json()["id"]
    await gw.final_record(done_id)
    await page.goto(gw.url + "/ops")
    row = page.locator(f'#ops-rows tr[data-id="{done_id}"]')
    await expect(row.locator('[data-field="run"]')).to_have_text("support · 2 steps")
    stopped = page.locator(f'#ops-rows tr[data-id="{run_id}"] [data-field="run"]')
    await expect(stopped).to_have_text("field · 1 step")
    await page.goto(f"{gw.url}/ops/sessions/{done_id}")
    steps = page.locator("#steps .step")
    await expect(steps).to_have_count(2)
    await expect(steps.nth(0).locator(".call-args")).to_have_text('{\n  "expression": "2 + 3"\n}')
    await expect(steps.nth(0).locator(".call-result")).to_have_text("5")
    await expect(steps.nth(0).locator(".step-duration")).to_have_text(re.compile(r"\d (ms|s)$"))
    assert "calculator: 5." in (await page.text_content("#answer") or "")


async def test_without_conversations_kept_each_turn_stands_alone(
    tmp_path: Path, page: Page
) -> None:
    settings = agent_settings(tmp_path)
    settings.keep_content = False
    async with running_gateway(settings) as gw:
        await open_chat(page, gw.url + "/")
        await expect(page.locator("#not-kept")).to_contain_text("keep_content = false")
        await page.select_option("#model", "sim/support")
        plain = await ask(page, "Where is my parcel?")
        assert await wait_state(page, "complete", "errored", "cancelled") == "complete"
        run = await ask(page, "What is 2 + 2? Use the calculator.", agent="support")
        assert await wait_state(page, "complete", "errored", "cancelled") == "complete"
        answer = await page.text_content("#answer") or ""
        assert "calculator: 4." in answer and "Following up" not in answer  # no history
        assert f"session={run}" in page.url and "conversation=" not in page.url
        records = [await gw.final_record(s) for s in (plain, run)]
        assert [r["endpoint"] for r in records] == ["native", "agent"]
        assert [r["conversation_id"] for r in records[1:]] == [None]
