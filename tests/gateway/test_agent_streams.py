"""The agent front ends' endpoints on a real gateway: ``POST /ag-ui/agents/{name}`` and
``POST /api/agents/{name}/ui`` (and its resume): refusals before the stream in the native
error shape, the stream's headers and framing, what a client that leaves does to the run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluice.config import AgentConfig
from tests.conftest import GatewayUnderTest, running_gateway
from tests.conftest import test_settings as gateway_settings
from tests.gateway import test_agui, test_uimessages

LONG = {"x-sim-token-rate": "300", "x-sim-output-tokens": "3000"}
USER = {"id": "u1", "role": "user", "content": "How do refunds work?"}
AGUI_BODY = {"threadId": "thread-1", "runId": "run-1", "messages": [USER]}
UI_BODY = {
    "id": "chat-1",
    "trigger": "submit-message",
    "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Refunds?"}]}],
}


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[GatewayUnderTest]:
    settings = gateway_settings(tmp_path)
    settings.agents = {"talker": AgentConfig(name="talker", model="sim/support")}
    async with running_gateway(settings) as gateway:
        yield gateway


def assert_native_error(response: httpx.Response, status: int, kind: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"type", "message"} and error["type"] == kind, error


@pytest.mark.parametrize(
    ("path", "body"),
    [("/ag-ui/agents/nobody", AGUI_BODY), ("/api/agents/nobody/ui", UI_BODY)],
)
async def test_an_unknown_agent_is_404(gw: GatewayUnderTest, path: str, body: Any) -> None:
    assert_native_error(await gw.http.post(path, json=body), 404, "unknown_agent")


async def test_resuming_for_an_unknown_agent_is_404_and_for_no_run_204(
    gw: GatewayUnderTest,
) -> None:
    missing = await gw.http.get("/api/agents/nobody/ui/chat-1/stream")
    assert_native_error(missing, 404, "unknown_agent")
    none = await gw.http.get("/api/agents/talker/ui/chat-never/stream")
    assert none.status_code == 204 and none.content == b""


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/ag-ui/agents/talker", {**AGUI_BODY, "threadId": None}, "threadId"),
        ("/ag-ui/agents/talker", {**AGUI_BODY, "threadId": "a thread/with spaces"}, "threadId"),
        ("/ag-ui/agents/talker", {**AGUI_BODY, "messages": []}, "no user message"),
        ("/ag-ui/agents/talker", {**AGUI_BODY, "messages": [{"role": "x"}]}, "unknown role"),
        (
            "/ag-ui/agents/talker",
            {**AGUI_BODY, "forwardedProps": {"disconnect_policy": "sometimes"}},
            "disconnect_policy",
        ),
        ("/api/agents/talker/ui", {**UI_BODY, "id": 7}, "'id'"),
        ("/api/agents/talker/ui", {**UI_BODY, "messages": [{"role": "user"}]}, "'parts'"),
        ("/api/agents/talker/ui", {**UI_BODY, "id": "x" * 129}, "'id'"),
    ],
)
async def test_a_body_that_cannot_be_a_run_is_400(
    gw: GatewayUnderTest, path: str, body: Any, says: str
) -> None:
    response = await gw.http.post(path, json=body)
    assert_native_error(response, 400, "invalid_request")
    assert says in response.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/ag-ui/agents/talker", "/api/agents/talker/ui"])
async def test_a_body_that_is_no_json_object_is_400_and_a_form_415(
    gw: GatewayUnderTest, path: str
) -> None:
    bad = await gw.http.post(path, content=b"[1, 2", headers={"content-type": "application/json"})
    assert_native_error(bad, 400, "invalid_request")
    form = await gw.http.post(path, content=b"threadId=x", headers={"content-type": "text/plain"})
    assert form.status_code == 415


async def test_a_method_the_path_does_not_take_is_405_in_the_native_shape(
    gw: GatewayUnderTest,
) -> None:
    assert_native_error(await gw.http.get("/ag-ui/agents/talker"), 405, "method_not_allowed")
    assert_native_error(await gw.http.put("/api/agents/talker/ui"), 405, "method_not_allowed")


async def test_a_run_from_another_site_is_refused(gw: GatewayUnderTest) -> None:
    response = await gw.http.post(
        "/ag-ui/agents/talker", json=AGUI_BODY, headers={"origin": "https://elsewhere.example"}
    )
    assert_native_error(response, 403, "forbidden")


async def test_a_resume_from_another_site_is_refused(gw: GatewayUnderTest) -> None:
    response = await gw.http.get(
        "/api/agents/talker/ui/chat-1/stream", headers={"origin": "https://elsewhere.example"}
    )
    assert_native_error(response, 403, "forbidden")


async def read_all(gw: GatewayUnderTest, path: str, body: Any) -> httpx.Response:
    response = await gw.http.post(path, json=body)
    assert response.status_code == 200, response.text
    return response


async def test_agui_answers_in_lf_framed_events_the_client_verifies(gw: GatewayUnderTest) -> None:
    response = await read_all(gw, "/ag-ui/agents/talker", AGUI_BODY)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["x-sluice-conversation-id"] == "thread-1"
    session_id = response.headers["x-sluice-session-id"]
    events = test_agui.parse(response.content)  # (no CR anywhere, one data line per event)
    test_agui.verify(events)
    assert events[0]["metadata"] == {"sessionId": session_id}
    text = "".join(e["delta"] for e in events if e["type"] == "TEXT_MESSAGE_CONTENT")
    record = await gw.final_record(session_id)
    assert text == record["text"] and record["conversation_id"] == "thread-1"
    assert record["messages"] == [{"role": "user", "content": "How do refunds work?"}]
    assert events[-1]["outcome"] == {"type": "success"}
    assert events[-1]["usage"][0]["outputTokens"] == record["usage"]["output_tokens"]


async def test_ui_answers_with_the_stream_header_and_done_last(gw: GatewayUnderTest) -> None:
    response = await read_all(gw, "/api/agents/talker/ui", UI_BODY)
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-sluice-conversation-id"] == "chat-1"
    chunks = test_uimessages.parse(response.content)
    test_uimessages.verify(chunks)
    session_id = response.headers["x-sluice-session-id"]
    assert chunks[0] == {"type": "start", "messageId": session_id}
    assert chunks[-2:] == [{"type": "finish", "finishReason": "stop"}, "[DONE]"]
    record = await gw.final_record(session_id)
    assert "".join(c["delta"] for c in chunks[:-1] if c["type"] == "text-delta") == record["text"]


async def test_a_second_run_on_a_thread_under_way_is_409(gw: GatewayUnderTest) -> None:
    drained = {**AGUI_BODY, "forwardedProps": {"disconnect_policy": "drain"}}
    async with gw.http.stream("POST", "/ag-ui/agents/talker", json=drained, headers=LONG) as first:
        assert first.status_code == 200
        async for chunk in first.aiter_bytes():
            if b"TEXT_MESSAGE_CONTENT" in chunk:
                break
    session_id = first.headers["x-sluice-session-id"]
    second = await gw.http.post("/ag-ui/agents/talker", json={**AGUI_BODY, "runId": "run-2"})
    assert_native_error(second, 409, "conversation_busy")
    chat = await gw.http.post("/api/agents/talker/ui", json={**UI_BODY, "id": "thread-1"})
    assert_native_error(chat, 409, "conversation_busy")
    assert (await gw.http.post(f"/api/sessions/{session_id}/cancel")).status_code == 200
    assert (await gw.final_record(session_id))["state"] == "cancelled"
    # the run over, the thread takes its next one
    third = await gw.http.post("/ag-ui/agents/talker", json={**AGUI_BODY, "runId": "run-3"})
    assert third.status_code == 200


@pytest.mark.parametrize(
    ("policy", "state"), [(None, "cancelled"), ("drain", "complete"), ("detach", "complete")]
)
@pytest.mark.parametrize("front", ["agui", "ui"])
async def test_a_client_that_leaves_stops_the_run_unless_its_policy_says_otherwise(
    gw: GatewayUnderTest, front: str, policy: str | None, state: str
) -> None:
    if front == "agui":
        path, body, marker = "/ag-ui/agents/talker", dict(AGUI_BODY), b"TEXT_MESSAGE_CONTENT"
        if policy is not None:
            body["forwardedProps"] = {"disconnect_policy": policy}
    else:
        path, body, marker = "/api/agents/talker/ui", dict(UI_BODY), b'"text-delta"'
        if policy is not None:
            body["disconnect_policy"] = policy
    fast = {"x-sim-token-rate": "1000", "x-sim-output-tokens": "600"}
    async with gw.http.stream("POST", path, json=body, headers=fast) as response:
        session_id = response.headers["x-sluice-session-id"]
        async for chunk in response.aiter_bytes():
            if marker in chunk:
                break
    record = await gw.final_record(session_id)
    assert record["state"] == state
    assert record["disconnects"][0]["reason"] == "client_disconnected"
