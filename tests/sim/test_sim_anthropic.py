"""The official anthropic SDK against the simulator's Messages endpoint."""

from __future__ import annotations

from anthropic.types import ToolParam

from .helpers import (
    FAST,
    LOOKUP_ORDER_ARGS,
    LOOKUP_ORDER_SCHEMA,
    NO_ARGS_SCHEMA,
    USER,
    Sim,
    new_session,
    payloads,
    split_sse,
)

TOOLS: list[ToolParam] = [
    {
        "name": "lookup_order",
        "description": "Look up an order by id.",
        "input_schema": LOOKUP_ORDER_SCHEMA,
    },
    {
        "name": "list_open_tickets",
        "description": "List the customer's open tickets.",
        "input_schema": NO_ARGS_SCHEMA,
    },
]


async def test_streamed_text_equals_the_recorded_text(sim: Sim) -> None:
    session = new_session()
    client = sim.anthropic(session)
    async with client.messages.stream(model="support", max_tokens=1024, messages=USER) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        message = await stream.get_final_message()

    record = await sim.only_record(session)
    assert text == record["text"]
    [block] = message.content
    assert block.type == "text" and block.text == text
    assert message.stop_reason == "end_turn"
    assert record["state"] == "completed"


async def test_usage_counts_input_estimate_and_every_token(sim: Sim) -> None:
    session = new_session()
    client = sim.anthropic(session, **{"x-sim-output-tokens": "42"})
    async with client.messages.stream(model="support", max_tokens=1024, messages=USER) as stream:
        message = await stream.get_final_message()

    record = await sim.only_record(session)
    assert message.usage.output_tokens == record["tokens_produced"] == 42
    assert message.usage.input_tokens == record["input_tokens"]
    assert record["input_tokens"] == -(-len(USER[0]["content"]) // 4)


async def test_frames_follow_the_real_order(sim: Sim) -> None:
    async with sim.http() as client:
        response = await client.post(
            "/v1/messages",
            json={"model": "support", "max_tokens": 100, "messages": USER, "stream": True},
            headers={**FAST, "x-sim-output-tokens": "5"},
        )
    frames = split_sse(response.text)
    events = [event for event, _ in frames]
    assert events == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data.startswith('{"type":"' + (event or "")) for event, data in frames[:2])
    assert frames[2][1] == '{"type": "ping"}'
    start = payloads(response.text)[0]["message"]
    assert start["usage"]["output_tokens"] == 1
    assert payloads(response.text)[-2]["usage"] == {"output_tokens": 5}


async def test_tool_use_arrives_with_parsed_input(sim: Sim) -> None:
    session = new_session()
    client = sim.anthropic(session)
    async with client.messages.stream(
        model="tools", max_tokens=1024, messages=USER, tools=TOOLS
    ) as stream:
        message = await stream.get_final_message()

    text, tool = message.content
    assert text.type == "text" and text.text == "Let me look up order A-1042 for you.\n\n"
    assert tool.type == "tool_use"
    assert (tool.name, tool.input) == ("lookup_order", LOOKUP_ORDER_ARGS)
    assert message.stop_reason == "tool_use"
    record = await sim.only_record(session)
    assert record["tool_calls"][0]["name"] == "lookup_order"


async def test_tool_input_fragments_start_empty(sim: Sim) -> None:
    async with sim.http() as client:
        response = await client.post(
            "/v1/messages",
            json={"model": "tools", "max_tokens": 100, "messages": USER, "stream": True},
            headers=FAST,
        )
    deltas = [
        frame["delta"]["partial_json"]
        for frame in payloads(response.text)
        if frame["type"] == "content_block_delta" and frame["delta"]["type"] == "input_json_delta"
    ]
    assert deltas[0] == ""
    assert len(deltas) > 3
    assert "".join(deltas) == '{"order_id": "A-1042", "include_history": true}'


async def test_parallel_tools_are_consecutive_blocks_and_no_args_sends_no_fragment(
    sim: Sim,
) -> None:
    session = new_session()
    client = sim.anthropic(session)
    async with client.messages.stream(
        model="parallel-tools", max_tokens=1024, messages=USER, tools=TOOLS
    ) as stream:
        message = await stream.get_final_message()
    async with sim.http() as http:
        raw = await http.post(
            "/v1/messages",
            json={"model": "parallel-tools", "max_tokens": 100, "messages": USER, "stream": True},
            headers=FAST,
        )

    first, second = message.content
    assert first.type == second.type == "tool_use"
    assert (first.name, first.input) == ("lookup_order", LOOKUP_ORDER_ARGS)
    assert (second.name, second.input) == ("list_open_tickets", {})
    assert message.stop_reason == "tool_use"
    second_block = [frame for frame in payloads(raw.text) if frame.get("index") == 1]
    assert [frame["type"] for frame in second_block] == [
        "content_block_start",
        "content_block_stop",
    ]


async def test_slow_start_thinks_before_answering(sim: Sim) -> None:
    session = new_session()
    client = sim.anthropic(session, **{"x-sim-ttft": "0.01"})
    async with client.messages.stream(model="slow-start", max_tokens=4096, messages=USER) as stream:
        kinds = [event.type async for event in stream]
        message = await stream.get_final_message()

    thinking, text = message.content
    record = await sim.only_record(session)
    assert thinking.type == "thinking"
    assert thinking.thinking == record["reasoning"] != ""
    assert thinking.signature
    assert text.type == "text" and text.text == record["text"]
    assert kinds.index("thinking") < kinds.index("text")
    assert message.usage.output_tokens == record["tokens_produced"] == 50 + 300
    assert record["reasoning_tokens"] == 50


async def test_max_tokens_stops_with_max_tokens(sim: Sim) -> None:
    session = new_session()
    client = sim.anthropic(session)
    async with client.messages.stream(model="support", max_tokens=9, messages=USER) as stream:
        message = await stream.get_final_message()

    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 9
    assert (await sim.only_record(session))["finish_reason"] == "length"


async def test_non_streaming_message(sim: Sim) -> None:
    session = new_session()
    client = sim.anthropic(session)
    message = await client.messages.create(
        model="tools", max_tokens=1024, messages=USER, tools=TOOLS
    )

    record = await sim.only_record(session)
    text, tool = message.content
    assert text.type == "text" and text.text == record["text"]
    assert tool.type == "tool_use" and tool.input == LOOKUP_ORDER_ARGS
    assert message.stop_reason == "tool_use"
    assert message.usage.output_tokens == record["tokens_produced"]
