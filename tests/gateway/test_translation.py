"""Translation through the gateway, with the official SDKs as clients: interleaved parallel tool
calls, ids in the client's format, tool call ids that come back with the tools' results, and a
turn with thinking and tools continued with its signature.

The upstream is a small server on loopback that answers each request with the transcript its
``model`` names (under ``tests/fixtures/``) and keeps every request body it was sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI

from sluice.config import ProviderConfig
from sluice.gateway.server import RunningServer
from tests.conftest import GatewayUnderTest, read_request_body
from tests.wire.order_checks import check_messages_order

FIXTURES = Path(__file__).parent.parent / "fixtures"
INTERLEAVED = "scripted-openai/wire/chat-parallel-tools-interleaved.sse"
THINKING_TOOLS = "scripted-anthropic/wire/anthropic-thinking-tools.sse"
SIGNATURE = "ErUBCkYIBRgCIkDcFakeSignatureForTestsOnlyQm9ndXNTaWduYXR1cmU="
INTERLEAVED_CALLS = {
    "call_Weather0000000000000001": ("get_weather", {"city": "Paris", "units": "celsius"}),
    "call_Time00000000000000000002": ("get_time", {"timezone": "Europe/Paris"}),
    "call_Tickets000000000000003": ("list_open_tickets", {}),
}
ASK: Any = [{"role": "user", "content": "Weather and time in Paris?"}]


class ScriptedUpstream:
    """Answers every POST with the transcript named by its body's ``model``; keeps the bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = orjson.loads(await read_request_body(receive))
        self.bodies.append(body)
        payload = (FIXTURES / body["model"]).read_bytes()
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


@pytest.fixture
async def scripted(
    gateway: GatewayUnderTest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[GatewayUnderTest, ScriptedUpstream]]:
    monkeypatch.setenv("SCRIPTED_TEST_KEY", "test-key-not-secret")
    upstream = ScriptedUpstream()
    async with RunningServer(upstream) as server:  # type: ignore[arg-type]
        providers = gateway.gateway.settings.providers
        for kind, name in (("openai", "scripted-openai"), ("anthropic", "scripted-anthropic")):
            providers[name] = ProviderConfig(
                name, kind, base_url=f"{server.url}/v1", api_key_env="SCRIPTED_TEST_KEY"
            )
        yield gateway, upstream


def anthropic_client(gw: GatewayUnderTest) -> AsyncAnthropic:
    return AsyncAnthropic(base_url=gw.url, api_key="sk-ant-test-unused", max_retries=0)


def openai_client(gw: GatewayUnderTest) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="sk-test-unused", max_retries=0)


# -- interleaved parallel calls --------------------------------------------------------------


async def test_interleaved_parallel_calls_reach_an_anthropic_client_one_block_at_a_time(
    scripted: tuple[GatewayUnderTest, ScriptedUpstream],
) -> None:
    gw, _ = scripted
    body = {"model": INTERLEAVED, "max_tokens": 256, "messages": ASK, "stream": True}
    async with gw.http.stream("POST", "/v1/messages", json=body) as response:
        assert response.status_code == 200
        raw = await response.aread()
    joined = check_messages_order(raw)  # every fragment inside its own block
    assert {k: orjson.loads(v) for k, v in joined.items()} == {
        k: args for k, (_, args) in INTERLEAVED_CALLS.items()
    }
    async with anthropic_client(gw).messages.stream(
        model=INTERLEAVED, max_tokens=256, messages=ASK
    ) as stream:
        final = await stream.get_final_message()
    uses = {b.id: (b.name, b.input) for b in final.content if b.type == "tool_use"}
    assert uses == INTERLEAVED_CALLS
    assert final.id.startswith("msg_") and final.stop_reason == "tool_use"


# -- ids ---------------------------------------------------------------------------------------


async def test_a_translated_answer_carries_ids_of_the_clients_format(
    scripted: tuple[GatewayUnderTest, ScriptedUpstream],
) -> None:
    gw, _ = scripted
    message = await anthropic_client(gw).messages.create(
        model=INTERLEAVED, max_tokens=256, messages=ASK
    )
    assert message.id.startswith("msg_") and "chatcmpl" not in message.id
    completion = await openai_client(gw).chat.completions.create(model=THINKING_TOOLS, messages=ASK)
    assert completion.id.startswith("chatcmpl-") and "msg_" not in completion.id
    stream = await openai_client(gw).chat.completions.create(
        model=THINKING_TOOLS, messages=ASK, stream=True
    )
    [streamed] = {chunk.id async for chunk in stream}
    assert streamed.startswith("chatcmpl-op-")  # the gateway's, as for the answer above


async def test_a_passthrough_answer_keeps_the_upstreams_own_id(
    scripted: tuple[GatewayUnderTest, ScriptedUpstream],
) -> None:
    gw, _ = scripted
    message = await anthropic_client(gw).messages.create(
        model=THINKING_TOOLS, max_tokens=256, messages=ASK
    )
    assert message.id == "msg_01ThinkTools"


async def test_tool_call_ids_come_back_to_the_upstream_that_made_them(
    scripted: tuple[GatewayUnderTest, ScriptedUpstream],
) -> None:
    gw, upstream = scripted
    # An Anthropic client on a Chat upstream: the calls keep their call_ ids ...
    async with anthropic_client(gw).messages.stream(
        model=INTERLEAVED, max_tokens=256, messages=ASK
    ) as stream:
        first = await stream.get_final_message()
    uses = [b for b in first.content if b.type == "tool_use"]
    results = [{"type": "tool_result", "tool_use_id": u.id, "content": "ok"} for u in uses]
    follow = [
        *ASK,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": results},
    ]
    await anthropic_client(gw).messages.create(model=INTERLEAVED, max_tokens=256, messages=follow)
    sent = upstream.bodies[-1]["messages"]
    [assistant] = [m for m in sent if m["role"] == "assistant"]
    assert [c["id"] for c in assistant["tool_calls"]] == list(INTERLEAVED_CALLS)
    assert [m["tool_call_id"] for m in sent if m["role"] == "tool"] == list(INTERLEAVED_CALLS)
    # ... and a Chat client on an Anthropic upstream keeps the toolu_ ids.
    stream = await openai_client(gw).chat.completions.create(
        model=THINKING_TOOLS, messages=ASK, stream=True
    )
    ids = [
        call.id
        async for chunk in stream
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or []
        if call.id
    ]
    assert ids == ["toolu_01WeatherParis00000000"]
    assistant_turn = {
        "role": "assistant",
        "content": "Let me check.",
        "tool_calls": [
            {
                "id": ids[0],
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    await openai_client(gw).chat.completions.create(
        model=THINKING_TOOLS,
        messages=[
            *ASK,
            assistant_turn,
            {"role": "tool", "tool_call_id": ids[0], "content": "18 C"},
        ],
    )
    sent = upstream.bodies[-1]["messages"]
    assert sent[1]["content"][-1]["id"] == ids[0]
    assert sent[2]["content"][0]["tool_use_id"] == ids[0]


# -- a turn with thinking and tools, continued ---------------------------------------------------


async def test_a_turn_with_thinking_and_tools_is_continued_with_its_signature(
    scripted: tuple[GatewayUnderTest, ScriptedUpstream],
) -> None:
    gw, upstream = scripted
    client = anthropic_client(gw)
    async with client.messages.stream(
        model=THINKING_TOOLS, max_tokens=2048, messages=ASK
    ) as stream:
        first = await stream.get_final_message()
    thinking, _, call = first.content
    assert thinking.type == "thinking" and thinking.signature == SIGNATURE
    assert call.type == "tool_use"
    follow = [
        *ASK,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 C"}],
        },
    ]
    budget = {"type": "enabled", "budget_tokens": 1024}
    await client.messages.create(
        model=THINKING_TOOLS,
        max_tokens=2048,
        messages=follow,
        thinking=budget,  # type: ignore[arg-type]
    )
    sent = upstream.bodies[-1]
    assert sent["messages"][1]["content"][0] == {
        "type": "thinking",
        "thinking": thinking.thinking,
        "signature": SIGNATURE,
    }
    assert sent["thinking"] == budget


async def test_a_non_streamed_answer_and_the_record_keep_the_signature(
    scripted: tuple[GatewayUnderTest, ScriptedUpstream],
) -> None:
    gw, _ = scripted
    raw = await anthropic_client(gw).messages.with_raw_response.create(
        model=THINKING_TOOLS, max_tokens=2048, messages=ASK
    )
    message = await raw.parse()
    thinking = message.content[0]
    assert thinking.type == "thinking" and thinking.signature == SIGNATURE
    assert thinking.thinking.endswith("I should call get_weather.")
    record = await gw.final_record(raw.headers["x-sluice-session-id"])
    assert record["signatures"] == [{"signature": SIGNATURE, "index": 0, "redacted": False}]
