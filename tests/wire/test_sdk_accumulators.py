"""The official SDKs' stream accumulators accept what the encoders write.

The SDKs get the encoder's bytes as a ``text/event-stream`` response from an in-process
transport (``httpx2.MockTransport``: these SDK versions are built on httpx2), a test-only
stand-in for the network; everything after the bytes is the SDK's own code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from sluice.events import (
    Error,
    Event,
    Finish,
    ReasoningDelta,
    Signature,
    Start,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallStart,
    Usage,
)
from sluice.wire.anthropic_messages import MessagesStreamAdapter, MessagesStreamEncoder
from sluice.wire.gemini import GeminiStreamEncoder
from sluice.wire.openai_chat import ChatStreamEncoder
from sluice.wire.openai_responses import ResponsesStreamEncoder
from sluice.wire.sequencer import ToolCallSequencer
from tests.wire.order_checks import check_messages_order
from tests.wire.wire_replay import HANDMADE, replay, transcript

Encoder = ChatStreamEncoder | MessagesStreamEncoder | ResponsesStreamEncoder | GeminiStreamEncoder

MESSAGES: Any = [{"role": "user", "content": "Weather in Paris, and the time?"}]


def turn(finish: str = "tool_calls") -> list[Event]:
    return [
        Start("upstream-id", "upstream-model"),
        ReasoningDelta("Weather first, ", 0),
        ReasoningDelta("then the time.", 0),
        TextDelta("Let me ", 1),
        TextDelta("check.", 1),
        ToolCallStart(4, "call_weather", "get_weather"),
        ToolCallDelta(4, '{"city": '),
        ToolCallDelta(4, '"Paris"}'),
        ToolCallDone(4, "call_weather", "get_weather", '{"city": "Paris"}', {"city": "Paris"}),
        ToolCallStart(7, "call_time", "get_time"),
        ToolCallDone(7, "call_time", "get_time", "", {}),
        Usage(
            input_tokens=30, output_tokens=12, cache_read_tokens=8, reasoning_tokens=5, final=True
        ),
        Finish(finish, "raw"),
    ]


def body(encoder: Encoder, events: list[Event]) -> bytes:
    return b"".join(encoder.encode(e) for e in events) + encoder.close()


@asynccontextmanager
async def serving(payload: bytes) -> AsyncIterator[httpx2.AsyncClient]:
    """An HTTP client whose every request is answered with ``payload`` as an SSE body."""

    def respond(request: httpx2.Request) -> httpx2.Response:
        headers = {"content-type": "text/event-stream"}
        return httpx2.Response(200, headers=headers, content=payload)

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(respond)) as http:
        yield http


def openai_client(http: httpx2.AsyncClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="sk-test", base_url="http://sluice.test/v1", http_client=http, max_retries=0
    )


def anthropic_client(http: httpx2.AsyncClient) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key="sk-test", base_url="http://sluice.test", http_client=http, max_retries=0
    )


# -- Chat Completions ----------------------------------------------------------------------


async def test_openai_chat_stream_accumulates_text_and_tool_calls() -> None:
    encoder = ChatStreamEncoder("chatcmpl-sluice", "gpt-x", 1700000000, include_usage=True)
    async with serving(body(encoder, turn())) as http:
        client = openai_client(http)
        async with client.chat.completions.stream(
            model="gpt-x", messages=MESSAGES, stream_options={"include_usage": True}
        ) as stream:
            completion = await stream.get_final_completion()
    [choice] = completion.choices
    assert completion.id == "chatcmpl-sluice"
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_weather", "get_weather", '{"city": "Paris"}'),
        ("call_time", "get_time", "{}"),
    ]
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (30, 12)


async def test_openai_chat_stream_raises_the_error_frame() -> None:
    encoder = ChatStreamEncoder("chatcmpl-sluice", "gpt-x", 0, include_usage=False)
    events: list[Event] = [Start("x", "m"), TextDelta("par"), Error("overloaded", "Overloaded")]
    async with serving(body(encoder, events)) as http:
        client = openai_client(http)
        with pytest.raises(openai.APIError, match="Overloaded"):
            async with client.chat.completions.stream(model="gpt-x", messages=MESSAGES) as stream:
                await stream.get_final_completion()


# -- Anthropic Messages --------------------------------------------------------------------


async def test_anthropic_messages_stream_accumulates_thinking_text_and_tool_use() -> None:
    encoder = MessagesStreamEncoder("msg_sluice", "claude-x")
    async with serving(body(encoder, turn())) as http:
        client = anthropic_client(http)
        async with client.messages.stream(
            model="claude-x", max_tokens=256, messages=MESSAGES
        ) as stream:
            message = await stream.get_final_message()
    assert message.id == "msg_sluice"
    assert message.stop_reason == "tool_use"
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    thinking, text, weather, clock = message.content
    assert thinking.thinking == "Weather first, then the time."  # type: ignore[union-attr]
    assert text.text == "Let me check."  # type: ignore[union-attr]
    assert (weather.id, weather.name, weather.input) == (  # type: ignore[union-attr]
        "call_weather",
        "get_weather",
        {"city": "Paris"},
    )
    assert (clock.name, clock.input) == ("get_time", {})  # type: ignore[union-attr]
    # 30 input tokens in all, 8 read from the cache: Anthropic reports 22 + 8
    assert (message.usage.input_tokens, message.usage.output_tokens) == (22, 12)


async def test_anthropic_messages_stream_keeps_the_signatures_for_the_next_turn() -> None:
    # An Anthropic stream with thinking and a tool call, translated (adapter, sequencer,
    # encoder): the SDK's message holds the thinking block with its signature, as the client
    # sends it back to continue the turn.
    upstream = transcript(HANDMADE / "anthropic-thinking-tools.sse")
    events = replay(MessagesStreamAdapter(), [upstream])
    redacted = Signature("EmwKAhgBEgy3va3pzix", 9, redacted=True)
    events.insert(next(i for i, e in enumerate(events) if isinstance(e, TextDelta)), redacted)
    sequencer = ToolCallSequencer(MessagesStreamEncoder("msg_sluice", "claude-x"))
    payload = b"".join(sequencer.encode(e) for e in events) + sequencer.close()
    check_messages_order(payload)
    async with serving(payload) as http:
        client = anthropic_client(http)
        async with client.messages.stream(
            model="claude-x", max_tokens=256, messages=MESSAGES
        ) as stream:
            message = await stream.get_final_message()
    assert [block.type for block in message.content] == [
        "thinking",
        "redacted_thinking",
        "text",
        "tool_use",
    ]
    thinking, hidden, _, call = message.content
    signature = "ErUBCkYIBRgCIkDcFakeSignatureForTestsOnlyQm9ndXNTaWduYXR1cmU="
    assert thinking.signature == signature  # type: ignore[union-attr]
    assert thinking.thinking.endswith("I should call get_weather.")  # type: ignore[union-attr]
    assert hidden.data == "EmwKAhgBEgy3va3pzix"  # type: ignore[union-attr]
    assert call.input == {"city": "Paris"}  # type: ignore[union-attr]


async def test_anthropic_messages_stream_raises_the_error_frame() -> None:
    encoder = MessagesStreamEncoder("msg_sluice", "claude-x")
    events: list[Event] = [Start("x", "m"), TextDelta("par"), Error("overloaded", "Overloaded")]
    async with serving(body(encoder, events)) as http:
        client = anthropic_client(http)
        with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
            async with client.messages.stream(
                model="claude-x", max_tokens=256, messages=MESSAGES
            ) as stream:
                await stream.get_final_message()


# -- Responses -----------------------------------------------------------------------------


async def test_openai_responses_stream_accumulates_text_reasoning_and_function_calls() -> None:
    encoder = ResponsesStreamEncoder("resp_sluice", "gpt-x")
    async with serving(body(encoder, turn())) as http:
        client = openai_client(http)
        async with client.responses.stream(model="gpt-x", input="Weather?") as stream:
            response = await stream.get_final_response()
    assert response.id == "resp_sluice"
    assert response.status == "completed"
    assert response.output_text == "Let me check."
    reasoning = [item for item in response.output if item.type == "reasoning"]
    assert [s.text for s in reasoning[0].summary] == ["Weather first, then the time."]
    calls = [item for item in response.output if item.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [
        ("call_weather", "get_weather", '{"city": "Paris"}'),
        ("call_time", "get_time", "{}"),
    ]
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (30, 12)


async def test_openai_responses_stream_reports_the_text_deltas_in_order() -> None:
    encoder = ResponsesStreamEncoder("resp_sluice", "gpt-x")
    async with serving(body(encoder, turn(finish="stop"))) as http:
        client = openai_client(http)
        async with client.responses.stream(model="gpt-x", input="Weather?") as stream:
            deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
    assert deltas == ["Let me ", "check."]


async def test_openai_responses_stream_sees_the_error_and_the_failed_response() -> None:
    encoder = ResponsesStreamEncoder("resp_sluice", "gpt-x")
    events: list[Event] = [Start("x", "m"), TextDelta("par"), Error("overloaded", "Overloaded")]
    async with serving(body(encoder, events)) as http:
        client = openai_client(http)
        async with client.responses.stream(model="gpt-x", input="Weather?") as stream:
            kinds = [e.type async for e in stream]
    assert kinds[-2:] == ["error", "response.failed"]


async def test_openai_responses_create_stream_yields_each_frame_with_its_number() -> None:
    encoder = ResponsesStreamEncoder("resp_sluice", "gpt-x")
    payload = body(encoder, turn())
    async with serving(payload) as http:
        client = openai_client(http)
        stream = await client.responses.create(model="gpt-x", input="Weather?", stream=True)
        received = [event async for event in stream]
    assert [e.sequence_number for e in received] == list(range(len(received)))
    assert received[0].type == "response.created"
    assert received[-1].type == "response.completed"
    arguments = [e.delta for e in received if e.type == "response.function_call_arguments.delta"]
    assert "".join(arguments) == '{"city": "Paris"}{}'


async def test_openai_responses_resumed_with_starting_after_gets_only_the_later_frames() -> None:
    whole = body(ResponsesStreamEncoder("resp_sluice", "gpt-x", starting_after=-1), turn())
    frames = whole.count(b"\n\n")
    after = frames // 2
    tail = body(ResponsesStreamEncoder("resp_sluice", "gpt-x", starting_after=after), turn())
    async with serving(tail) as http:
        client = openai_client(http)
        stream = await client.responses.retrieve("resp_sluice", stream=True, starting_after=after)
        numbers = [event.sequence_number async for event in stream]
    assert numbers == list(range(after + 1, frames))
    async with serving(whole) as http:  # the SDK's own resume reads the stream from its start
        client = openai_client(http)
        async with client.responses.stream(
            response_id="resp_sluice", starting_after=after
        ) as resumed:
            numbers = [event.sequence_number async for event in resumed]
            response = await resumed.get_final_response()
    assert numbers == list(range(after + 1, frames))
    assert response.output_text == "Let me check."


async def test_openai_responses_stream_of_a_stopped_response_ends_cancelled() -> None:
    encoder = ResponsesStreamEncoder("resp_sluice", "gpt-x")
    events: list[Event] = [Start("x", "m"), TextDelta("par"), Error("cancelled", "stopped")]
    async with serving(body(encoder, events)) as http:
        client = openai_client(http)
        async with client.responses.stream(model="gpt-x", input="Weather?") as stream:
            last = [e async for e in stream][-1]
            with pytest.raises(RuntimeError, match=r"response\.completed"):
                await stream.get_final_response()
    assert last.type == "response.failed"
    assert last.response.status == "cancelled"
    [message] = last.response.output
    assert message.type == "message" and message.content[0].text == "par"  # type: ignore[union-attr]


# -- Gemini --------------------------------------------------------------------------------


def gemini_client(http: httpx2.AsyncClient) -> Any:
    options = genai_types.HttpOptions(
        base_url="http://sluice.test",
        api_version="v1beta",
        httpx_async_client=http,
        retry_options=genai_types.HttpRetryOptions(attempts=1),
    )
    return genai.Client(api_key="fake-gemini-key", http_options=options).aio


async def test_gemini_stream_gives_the_sdk_thoughts_text_whole_calls_and_usage() -> None:
    events = turn()
    events.insert(3, Signature("c2lnLTE="))
    encoder = GeminiStreamEncoder("gemini-sluice", "gemini-x")
    async with serving(body(encoder, events)) as http:
        stream = await gemini_client(http).models.generate_content_stream(
            model="gemini-x", contents="Weather in Paris, and the time?"
        )
        chunks = [chunk async for chunk in stream]
    parts = [part for chunk in chunks for part in chunk.candidates[0].content.parts]
    thoughts = "".join(p.text for p in parts if p.thought)
    answer = [p for p in parts if not p.thought and p.text]
    calls = [p.function_call for p in parts if p.function_call is not None]
    assert thoughts == "Weather first, then the time."
    assert "".join(p.text for p in answer) == "Let me check."
    assert answer[0].thought_signature == b"sig-1"
    assert [(c.id, c.name, c.args) for c in calls] == [
        ("call_weather", "get_weather", {"city": "Paris"}),
        ("call_time", "get_time", {}),
    ]
    last = chunks[-1]
    assert last.candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert last.response_id == "gemini-sluice" and last.model_version == "gemini-x"
    usage = last.usage_metadata
    assert (usage.prompt_token_count, usage.candidates_token_count) == (30, 7)
    assert (usage.thoughts_token_count, usage.cached_content_token_count) == (5, 8)
    assert usage.total_token_count == 42


async def test_gemini_stream_raises_the_error_frame() -> None:
    encoder = GeminiStreamEncoder("gemini-sluice", "gemini-x")
    events: list[Event] = [Start("x", "m"), TextDelta("par"), Error("overloaded", "Overloaded")]
    async with serving(body(encoder, events)) as http:
        stream = await gemini_client(http).models.generate_content_stream(
            model="gemini-x", contents="hi"
        )
        seen: list[str] = []
        with pytest.raises(genai_errors.ServerError, match="Overloaded") as raised:
            async for chunk in stream:
                seen.append(chunk.text or "")
    assert seen == ["par"] and raised.value.code == 503
