"""The official openai SDK against the simulator's Responses endpoint."""

from __future__ import annotations

import json

from openai.types.responses import FunctionToolParam

from .helpers import (
    FAST,
    LOOKUP_ORDER_ARGS,
    LOOKUP_ORDER_SCHEMA,
    NO_ARGS_SCHEMA,
    Sim,
    new_session,
    payloads,
    split_sse,
)

PROMPT = "My API key stopped working, what should I do?"
TOOLS: list[FunctionToolParam] = [
    {
        "type": "function",
        "name": "lookup_order",
        "description": "Look up an order by id.",
        "parameters": LOOKUP_ORDER_SCHEMA,
        "strict": True,
    },
    {
        "type": "function",
        "name": "list_open_tickets",
        "description": "List the customer's open tickets.",
        "parameters": NO_ARGS_SCHEMA,
        "strict": True,
    },
]


async def test_streamed_text_equals_the_recorded_text(sim: Sim) -> None:
    session = new_session()
    client = sim.openai(session)
    deltas: list[str] = []
    async with client.responses.stream(model="support", input=PROMPT) as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        response = await stream.get_final_response()

    record = await sim.only_record(session)
    assert response.status == "completed"
    assert response.output_text == "".join(deltas) == record["text"]
    assert response.usage is not None
    assert response.usage.output_tokens == record["tokens_produced"] == len(deltas)
    assert response.usage.input_tokens == record["input_tokens"]


async def test_sequence_numbers_rise_and_every_frame_is_named(sim: Sim) -> None:
    async with sim.http() as client:
        response = await client.post(
            "/v1/responses",
            json={"model": "tools", "input": PROMPT, "stream": True},
            headers=FAST,
        )
    frames = split_sse(response.text)
    data = [json.loads(payload) for _, payload in frames]
    assert [event for event, _ in frames] == [frame["type"] for frame in data]
    assert [frame["sequence_number"] for frame in data] == list(range(len(data)))
    assert [frame["type"] for frame in data[:2]] == ["response.created", "response.in_progress"]
    assert data[-1]["type"] == "response.completed"
    assert "[DONE]" not in response.text


async def test_function_calls_arrive_parsed(sim: Sim) -> None:
    session = new_session()
    client = sim.openai(session)
    async with client.responses.stream(model="parallel-tools", input=PROMPT, tools=TOOLS) as stream:
        response = await stream.get_final_response()

    calls = [item for item in response.output if item.type == "function_call"]
    assert [(call.name, call.parsed_arguments) for call in calls] == [
        ("lookup_order", LOOKUP_ORDER_ARGS),
        ("list_open_tickets", {}),
    ]
    assert len({call.call_id for call in calls}) == 2
    record = await sim.only_record(session)
    assert [call["arguments"] for call in record["tool_calls"]] == [
        call.arguments for call in calls
    ]


async def test_text_before_a_function_call(sim: Sim) -> None:
    client = sim.openai(new_session())
    async with client.responses.stream(model="tools", input=PROMPT, tools=TOOLS) as stream:
        response = await stream.get_final_response()

    message, call = response.output
    assert message.type == "message"
    assert response.output_text == "Let me look up order A-1042 for you.\n\n"
    assert call.type == "function_call"
    assert json.loads(call.arguments) == LOOKUP_ORDER_ARGS


async def test_slow_start_streams_a_reasoning_summary_first(sim: Sim) -> None:
    session = new_session()
    client = sim.openai(session, **{"x-sim-ttft": "0.01"})
    kinds: list[str] = []
    async with client.responses.stream(model="slow-start", input=PROMPT) as stream:
        async for event in stream:
            kinds.append(event.type)
        response = await stream.get_final_response()

    record = await sim.only_record(session)
    reasoning, message = response.output
    assert reasoning.type == "reasoning"
    assert reasoning.summary[0].text == record["reasoning"] != ""
    assert message.type == "message"
    assert response.output_text == record["text"]
    first_text = kinds.index("response.output_text.delta")
    assert kinds.index("response.reasoning_summary_text.delta") < first_text
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens == record["reasoning_tokens"]


async def test_max_output_tokens_ends_incomplete(sim: Sim) -> None:
    session = new_session()
    async with sim.http() as client:
        response = await client.post(
            "/v1/responses",
            json={"model": "support", "input": PROMPT, "stream": True, "max_output_tokens": 16},
            headers={**FAST, "x-sluice-session-id": session},
        )
    last = payloads(response.text)[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["status"] == "incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last["response"]["usage"]["output_tokens"] == 16
    assert last["response"]["output"][0]["status"] == "incomplete"
    assert (await sim.only_record(session))["finish_reason"] == "length"


async def test_non_streaming_response(sim: Sim) -> None:
    session = new_session()
    client = sim.openai(session)
    response = await client.responses.create(model="tools", input=PROMPT, tools=TOOLS)

    record = await sim.only_record(session)
    assert response.status == "completed"
    assert response.output_text == record["text"]
    call = response.output[-1]
    assert call.type == "function_call"
    assert json.loads(call.arguments) == LOOKUP_ORDER_ARGS
