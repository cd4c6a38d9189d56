"""The real front-end clients, in Node.js, against Sluice's agent streams: AG-UI's
``HttpAgent.runAgent`` (@ag-ui/client 1.0: its schema checks, ``verifyEvents`` and message
building) and the AI SDK's chat (``ai``'s ``AbstractChat`` and ``DefaultChatTransport``, what
``useChat`` runs: the chunk schema, ``processUIMessageStream``'s rules).

First every hand-built log of ``agent_logs`` as the presenters render it, served from a loopback
server: the clients must take each whole. Then runs end to end through a real gateway and its
simulator: the text, the tool calls and their results, the order of events, Stop, errors,
a second turn on the same thread or chat, and the AI SDK's resume."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from sluice import events as ev
from sluice.config import AgentConfig
from sluice.gateway.agui import AGUIPresenter
from sluice.gateway.server import RunningServer
from sluice.gateway.uimessages import UIMessagePresenter
from sluice.sse import SSEDecoder
from tests.conftest import GatewayUnderTest, read_request_body, running_gateway
from tests.conftest import test_settings as gateway_settings
from tests.gateway.agent_logs import LOGS, present
from tests.gateway.js_clients import run_client

SESSION = "op-replayed"
USER = {"id": "user-1", "role": "user", "content": "What is 6*7, and the time?"}
#: a long answer from the simulator, for a Stop to land inside it
LONG = {"x-sim-token-rate": "300", "x-sim-output-tokens": "3000"}


# -- every hand-built log, through each client --------------------------------------------------


class Canned:
    """An ASGI app: ``/agui/<log>`` and ``/ui/<log>``, each log of ``agent_logs`` rendered."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await read_request_body(receive)
        kind, name = scope["path"].strip("/").split("/")
        presenter: Any = (
            AGUIPresenter("thread-1", "run-1", SESSION)
            if kind == "agui"
            else UIMessagePresenter(SESSION)
        )
        body = present(presenter, LOGS[name]())
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def canned() -> AsyncIterator[str]:
    async with RunningServer(Canned()) as server:  # type: ignore[arg-type]
        yield server.url


def expected_error(name: str) -> ev.Error | None:
    last = LOGS[name]()[-1:] if LOGS[name]() else []
    return last[0] if last and isinstance(last[0], ev.Error) else None


@pytest.mark.parametrize("name", sorted(LOGS))
async def test_the_agui_client_takes_every_log_whole(
    js_clients: Path, canned: str, name: str
) -> None:
    seen = await run_client(
        "agui_run.mjs",
        f"{canned}/agui/{name}",
        {"threadId": "thread-1", "runId": "run-1", "messages": [USER]},
    )
    run = seen["runs"][0]
    assert run["failed"] is None and run["rejected"] is None, run
    rendered = present(AGUIPresenter("thread-1", "run-1", SESSION), LOGS[name]())
    sent = [orjson.loads(block[6:]) for block in rendered.split(b"\n\n") if block]
    # every event reached the subscriber, in order, none dropped or refused
    assert [e["type"] for e in run["events"]] == [e["type"] for e in sent]
    assert "AG-UI" not in seen["stderr"] and "Warning" not in seen["stderr"], seen["stderr"]
    error = expected_error(name)
    if error is None:
        assert run["events"][-1]["type"] == "RUN_FINISHED"
    else:
        assert run["events"][-1] == {
            "type": "RUN_ERROR",
            "message": error.message,
            "code": error.type,
        }


@pytest.mark.parametrize("name", sorted(LOGS))
async def test_the_ai_sdk_chat_takes_every_log_whole(
    js_clients: Path, canned: str, name: str
) -> None:
    seen = await run_client(
        "ui_stream_run.mjs", f"{canned}/ui/{name}", {"chatId": "chat-1", "texts": ["hi"]}
    )
    error = expected_error(name)
    if error is None or error.type == "cancelled":
        assert seen["errors"] == [] and seen["status"] == "ready", seen
    else:  # the error chunk: useChat's error state, with the message
        assert seen["errors"] == [f"{error.type}: {error.message}"]
        assert seen["status"] == "error"
    assert seen["chunks"][-1] == "[DONE]"
    user, answer = seen["messages"]
    assert user["parts"] == [{"type": "text", "text": "hi"}]
    assert answer["id"] == SESSION and answer["role"] == "assistant"
    # every text and reasoning part ended; the text is the log's
    said = "".join(e.text for e in LOGS[name]() if isinstance(e, ev.TextDelta) and e.text)
    texts = [p for p in answer["parts"] if p["type"] == "text"]
    assert "".join(p["text"] for p in texts) == said
    assert all(p["state"] == "done" for p in answer["parts"] if p["type"] in ("text", "reasoning"))
    # each tool part reached its end: an output or an error
    tools = [p for p in answer["parts"] if p["type"] == "dynamic-tool"]
    assert all(p["state"] in ("output-available", "output-error") for p in tools), tools
    assert all(p["providerExecuted"] is True for p in tools)


async def test_the_two_step_log_builds_the_messages_a_front_end_shows(
    js_clients: Path, canned: str
) -> None:
    agui = await run_client(
        "agui_run.mjs",
        f"{canned}/agui/two_steps",
        {"threadId": "thread-1", "runId": "run-1", "messages": [USER]},
    )
    messages = agui["messages"]
    assert [m["role"] for m in messages] == [
        "user",
        "reasoning",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]
    step1 = messages[2]
    assert step1["content"] == "Let me check both."
    assert [(c["id"], c["function"]["name"]) for c in step1["toolCalls"]] == [
        ("call_calc", "calculator"),
        ("call_clock", "clock"),
    ]
    assert orjson.loads(step1["toolCalls"][0]["function"]["arguments"]) == {"expression": "6*7"}
    assert messages[3] == {
        "id": f"{SESSION}-t1",
        "toolCallId": "call_calc",
        "role": "tool",
        "content": "42",
    }
    assert messages[4]["metadata"] == {"isError": True, "error": "tool_timeout"}
    assert messages[5]["content"] == "6*7 is 42; the clock timed out."
    assert agui["runs"][0]["result"] == {"finishReason": "stop"}

    chat = await run_client(
        "ui_stream_run.mjs", f"{canned}/ui/two_steps", {"chatId": "chat-1", "texts": ["hi"]}
    )
    parts = chat["messages"][-1]["parts"]
    assert [p["type"] for p in parts] == [
        "step-start",
        "reasoning",
        "text",
        "dynamic-tool",
        "dynamic-tool",
        "step-start",
        "text",
    ]
    calc, clock = parts[3], parts[4]
    assert calc["toolName"] == "calculator" and calc["input"] == {"expression": "6*7"}
    assert calc["state"] == "output-available" and calc["output"] == "42"
    assert clock["state"] == "output-error" and clock["errorText"].startswith("tool_timeout:")
    # the status and the tool's progress reach onData, and stay out of the message
    assert {"type": "data-status", "data": {"phase": "thinking"}, "transient": True} in chat["data"]
    assert [d["data"]["progress"] for d in chat["data"] if d["type"] == "data-tool-progress"] == [
        0.5
    ]
    assert chat["finishes"] == [
        {"isAbort": False, "isDisconnect": False, "isError": False, "finishReason": "stop"}
    ]


# -- end to end, through a gateway --------------------------------------------------------------


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[GatewayUnderTest]:
    settings = gateway_settings(tmp_path, slow_start_ttft=0.05)
    settings.agents = {
        "helper": AgentConfig(name="helper", model="sim/agent", tools=["calculator", "clock"]),
        "thinker": AgentConfig(name="thinker", model="sim/slow-start"),
        "talker": AgentConfig(name="talker", model="sim/support"),
        "failing": AgentConfig(name="failing", model="sim/error-mid-stream"),
    }
    async with running_gateway(settings) as gateway:
        yield gateway


QUESTION = "Use the calculator for 6*7 and read the clock, please."


def events_of(run: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in run["events"] if e["type"] == kind]


async def test_agui_runs_the_agents_tools_in_two_steps(
    js_clients: Path, gw: GatewayUnderTest
) -> None:
    seen = await run_client(
        "agui_run.mjs",
        f"{gw.url}/ag-ui/agents/helper",
        {"threadId": "thread-e2e", "texts": [QUESTION]},
    )
    run = seen["runs"][0]
    assert run["failed"] is None and run["rejected"] is None, run
    kinds = [e["type"] for e in run["events"] if e["type"] != "CUSTOM"]
    assert kinds[0] == "RUN_STARTED" and kinds[-1] == "RUN_FINISHED"
    assert [e["stepName"] for e in events_of(run, "STEP_STARTED")] == ["step 1", "step 2"]
    # step 1: the model's two calls, complete before their results; step 2: the answer
    step2 = kinds.index("STEP_FINISHED")
    assert kinds[:step2].count("TOOL_CALL_START") == 2
    assert max(i for i, k in enumerate(kinds) if k == "TOOL_CALL_END") < kinds.index(
        "TOOL_CALL_RESULT"
    )
    calls = {e["toolCallName"]: e["toolCallId"] for e in events_of(run, "TOOL_CALL_START")}
    assert set(calls) == {"calculator", "clock"}
    results = {e["toolCallId"]: e["content"] for e in events_of(run, "TOOL_CALL_RESULT")}
    assert results[calls["calculator"]] == "42"
    assert results[calls["clock"]].endswith("Z")
    args = "".join(
        e["delta"]
        for e in events_of(run, "TOOL_CALL_ARGS")
        if e["toolCallId"] == calls["calculator"]
    )
    assert orjson.loads(args) == {"expression": "6*7"}
    # the answer quotes the results; the thread's messages are what a front end shows
    messages = seen["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "assistant"]
    answer = messages[-1]["content"]
    assert "42" in answer and results[calls["clock"]] in answer
    status = [e["value"] for e in events_of(run, "CUSTOM") if e["name"] == "sluice.status"]
    assert {"phase": "tool", "detail": "calculator, clock"} in status
    # the run is the session RUN_STARTED names, in the thread's conversation
    session_id = run["events"][0]["metadata"]["sessionId"]
    record = await gw.final_record(session_id)
    assert record["agent"] == "helper" and record["conversation_id"] == "thread-e2e"
    assert record["state"] == "complete"
    usage = run["events"][-1]["usage"][0]
    assert usage["outputTokens"] == record["usage"]["output_tokens"]


async def test_agui_a_second_turn_on_the_thread_sends_the_history(
    js_clients: Path, gw: GatewayUnderTest
) -> None:
    seen = await run_client(
        "agui_run.mjs",
        f"{gw.url}/ag-ui/agents/talker",
        {"threadId": "thread-two", "texts": ["How do refunds work?", "And exchanges?"]},
    )
    first, second = seen["runs"]
    assert first["rejected"] is None and second["rejected"] is None, seen
    assert first["events"][-1]["type"] == second["events"][-1]["type"] == "RUN_FINISHED"
    assert [m["role"] for m in seen["messages"]] == ["user", "assistant", "user", "assistant"]
    session = second["events"][0]["metadata"]["sessionId"]
    sent = (await gw.final_record(session))["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "How do refunds work?"),
        ("assistant", seen["messages"][1]["content"]),
        ("user", "And exchanges?"),
    ]
    stored = (await gw.http.get("/api/conversations/thread-two")).json()
    assert len(stored["sessions"]) == 2


async def test_agui_reasoning_then_the_answer(js_clients: Path, gw: GatewayUnderTest) -> None:
    seen = await run_client(
        "agui_run.mjs", f"{gw.url}/ag-ui/agents/thinker", {"threadId": "t-think", "texts": ["Why?"]}
    )
    kinds = [e["type"] for e in seen["runs"][0]["events"] if e["type"] != "CUSTOM"]
    assert (
        kinds.index("REASONING_START")
        < kinds.index("REASONING_END")
        < kinds.index("TEXT_MESSAGE_START")
    )
    assert [m["role"] for m in seen["messages"]] == ["user", "reasoning", "assistant"]
    assert seen["messages"][1]["content"] and seen["messages"][2]["content"]


async def test_agui_stop_ends_the_run_with_run_error_cancelled(
    js_clients: Path, gw: GatewayUnderTest
) -> None:
    seen = await run_client(
        "agui_run.mjs",
        f"{gw.url}/ag-ui/agents/talker",
        {
            "threadId": "t-stop",
            "texts": ["Tell me everything."],
            "headers": LONG,
            "stopOn": "TEXT_MESSAGE_CONTENT",
            "cancelBase": gw.url,
        },
    )
    run = seen["runs"][0]
    assert run["stopped"] == 200 and run["rejected"] is None
    kinds = [e["type"] for e in run["events"]]
    assert kinds[-3:] == ["TEXT_MESSAGE_END", "STEP_FINISHED", "RUN_ERROR"]
    assert run["events"][-1]["code"] == "cancelled"
    record = await gw.final_record(run["events"][0]["metadata"]["sessionId"])
    assert record["state"] == "cancelled"


async def test_agui_an_upstream_error_is_run_error_with_its_type(
    js_clients: Path, gw: GatewayUnderTest
) -> None:
    seen = await run_client(
        "agui_run.mjs", f"{gw.url}/ag-ui/agents/failing", {"threadId": "t-fail", "texts": ["Hi"]}
    )
    run = seen["runs"][0]
    record = await gw.final_record(run["events"][0]["metadata"]["sessionId"])
    assert record["state"] == "errored"
    assert run["events"][-1] == {
        "type": "RUN_ERROR",
        "message": record["error"]["message"],
        "code": record["error"]["type"],
    }


async def test_ai_sdk_chat_runs_the_agents_tools_in_two_steps(
    js_clients: Path, gw: GatewayUnderTest
) -> None:
    seen = await run_client(
        "ui_stream_run.mjs",
        f"{gw.url}/api/agents/helper/ui",
        {"chatId": "chat-e2e", "texts": [QUESTION]},
    )
    assert seen["errors"] == [] and seen["status"] == "ready", seen
    assert seen["responses"] == [200]
    chunks = [c if c == "[DONE]" else c["type"] for c in seen["chunks"]]
    shown = [c for c in chunks if not c.startswith("data-")]
    assert shown[0] == "start" and shown[-2:] == ["finish", "[DONE]"]
    assert shown.count("start-step") == shown.count("finish-step") == 2
    first_step = shown[: shown.index("finish-step")]
    assert first_step.count("tool-input-available") == 2
    assert first_step.count("tool-output-available") == 2
    assert max(
        i for i, c in enumerate(first_step) if c == "tool-input-available"
    ) < first_step.index("tool-output-available")
    answer = seen["messages"][-1]
    tools = {p["toolName"]: p for p in answer["parts"] if p["type"] == "dynamic-tool"}
    assert set(tools) == {"calculator", "clock"}
    assert tools["calculator"]["input"] == {"expression": "6*7"}
    assert tools["calculator"]["state"] == "output-available"
    assert tools["calculator"]["output"] == "42"
    text = answer["parts"][-1]
    assert (
        text["type"] == "text" and "42" in text["text"] and tools["clock"]["output"] in text["text"]
    )
    assert seen["finishes"][-1]["finishReason"] == "stop"
    assert {"phase": "tool", "detail": "calculator, clock"} in [
        d["data"] for d in seen["data"] if d["type"] == "data-status"
    ]
    record = await gw.final_record(answer["id"])
    assert record["conversation_id"] == "chat-e2e" and record["state"] == "complete"


async def test_ai_sdk_chat_a_second_message_sends_the_history(
    js_clients: Path, gw: GatewayUnderTest
) -> None:
    seen = await run_client(
        "ui_stream_run.mjs",
        f"{gw.url}/api/agents/talker/ui",
        {"chatId": "chat-two", "texts": ["How do refunds work?", "And exchanges?"]},
    )
    assert seen["errors"] == [] and seen["responses"] == [200, 200], seen
    assert [m["role"] for m in seen["messages"]] == ["user", "assistant", "user", "assistant"]
    answer1, answer2 = seen["messages"][1], seen["messages"][3]
    sent = (await gw.final_record(answer2["id"]))["messages"]
    said = "".join(p["text"] for p in answer1["parts"] if p["type"] == "text")
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "How do refunds work?"),
        ("assistant", said),
        ("user", "And exchanges?"),
    ]


async def test_ai_sdk_chat_reasoning_then_the_answer(
    js_clients: Path, gw: GatewayUnderTest
) -> None:
    seen = await run_client(
        "ui_stream_run.mjs",
        f"{gw.url}/api/agents/thinker/ui",
        {"chatId": "c-think", "texts": ["Why?"]},
    )
    parts = seen["messages"][-1]["parts"]
    assert [p["type"] for p in parts] == ["step-start", "reasoning", "text"]
    assert parts[1]["text"] and parts[1]["state"] == "done" and parts[2]["text"]


async def test_ai_sdk_chat_stop_aborts_the_answer(js_clients: Path, gw: GatewayUnderTest) -> None:
    seen = await run_client(
        "ui_stream_run.mjs",
        f"{gw.url}/api/agents/talker/ui",
        {
            "chatId": "c-stop",
            "texts": ["Tell me everything."],
            "headers": LONG,
            "stopOn": "text-delta",
            "cancelBase": gw.url,
        },
    )
    assert seen["stopped"] == 200 and seen["errors"] == []
    chunks = [c if c == "[DONE]" else c["type"] for c in seen["chunks"]]
    assert chunks[-4:] == ["text-end", "finish-step", "abort", "[DONE]"]
    assert seen["chunks"][-2]["reason"].startswith("stopped")
    answer = seen["messages"][-1]
    assert answer["parts"][-1]["state"] == "done"
    assert (await gw.final_record(answer["id"]))["state"] == "cancelled"


async def test_ai_sdk_chat_an_upstream_error_is_the_chats_error(
    js_clients: Path, gw: GatewayUnderTest
) -> None:
    seen = await run_client(
        "ui_stream_run.mjs",
        f"{gw.url}/api/agents/failing/ui",
        {"chatId": "c-fail", "texts": ["Hi"]},
    )
    record = await gw.final_record(seen["messages"][-1]["id"])
    error = record["error"]
    assert seen["status"] == "error"
    assert seen["errors"] == [f"{error['type']}: {error['message']}"]
    assert seen["finishes"][-1]["isError"] is True


async def test_ai_sdk_chat_resumes_a_run_under_way_from_its_start(
    js_clients: Path, gw: GatewayUnderTest
) -> None:
    body = {
        "id": "c-resume",
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Refunds?"}]}],
        "trigger": "submit-message",
        "disconnect_policy": "detach",
    }
    decoder = SSEDecoder()
    # the first client reads a few words, then leaves (the page reloads)
    async with gw.http.stream("POST", "/api/agents/talker/ui", json=body, headers=LONG) as response:
        assert response.status_code == 200
        session_id = response.headers["x-sluice-session-id"]
        deltas = 0
        async for chunk in response.aiter_bytes():
            deltas += sum(1 for e in decoder.decode(chunk) if '"text-delta"' in e.data)
            if deltas >= 3:
                break
    seen = await run_client(
        "ui_stream_run.mjs",
        f"{gw.url}/api/agents/talker/ui",
        {"chatId": "c-resume", "resume": True, "messages": body["messages"]},
    )
    assert seen["responses"] == [200] and seen["errors"] == [], seen
    answer = seen["messages"][-1]
    assert answer["id"] == session_id
    record = await gw.final_record(session_id)
    assert record["state"] == "complete"
    text = "".join(p["text"] for p in answer["parts"] if p["type"] == "text")
    assert text == record["text"]  # the whole answer, from its first word
    # nothing under way any more: 204, and the chat has nothing to resume
    again = await run_client(
        "ui_stream_run.mjs",
        f"{gw.url}/api/agents/talker/ui",
        {"chatId": "c-resume", "resume": True},
    )
    assert again["responses"] == [204] and again["messages"] == []


async def test_ai_sdk_chat_resumes_a_retried_run_at_its_new_attempt(
    js_clients: Path, gw: GatewayUnderTest
) -> None:
    body = {
        "id": "c-retried",
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}],
    }
    # the first attempt fails mid-answer; the simulator answers the next one, slowly
    headers = {"x-sim-fail-count": "1", "x-sim-token-rate": "1000", "x-sim-output-tokens": "3000"}
    failed = await gw.http.post("/api/agents/failing/ui", json=body, headers=headers)
    assert b'"type":"error"' in failed.content
    session_id = failed.headers["x-sluice-session-id"]
    retried = await gw.http.post(f"/api/sessions/{session_id}/retry")
    assert retried.status_code == 202, retried.text
    seen = await run_client(
        "ui_stream_run.mjs",
        f"{gw.url}/api/agents/failing/ui",
        {"chatId": "c-retried", "resume": True, "messages": body["messages"]},
    )
    assert seen["responses"] == [200] and seen["errors"] == [], seen
    kinds = [c if c == "[DONE]" else c["type"] for c in seen["chunks"]]
    # only the new attempt: no error of the first, no retry marker
    assert kinds[:2] == ["start", "start-step"] and kinds[-2:] == ["finish", "[DONE]"]
    assert "error" not in kinds and "data-retry" not in kinds
    record = await gw.final_record(session_id)
    assert record["state"] == "complete" and record["attempts"] == 2
    text = "".join(p["text"] for p in seen["messages"][-1]["parts"] if p["type"] == "text")
    assert text == record["text"]
