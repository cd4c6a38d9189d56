"""Agent runs through a real gateway: the simulator's ``agent`` model, a real MCP server (over
stdio; over Streamable HTTP too where the transport matters: parallel calls, progress,
cancellation), the native event stream, Stop, Retry, resume, conversations and what records
keep."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from sluice.config import AgentConfig, McpServerConfig, Settings
from sluice.sse import SSEDecoder
from tests.agents.conftest import stdio_server
from tests.conftest import GatewayUnderTest, running_gateway
from tests.conftest import test_settings as gateway_settings

TOOLS = ["testtools.add", "testtools.echo", "testtools.fail", "testtools.sleep"]


def agent_settings(tmp_path: Path, server: McpServerConfig | None = None, **agent: Any) -> Settings:
    settings = gateway_settings(tmp_path)
    settings.mcp = {"testtools": server or stdio_server()}
    settings.agents = {
        "helper": AgentConfig(
            name="helper",
            model="sim/agent",
            system="You help.",
            tools=agent.pop("tools", TOOLS),
            **agent,
        )
    }
    return settings


@pytest.fixture
def agent_gateway(tmp_path: Path) -> Callable[..., AbstractAsyncContextManager[GatewayUnderTest]]:
    def make(**agent: Any) -> AbstractAsyncContextManager[GatewayUnderTest]:
        return running_gateway(agent_settings(tmp_path, **agent))

    return make


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[GatewayUnderTest]:
    async with running_gateway(agent_settings(tmp_path)) as gateway:
        yield gateway


Event = tuple[int | None, str, dict[str, Any]]


async def stream_run(
    gw: GatewayUnderTest, body: dict[str, Any], path: str = "/api/agents/helper/runs"
) -> tuple[httpx.Headers, list[Event]]:
    decoder = SSEDecoder()
    events: list[Event] = []
    async with gw.http.stream(
        "POST", path, json=body, headers={"accept": "text/event-stream"}
    ) as response:
        assert response.status_code == 200, await response.aread()
        async for chunk in response.aiter_bytes():
            for e in decoder.decode(chunk):
                events.append((int(e.id) if e.id else None, e.event, orjson.loads(e.data)))
    return response.headers, events


def kinds(events: list[Event]) -> list[str]:
    return [kind for _, kind, _ in events]


def text_of(events: list[Event]) -> str:
    return "".join(data["text"] for _, kind, data in events if kind == "text")


async def events_until(
    gw: GatewayUnderTest, session_id: str, wanted: Callable[[str, dict[str, Any]], bool]
) -> list[Event]:
    """The run's native events, read until one is ``wanted`` (the connection is then left)."""
    decoder = SSEDecoder()
    seen: list[Event] = []
    async with asyncio.timeout(30):
        async with gw.http.stream("GET", f"/api/sessions/{session_id}/events") as response:
            async for chunk in response.aiter_bytes():
                for e in decoder.decode(chunk):
                    seen.append((int(e.id) if e.id else None, e.event, orjson.loads(e.data)))
                    if wanted(e.event, seen[-1][2]):
                        return seen
    raise AssertionError(f"never seen: {kinds(seen)}")


async def start_run(gw: GatewayUnderTest, prompt: str, **body: Any) -> dict[str, Any]:
    response = await gw.http.post("/api/agents/helper/runs", json={"prompt": prompt, **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_a_run_calls_two_tools_in_parallel_and_answers_with_their_results(
    tmp_path: Path, server: McpServerConfig
) -> None:
    async with running_gateway(agent_settings(tmp_path, server)) as gw:
        await _two_tools_in_parallel(gw)


async def _two_tools_in_parallel(gw: GatewayUnderTest) -> None:
    headers, events = await stream_run(gw, {"prompt": "Please add 20 and 22, then echo it."})
    order = kinds(events)
    # one step that called both tools, then the step that answered
    assert order[0] == "step.start" and order[-2:] == ["step.end", "end"]
    assert order.count("step.start") == 2 and order.count("step.end") == 2
    first_end = order.index("step.end")
    step1 = order[:first_end]
    assert step1.count("tool_call.done") == 2 and step1.count("tool.end") == 2
    # the model's calls are complete before the gateway runs the tools
    assert max(i for i, k in enumerate(step1) if k == "tool_call.done") < step1.index("tool.start")
    assert step1.index("finish") < step1.index("tool.start")
    started = {d["name"]: d for _, k, d in events if k == "tool.start"}
    assert started["add"]["arguments"] == {"a": 20, "b": 20}
    assert started["add"]["tool"] == "testtools.add"
    ended = {d["name"]: d for _, k, d in events if k == "tool.end"}
    assert ended["add"]["result"] == "40" and ended["add"]["is_error"] is False
    assert ended["echo"]["result"].startswith("echo: Please add 20")
    assert ended["add"]["duration"] >= 0
    status = [d for _, k, d in events if k == "status"]
    assert {"phase": "tool", "detail": "add, echo"} in status
    # the answer uses the results the model was given
    assert "40" in text_of(events[first_end:])
    step_ends = [d for _, k, d in events if k == "step.end"]
    assert [s["finish_reason"] for s in step_ends] == ["tool_calls", "stop"]
    assert all(s["usage"]["output_tokens"] > 0 for s in step_ends)
    end = events[-1][2]
    assert end["state"] == "complete"
    session_id = headers["x-sluice-session-id"]
    requests = await gw.sim_requests(session_id)
    assert len(requests) == 2
    record = await gw.final_record(session_id)
    assert record["agent"] == "helper" and record["endpoint"] == "agent"
    assert [s["step"] for s in record["steps"]] == [1, 2]
    calls = {c["name"]: c for c in record["steps"][0]["tool_calls"]}
    assert calls["add"]["result"] == "40" and calls["add"]["content"][0]["text"] == "40"
    assert record["text"] == text_of(events)
    total = sum(s["usage"]["output_tokens"] for s in record["steps"])
    assert record["usage"]["output_tokens"] == total


async def test_a_failing_tool_is_told_to_the_model_and_the_run_goes_on(
    gw: GatewayUnderTest,
) -> None:
    _, events = await stream_run(gw, {"prompt": "Call fail with the message boom."})
    ended = [d for _, k, d in events if k == "tool.end"]
    assert len(ended) == 1 and ended[0]["is_error"] is True and ended[0]["error"] is None
    assert ended[0]["result"].startswith("Error executing tool fail")
    assert events[-1][2]["state"] == "complete"
    assert "fail" in text_of(events) and kinds(events).count("step.start") == 2


async def test_a_tool_past_its_timeout_is_a_tool_error_and_the_run_goes_on(
    agent_gateway: Callable[..., AbstractAsyncContextManager[GatewayUnderTest]],
) -> None:
    async with agent_gateway(tool_timeout=0.3) as gw:
        _, events = await stream_run(gw, {"prompt": "Please sleep 30 seconds."})
    ended = [d for _, k, d in events if k == "tool.end"]
    assert [(e["name"], e["error"], e["is_error"]) for e in ended] == [
        ("sleep", "tool_timeout", True)
    ]
    assert events[-1][2]["state"] == "complete"


async def test_progress_notifications_reach_the_client_in_order(
    agent_gateway: Callable[..., AbstractAsyncContextManager[GatewayUnderTest]],
    server: McpServerConfig,
) -> None:
    async with agent_gateway(server=server, tools=["testtools.count"]) as gw:
        _, events = await stream_run(gw, {"prompt": "Please count 3 times."})
    order = kinds(events)
    progress = [d for _, k, d in events if k == "tool.progress"]
    assert [(p["progress"], p["total"], p["message"]) for p in progress] == [
        (1.0, 3.0, "step 1"),
        (2.0, 3.0, "step 2"),
        (3.0, 3.0, "step 3"),
    ]
    assert order.index("tool.start") < order.index("tool.progress")
    assert max(i for i, k in enumerate(order) if k == "tool.progress") < order.index("tool.end")


async def test_stop_during_a_tool_cancels_it_and_its_server_sees_the_cancellation(
    agent_gateway: Callable[..., AbstractAsyncContextManager[GatewayUnderTest]],
    server: McpServerConfig,
) -> None:
    async with agent_gateway(server=server, tools=["testtools.hang"]) as gw:
        run = await start_run(gw, "Please hang for me.")
        await events_until(gw, run["id"], lambda kind, _: kind == "tool.start")
        response = await gw.http.post(f"/api/sessions/{run['id']}/cancel")
        assert response.status_code == 200, response.text
        record = await gw.final_record(run["id"])
        assert record["state"] == "cancelled"
        _, events = await _replay(gw, run["id"])
        ended = [d for _, k, d in events if k == "tool.end"]
        assert [(e["name"], e["error"]) for e in ended] == [("hang", "cancelled")]
        assert kinds(events)[-2:] == ["error", "end"]
        # the server's own count of cancelled calls (the same connection the run used)
        counter = (await gw.gateway.toolbox.tools(["testtools.cancelled"]))[0]
        for _ in range(100):
            outcome = await counter.call({}, time_limit=10)
            if outcome.text == "1":
                break
            await asyncio.sleep(0.05)
        assert outcome.text == "1"


async def _replay(gw: GatewayUnderTest, session_id: str, after: int = 0) -> tuple[int, list[Event]]:
    decoder = SSEDecoder()
    events: list[Event] = []
    async with gw.http.stream(
        "GET", f"/api/sessions/{session_id}/events", headers={"last-event-id": str(after)}
    ) as response:
        async for chunk in response.aiter_bytes():
            for e in decoder.decode(chunk):
                events.append((int(e.id) if e.id else None, e.event, orjson.loads(e.data)))
    return response.status_code, events


async def test_a_run_resumes_after_an_event_id_with_exactly_the_later_events(
    gw: GatewayUnderTest,
) -> None:
    headers, full = await stream_run(gw, {"prompt": "Please add 1 and 2."})
    session_id = headers["x-sluice-session-id"]
    cut = next(seq for seq, kind, _ in full if kind == "tool.end")
    assert cut is not None
    _, later = await _replay(gw, session_id, cut)
    expected = [(s, k, d) for s, k, d in full if k != "end" and s is not None and s > cut]
    assert [(s, k, d) for s, k, d in later if k != "end"] == expected
    gw.gateway.sessions.recent.clear()  # the same from the store
    _, stored = await _replay(gw, session_id, cut)
    assert [(s, k, d) for s, k, d in stored if k != "end"] == expected


async def test_retry_runs_the_whole_run_again(
    agent_gateway: Callable[..., AbstractAsyncContextManager[GatewayUnderTest]],
) -> None:
    async with agent_gateway(tools=["testtools.hang", "testtools.add"]) as gw:
        run = await start_run(gw, "Please hang.")
        await events_until(gw, run["id"], lambda kind, _: kind == "tool.start")
        await gw.http.post(f"/api/sessions/{run['id']}/cancel")
        assert (await gw.final_record(run["id"]))["state"] == "cancelled"
        response = await gw.http.post(f"/api/sessions/{run['id']}/retry")
        assert response.status_code in (200, 201, 202), response.text
        retried: list[str] = []

        def second_hang(kind: str, data: dict[str, Any]) -> bool:
            if kind == "retry":
                retried.append(kind)
            return bool(retried) and kind == "tool.start" and data["name"] == "hang"

        seen = await events_until(gw, run["id"], second_hang)
        order = kinds(seen)
        retry = order.index("retry")
        assert order[retry + 1] == "step.start" and seen[retry + 1][2] == {"step": 1}
        await gw.http.post(f"/api/sessions/{run['id']}/cancel")
        record = await gw.final_record(run["id"])
        assert record["attempts"] == 2 and [s["step"] for s in record["steps"]] == [1]


async def test_max_steps_ends_the_run_with_its_error(
    tmp_path: Path,
) -> None:
    settings = agent_settings(tmp_path, tools=["calculator"], max_steps=2)
    settings.agents["helper"].model = "sim/tools"  # a model that always asks for a tool
    async with running_gateway(settings) as gw:
        _, events = await stream_run(gw, {"prompt": "Where is my order?"})
    assert kinds(events).count("step.start") == 2
    ended = [d for _, k, d in events if k == "tool.end"]
    assert [e["error"] for e in ended] == ["unknown_tool"]
    end = events[-1][2]
    assert end["state"] == "errored" and end["error"]["type"] == "max_steps"


async def test_a_conversation_keeps_its_history_and_the_second_answer_uses_the_first(
    gw: GatewayUnderTest,
) -> None:
    headers, first = await stream_run(gw, {"prompt": "Please add 2 and 3."})
    conversation = headers["x-sluice-conversation-id"]
    assert conversation.startswith("cv-")
    _, second = await stream_run(
        gw,
        {"prompt": "And what about that again?"},
        path=f"/api/conversations/{conversation}/turns",
    )
    assert 'Following up on your earlier question ("Please add 2 and 3.")' in text_of(second)
    stored = (await gw.http.get(f"/api/conversations/{conversation}")).json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant", "user", "assistant"]
    assert stored["messages"][1]["content"] == text_of(first)
    assert stored["messages"][3]["content"] == text_of(second)
    assert stored["agent"] == "helper" and len(stored["sessions"]) == 2
    record = await gw.final_record(stored["sessions"][1])
    assert gw.gateway.agents._running == {}  # a run is its conversation's only while it runs
    assert [m["content"] for m in record["messages"]][:2] == [
        "Please add 2 and 3.",
        text_of(first),
    ]


async def test_a_conversation_turn_may_name_a_plain_model(gw: GatewayUnderTest) -> None:
    _, first = await stream_run(
        gw,
        {"prompt": "Where is my order?", "model": "sim/agent"},
        "/api/conversations/chat-1/turns",
    )
    _, second = await stream_run(gw, {"prompt": "Thanks!"}, "/api/conversations/chat-1/turns")
    assert "tool.start" not in kinds(first) and first[-1][2]["state"] == "complete"
    assert "Where is my order?" in text_of(second)
    stored = (await gw.http.get("/api/conversations/chat-1")).json()
    assert stored["agent"] is None and stored["model"] == "sim/agent"


async def test_a_model_turns_tool_calls_end_it_as_they_end_a_plain_session(
    gw: GatewayUnderTest,
) -> None:
    # (a model that asks for tools though none is declared: nothing runs them)
    headers, events = await stream_run(
        gw,
        {"prompt": "Where is order A-1042?", "model": "sim/parallel-tools"},
        "/api/conversations/chat-2/turns",
    )
    assert kinds(events).count("step.start") == 1 and "tool.start" not in kinds(events)
    assert events[-1][2]["state"] == "complete"
    record = await gw.final_record(headers["x-sluice-session-id"])
    assert (record["finish_reason"], record["error"]) == ("tool_calls", None)
    assert [c["name"] for c in record["tool_calls"]] == ["lookup_order", "list_open_tickets"]


async def test_refusals_are_native_errors_with_their_status(gw: GatewayUnderTest) -> None:
    cases = [
        ("/api/agents/nobody/runs", {"prompt": "hi"}, 404, "unknown_agent"),
        ("/api/agents/helper/runs", {}, 400, "invalid_request"),
        ("/api/agents/helper/runs", {"prompt": "hi", "conversation_id": "a b"}, 400, None),
        ("/api/conversations/nope/turns", {"prompt": "hi"}, 400, "invalid_request"),
        ("/api/conversations/x/turns", {"messages": []}, 400, "invalid_request"),
    ]
    for path, body, status, type_ in cases:
        response = await gw.http.post(path, json=body)
        assert response.status_code == status, (path, response.text)
        if type_ is not None:
            assert response.json()["error"]["type"] == type_
    missing = await gw.http.get("/api/conversations/cv-none")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "unknown_conversation"
    listed = (await gw.http.get("/api/agents")).json()["agents"]
    assert [a["name"] for a in listed] == ["helper"] and listed[0]["model"] == "sim/agent"


async def test_without_keep_content_records_keep_nothing_that_was_said(tmp_path: Path) -> None:
    settings = agent_settings(tmp_path)
    settings.keep_content = False
    async with running_gateway(settings) as gw:
        headers, events = await stream_run(gw, {"prompt": "Please add 4 and 5."})
        assert "x-sluice-conversation-id" not in headers
        assert "8" in text_of(events)  # the client is told everything (a = b = 4)
        record = await gw.final_record(headers["x-sluice-session-id"])
        assert (record["text"], record["prompt"], record["messages"]) == ("", "", [])
        call = record["steps"][0]["tool_calls"][0]
        assert (call["name"], call["arguments"], call["result"]) == ("add", None, "")
        gw.gateway.sessions.recent.clear()
        stored = await gw.gateway.store.get_events(headers["x-sluice-session-id"])
        assert stored == []
        refused = await gw.http.post(
            "/api/agents/helper/runs", json={"prompt": "hi", "conversation_id": "c1"}
        )
        assert refused.status_code == 409
        assert refused.json()["error"]["type"] == "conversation_not_kept"
