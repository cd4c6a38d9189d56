"""The official openai SDK, pointed at the gateway with only base_url changed, streams text and
tool calls; its accumulated final message equals what the simulator sent."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai import AsyncOpenAI
from openai.lib.streaming.chat import ChatCompletionStreamState

from tests.conftest import GatewayUnderTest, sent_tool_calls

PROMPT = [{"role": "user", "content": "My invoice shows a double charge. What do I do?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look up an order",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        },
    }
]


def client(gw: GatewayUnderTest) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="sk-test-unused", max_retries=0)


async def stream_completion(
    gw: GatewayUnderTest, model: str, **kwargs: Any
) -> tuple[str, Any, list[Any]]:
    """Stream through the SDK; return the session id, the SDK's final completion, the chunks."""
    raw = await client(gw).chat.completions.with_raw_response.create(
        model=model, messages=PROMPT, stream=True, **kwargs
    )
    session_id = raw.headers["x-sluice-session-id"]
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["cache-control"] == "no-cache"
    assert raw.headers["x-accel-buffering"] == "no"
    state = ChatCompletionStreamState(input_tools=kwargs.get("tools", []))
    chunks = []
    async for chunk in raw.parse():
        chunks.append(chunk)
        state.handle_chunk(chunk)
    return session_id, state.get_final_completion(), chunks


@pytest.mark.parametrize("model", ["sim/support", "simmsg/support", "simresp/support"])
async def test_streamed_text_equals_what_the_simulator_sent(
    gateway: GatewayUnderTest, model: str
) -> None:
    session_id, final, chunks = await stream_completion(gateway, model)
    sent = await gateway.sim_request(session_id)
    assert final.choices[0].message.content == sent["text"]
    assert final.choices[0].finish_reason == "stop"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 10
    record = await gateway.final_record(session_id)
    assert record["state"] == "complete" and record["text"] == sent["text"]


async def test_passthrough_forwards_the_simulator_wire_untranslated(
    gateway: GatewayUnderTest,
) -> None:
    session_id, _final, _chunks = await stream_completion(gateway, "sim/support")
    record = await gateway.final_record(session_id)
    assert record["passthrough"] is True and record["upstream_wire"] == "chat"
    translated, _, _ = await stream_completion(gateway, "simmsg/support")
    assert (await gateway.final_record(translated))["passthrough"] is False


async def test_the_usage_chunk_reaches_only_clients_that_asked(gateway: GatewayUnderTest) -> None:
    for model in ("sim/support", "simmsg/support"):
        session_id, final, chunks = await stream_completion(gateway, model)
        assert final.usage is None
        assert all(c.usage is None for c in chunks)
        # the gateway asked upstream anyway, so the record has the provider's usage
        record = await gateway.final_record(session_id)
        assert record["usage"]["source"] == "provider"
        assert record["usage"]["output_tokens"] > 0

        session_id, final, chunks = await stream_completion(
            gateway, model, stream_options={"include_usage": True}
        )
        assert final.usage is not None
        record = await gateway.final_record(session_id)
        assert final.usage.completion_tokens == record["usage"]["output_tokens"]
        assert final.usage.prompt_tokens == record["usage"]["input_tokens"]
        assert chunks[-1].choices == []


@pytest.mark.parametrize("model", ["sim/tools", "simmsg/tools", "simresp/tools"])
async def test_a_streamed_tool_call_parses_to_what_the_simulator_sent(
    gateway: GatewayUnderTest, model: str
) -> None:
    session_id, final, _ = await stream_completion(gateway, model, tools=TOOLS)
    sent = await gateway.sim_request(session_id)
    calls = final.choices[0].message.tool_calls
    assert final.choices[0].finish_reason == "tool_calls"
    assert [(c.function.name, orjson.loads(c.function.arguments)) for c in calls] == (
        sent_tool_calls(sent)
    )
    record = await gateway.final_record(session_id)
    assert [(c["name"], c["arguments"]) for c in record["tool_calls"]] == sent_tool_calls(sent)
    assert all(c["status"] == "ok" for c in record["tool_calls"])


@pytest.mark.parametrize("model", ["sim/parallel-tools", "simmsg/parallel-tools"])
async def test_parallel_tool_calls_arrive_separately_and_parse(
    gateway: GatewayUnderTest, model: str
) -> None:
    session_id, final, _ = await stream_completion(gateway, model, tools=TOOLS)
    sent = await gateway.sim_request(session_id)
    calls = final.choices[0].message.tool_calls
    assert len(calls) == 2 == len(sent["tool_calls"])
    assert [(c.function.name, orjson.loads(c.function.arguments or "{}")) for c in calls] == (
        sent_tool_calls(sent)
    )
    assert {} in [args for _, args in sent_tool_calls(sent)]  # the tool without arguments


async def test_a_non_streaming_request_gets_the_whole_completion(
    gateway: GatewayUnderTest,
) -> None:
    raw = await client(gateway).chat.completions.with_raw_response.create(
        model="simmsg/support", messages=PROMPT
    )
    completion = raw.parse()
    sent = await gateway.sim_request(raw.headers["x-sluice-session-id"])
    assert completion.choices[0].message.content == sent["text"]
    assert completion.usage is not None and completion.usage.completion_tokens > 0
