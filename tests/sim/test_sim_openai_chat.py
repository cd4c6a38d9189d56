"""The official openai SDK against the simulator's Chat Completions endpoint."""

from __future__ import annotations

import json

import openai
import pytest
from openai.types.chat import ChatCompletionToolParam

from .helpers import (
    FAST,
    LOOKUP_ORDER_ARGS,
    LOOKUP_ORDER_SCHEMA,
    NO_ARGS_SCHEMA,
    USER,
    Sim,
    new_session,
    split_sse,
)

TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look up an order by id.",
            "parameters": LOOKUP_ORDER_SCHEMA,
            "strict": True,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "list_open_tickets",
            "description": "List the customer's open tickets.",
            "parameters": NO_ARGS_SCHEMA,
            "strict": True,
        },
    },
]


async def test_streamed_text_equals_the_recorded_text(sim: Sim) -> None:
    session = new_session()
    client = sim.openai(session)
    deltas: list[str] = []
    async with client.chat.completions.stream(model="support", messages=USER) as stream:
        async for event in stream:
            if event.type == "content.delta" and event.delta:
                deltas.append(event.delta)
        final = await stream.get_final_completion()

    record = await sim.only_record(session)
    message = final.choices[0].message
    assert message.content == "".join(deltas) == record["text"]
    assert final.choices[0].finish_reason == "stop"
    assert record["state"] == "completed"
    assert record["tokens_produced"] == len(deltas) == 300
    assert "```" in record["text"] and "## " in record["text"]


async def test_tool_call_arrives_parsed(sim: Sim) -> None:
    session = new_session()
    client = sim.openai(session)
    async with client.chat.completions.stream(model="tools", messages=USER, tools=TOOLS) as stream:
        final = await stream.get_final_completion()

    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me look up order A-1042 for you.\n\n"
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert call.function.name == "lookup_order"
    assert call.function.parsed_arguments == LOOKUP_ORDER_ARGS
    record = await sim.only_record(session)
    assert record["tool_calls"] == [
        {"index": 0, "name": "lookup_order", "arguments": call.function.arguments}
    ]


async def test_parallel_tool_calls_arrive_by_index(sim: Sim) -> None:
    client = sim.openai(new_session())
    async with client.chat.completions.stream(
        model="parallel-tools", messages=USER, tools=TOOLS
    ) as stream:
        final = await stream.get_final_completion()

    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    assert message.tool_calls is not None
    first, second = message.tool_calls
    assert first.type == second.type == "function"
    assert (first.function.name, first.function.parsed_arguments) == (
        "lookup_order",
        LOOKUP_ORDER_ARGS,
    )
    assert (second.function.name, second.function.arguments) == ("list_open_tickets", "{}")
    assert second.function.parsed_arguments == {}
    assert first.id != second.id


async def test_tool_call_fragments_follow_the_recorded_shape(sim: Sim) -> None:
    async with sim.http() as client:
        response = await client.post(
            "/v1/chat/completions",
            json={"model": "parallel-tools", "messages": USER, "stream": True},
            headers=FAST,
        )
    chunks = [json.loads(data) for _, data in split_sse(response.text) if data != "[DONE]"]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    calls = [call for chunk in chunks[1:-1] for call in chunk["choices"][0]["delta"]["tool_calls"]]
    openers = [call for call in calls if "id" in call]
    assert [call["index"] for call in openers] == [0, 1]
    assert all(call["function"]["arguments"] == "" for call in openers)
    assert all(set(call) == {"index", "function"} for call in calls if "id" not in call)
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    assert response.text.endswith("data: [DONE]\n\n")


async def test_usage_chunk_only_when_asked_for(sim: Sim) -> None:
    session = new_session()
    client = sim.openai(session)
    with_usage = await client.chat.completions.create(
        model="support", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in with_usage]
    without_usage = await client.chat.completions.create(
        model="support", messages=USER, stream=True
    )
    plain = [chunk async for chunk in without_usage]

    record = (await sim.records(session))[0]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == record["tokens_produced"]
    assert last.usage.prompt_tokens == record["input_tokens"]
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert all(chunk.usage is None and chunk.choices for chunk in plain)


async def test_reasoning_arrives_as_reasoning_content(sim: Sim) -> None:
    session = new_session()
    client = sim.openai(session, **{"x-sim-ttft": "0.02"})
    stream = await client.chat.completions.create(
        model="slow-start", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    reasoning: list[str] = []
    text: list[str] = []
    usage = None
    async for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            extra = choice.delta.model_extra or {}
            if extra.get("reasoning_content"):
                assert not text, "reasoning comes before the answer"
                reasoning.append(extra["reasoning_content"])
            if choice.delta.content:
                text.append(choice.delta.content)

    record = await sim.only_record(session)
    assert "".join(reasoning) == record["reasoning"]
    assert "".join(text) == record["text"]
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == len(reasoning) == 100


async def test_max_tokens_ends_with_length(sim: Sim) -> None:
    session = new_session()
    client = sim.openai(session)
    stream = await client.chat.completions.create(
        model="support", messages=USER, stream=True, max_completion_tokens=7
    )
    chunks = [chunk async for chunk in stream]

    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert len(pieces) == 7
    assert chunks[-1].choices[0].finish_reason == "length"
    record = await sim.only_record(session)
    assert record["finish_reason"] == "length"
    assert record["tokens_produced"] == 7


async def test_final_completion_helper_refuses_a_length_finish(sim: Sim) -> None:
    # SDK behaviour worth knowing: get_final_completion() raises on finish_reason "length".
    client = sim.openai(new_session())
    with pytest.raises(openai.LengthFinishReasonError):
        async with client.chat.completions.stream(
            model="support", messages=USER, max_tokens=5
        ) as stream:
            await stream.get_final_completion()


async def test_non_streaming_answer(sim: Sim) -> None:
    session = new_session()
    client = sim.openai(session)
    completion = await client.chat.completions.create(model="tools", messages=USER, tools=TOOLS)

    record = await sim.only_record(session)
    message = completion.choices[0].message
    assert completion.object == "chat.completion"
    assert message.content == record["text"]
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.type == "function"
    assert json.loads(call.function.arguments) == LOOKUP_ORDER_ARGS
    assert completion.usage is not None
    assert completion.usage.completion_tokens == record["tokens_produced"]
    assert record["stream"] is False
