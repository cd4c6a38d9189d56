"""The pages' data for agents' runs, over HTTP: the chat page's agents, its stream of a run,
the operations center's rows and a run's session page (steps, tool arguments and results as
escaped text), from memory and from the record. The simulator's ``agent`` model and the
built-in tools."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

from sluice.config import AgentConfig, Settings
from sluice.gateway.markdown import render_blocks
from sluice.sse import SSEDecoder
from tests.conftest import GatewayUnderTest, running_gateway
from tests.conftest import test_settings as settings_for

HOSTILE = "<script>alert(1)</script>"


def agent_settings(tmp_path: Path) -> Settings:
    settings = settings_for(tmp_path)
    settings.agents = {
        "support": AgentConfig(
            name="support", model="sim/agent", tools=["calculator", "docs_search"]
        )
    }
    return settings


async def run(gw: GatewayUnderTest, prompt: str) -> dict[str, Any]:
    started = await gw.http.post("/api/agents/support/runs", json={"prompt": prompt})
    assert started.status_code == 201, started.text
    return await gw.final_record(started.json()["id"])


async def page_updates(gw: GatewayUnderTest, session_id: str) -> list[tuple[str, Any]]:
    decoder = SSEDecoder()
    events = []
    async with gw.http.stream("GET", f"/chat/sessions/{session_id}/stream") as response:
        assert response.status_code == 200
        async for chunk in response.aiter_bytes():
            events += [(e.event, orjson.loads(e.data)) for e in decoder.decode(chunk)]
    return events


async def test_the_chat_page_offers_the_agents_beside_the_models(tmp_path: Path) -> None:
    settings = agent_settings(tmp_path)
    async with running_gateway(settings) as gw:
        page = (await gw.http.get("/")).text
    assert '<option value="support" data-model="sim/agent">support · sim/agent</option>' in page
    assert 'data-keep-content="true"' in page and 'id="not-kept"' not in page
    settings.keep_content = False
    async with running_gateway(settings) as gw:
        page = (await gw.http.get("/")).text
    assert 'data-keep-content="false"' in page and 'id="not-kept"' in page


async def test_a_runs_page_stream_carries_its_steps_and_its_last_steps_answer(
    tmp_path: Path,
) -> None:
    async with running_gateway(agent_settings(tmp_path)) as gw:
        record = await run(gw, "What is 6 * 7? Use the calculator.")
        events = await page_updates(gw, record["id"])
    assert [kind for kind, _ in events][-1] == "end"
    updates = [data for kind, data in events if kind == "update"]
    blocks: list[str] = []
    steps: list[dict[str, Any]] = []
    for update in updates:
        blocks = blocks[: update["base"]] + update["blocks"]
        steps = update.get("steps", steps)
    answer = record["steps"][-1]["text"]
    assert "calculator: 42." in answer
    assert blocks == render_blocks(answer)  # the answer is the last step's
    assert [step["state"] for step in steps] == ["done", "done"]
    assert steps[0]["text"] == record["steps"][0]["text"]
    assert steps[0]["text"].strip() == "Let me check that."
    [call] = steps[0]["calls"]
    assert (call["name"], call["state"], call["result"]) == ("calculator", "ok", "42")
    assert orjson.loads(call["arguments"]) == {"expression": "6 * 7"}
    assert updates[-1]["state"] == "complete" and updates[-1]["status"] is None


async def test_a_runs_session_page_shows_its_steps_as_escaped_text(tmp_path: Path) -> None:
    async with running_gateway(agent_settings(tmp_path)) as gw:
        record = await run(gw, f"Please docs_search for {HOSTILE} in the runbook")
        page = (await gw.http.get(f"/ops/sessions/{record['id']}")).text
    assert [s["tool_calls"][0]["name"] for s in record["steps"][:1]] == ["docs_search"]
    steps = page[page.index('id="steps"') : page.index("</ol>", page.index('id="steps"'))]
    assert steps.count('<li class="step"') == 2
    assert '<span class="call-origin">' not in steps  # (a built-in tool: its own name)
    assert '<span class="badge call-state call-ok">ok</span>' in steps
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in steps  # the arguments, as text
    assert "<script>alert" not in page
    assert re.search(r'<span class="step-duration">\d+ ms|\d\.\d\d s</span>', steps)
    assert '<p class="step-text">Let me check that.</p>' in steps
    assert 'data-summary="steps">2<' in page and 'data-summary="agent">support<' in page
    assert 'class="badge agent" data-field="agent">agent support<' in page


async def test_the_operations_center_names_a_runs_agent_and_steps(tmp_path: Path) -> None:
    async with running_gateway(agent_settings(tmp_path)) as gw:
        record = await run(gw, "What is 1 + 1? Use the calculator.")
        plain = await gw.http.post("/api/sessions", json={"model": "sim/support", "prompt": "Hi"})
        await gw.final_record(plain.json()["id"])
        page = (await gw.http.get("/ops")).text
    row = page[page.index(f'data-id="{record["id"]}"') :]
    cell = row[row.index('<td class="col-model') :]
    assert cell.startswith(
        '<td class="col-model is-run" title="agent support on sim/agent: step 2, 2 steps ended">'
        '<span class="run" data-field="run">support · 2 steps</span>'
    )
    other = page[page.index(f'data-id="{plain.json()["id"]}"') :]
    cell = other[other.index('<td class="col-model') :]
    assert cell.startswith(
        '<td class="col-model" title="sim/support"><span class="run" data-field="run"></span>'
    )


async def test_without_content_kept_a_runs_page_shows_its_steps_from_the_record(
    tmp_path: Path,
) -> None:
    settings = agent_settings(tmp_path)
    settings.keep_content = False
    async with running_gateway(settings) as gw:
        record = await run(gw, "What is 2 + 2? Use the calculator.")
        gw.gateway.sessions.recent.clear()  # (the process forgot it: the record is all there is)
        assert gw.gateway.sessions.get(record["id"]) is None
        page = (await gw.http.get(f"/ops/sessions/{record['id']}")).text
    steps = page[page.index('id="steps"') : page.index("</ol>", page.index('id="steps"'))]
    assert steps.count('<li class="step"') == 2
    assert '<span class="call-name">calculator</span>' in steps
    assert steps.count('">(not kept)</pre>') == 2  # its arguments and its result
    assert "2 + 2" not in page
