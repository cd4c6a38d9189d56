"""The official anthropic SDK, pointed at the gateway with only base_url changed, streams text
and tool calls; its accumulated final message equals what the simulator sent."""

from __future__ import annotations

import pytest
from anthropic import AsyncAnthropic

from tests.conftest import GatewayUnderTest, sent_tool_calls

PROMPT = [{"role": "user", "content": "How do I rotate my API token?"}]
TOOLS = [
    {
        "name": "lookup_order",
        "description": "Look up an order",
        "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}}},
    }
]


def client(gw: GatewayUnderTest) -> AsyncAnthropic:
    return AsyncAnthropic(base_url=gw.url, api_key="sk-ant-test-unused", max_retries=0)


@pytest.mark.parametrize("model", ["sim/support", "simchat/support", "simresp/support"])
async def test_streamed_text_equals_what_the_simulator_sent(
    gateway: GatewayUnderTest, model: str
) -> None:
    async with client(gateway).messages.stream(
        model=model, max_tokens=1024, messages=PROMPT
    ) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
        session_id = stream.response.headers["x-sluice-session-id"]
    sent = await gateway.sim_request(session_id)
    assert "".join(pieces) == sent["text"]
    assert final.content[0].type == "text" and final.content[0].text == sent["text"]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == sent["tokens_produced"]
    assert len(pieces) > 10


@pytest.mark.parametrize("model", ["sim/tools", "simchat/tools", "sim/parallel-tools"])
async def test_tool_use_blocks_parse_to_what_the_simulator_sent(
    gateway: GatewayUnderTest, model: str
) -> None:
    async with client(gateway).messages.stream(
        model=model, max_tokens=1024, messages=PROMPT, tools=TOOLS
    ) as stream:
        final = await stream.get_final_message()
        session_id = stream.response.headers["x-sluice-session-id"]
    sent = await gateway.sim_request(session_id)
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [(u.name, u.input) for u in uses] == sent_tool_calls(sent)
    assert final.stop_reason == "tool_use"


async def test_thinking_streams_before_the_answer(gateway: GatewayUnderTest) -> None:
    async with client(gateway).messages.stream(
        model="sim/slow-start",
        max_tokens=1024,
        messages=PROMPT,
        extra_headers={"x-sim-ttft": "0.2"},
    ) as stream:
        final = await stream.get_final_message()
        session_id = stream.response.headers["x-sluice-session-id"]
    kinds = [b.type for b in final.content]
    assert kinds[0] == "thinking" and "text" in kinds
    record = await gateway.final_record(session_id)
    assert record["reasoning"] and record["reasoning"] == final.content[0].thinking
    telemetry = record["telemetry"]
    assert telemetry["time_to_first_event_ms"] < telemetry["ttft_ms"]


async def test_a_non_streaming_message(gateway: GatewayUnderTest) -> None:
    message = await client(gateway).messages.create(
        model="simchat/support", max_tokens=1024, messages=PROMPT
    )
    assert message.content[0].type == "text" and len(message.content[0].text) > 20
    assert message.usage.output_tokens > 0
