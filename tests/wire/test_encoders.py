"""The stream encoders: their frames, and round trips through the matching adapter."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from sluice.sse import SSEDecoder, encode_event
from sluice.wire.anthropic_messages import MessagesStreamAdapter, MessagesStreamEncoder
from sluice.wire.gemini import GeminiStreamAdapter, GeminiStreamEncoder
from sluice.wire.openai_chat import ChatStreamAdapter, ChatStreamEncoder
from sluice.wire.openai_responses import ResponsesStreamAdapter, ResponsesStreamEncoder
from tests.wire.wire_replay import dones, reasoning_of, replay, terminal, text_of, usages

Encoder = ChatStreamEncoder | MessagesStreamEncoder | ResponsesStreamEncoder | GeminiStreamEncoder
Adapter = ChatStreamAdapter | MessagesStreamAdapter | ResponsesStreamAdapter | GeminiStreamAdapter


def conversation(finish: str = "tool_calls", usage: Usage | None = None) -> list[Event]:
    """Text, reasoning, two tool calls (one without arguments), usage and a finish."""
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
        usage or Usage(input_tokens=30, output_tokens=12, cache_read_tokens=8, final=True),
        Finish(finish, "raw"),
    ]


def encode(encoder: Encoder, events: list[Event]) -> bytes:
    return b"".join(encoder.encode(e) for e in events) + encoder.close()


def summary(events: list[Event]) -> dict[str, Any]:
    """What a round trip must keep: the content, not the format's indexes or ids."""
    last = usages(events)[-1] if usages(events) else None
    end = terminal(events)
    return {
        "text": text_of(events),
        "reasoning": reasoning_of(events),
        "calls": [(d.call_id, d.name, d.arguments, d.status) for d in dones(events)],
        "usage": None
        if last is None
        else (last.input_tokens, last.output_tokens, last.cache_read_tokens, last.final),
        "end": end.reason if isinstance(end, Finish) else end.type,
    }


def sse_payloads(body: bytes) -> list[tuple[str, Any]]:
    decoder = SSEDecoder()
    return [
        (e.event, e.data if e.data == "[DONE]" else orjson.loads(e.data))
        for e in decoder.decode(body) + decoder.flush()
    ]


ENCODERS: list[tuple[str, Any, Any]] = [
    ("chat", lambda: ChatStreamEncoder("chatcmpl-1", "gpt-x", 1700000000, True), ChatStreamAdapter),
    ("messages", lambda: MessagesStreamEncoder("msg_1", "claude-x"), MessagesStreamAdapter),
    ("responses", lambda: ResponsesStreamEncoder("resp_1", "gpt-x"), ResponsesStreamAdapter),
    ("gemini", lambda: GeminiStreamEncoder("resp-1", "gemini-x"), GeminiStreamAdapter),
]


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "make", "adapter"), ENCODERS, ids=[e[0] for e in ENCODERS])
def test_round_trip_keeps_the_normalised_content(name: str, make: Any, adapter: Any) -> None:
    source = conversation()
    decoded = replay(adapter(), [encode(make(), source)])
    assert summary(decoded) == summary(source)


@pytest.mark.parametrize(("name", "make", "adapter"), ENCODERS, ids=[e[0] for e in ENCODERS])
@pytest.mark.parametrize("reason", ["stop", "length"])
def test_round_trip_keeps_the_finish_reason(
    name: str, make: Any, adapter: Any, reason: str
) -> None:
    source: list[Event] = [Start("x", "m"), TextDelta("hi"), Finish(reason)]
    decoded = replay(adapter(), [encode(make(), source)])
    assert terminal(decoded) == Finish(reason, terminal(decoded).raw)  # type: ignore[union-attr]


@pytest.mark.parametrize(("name", "make", "adapter"), ENCODERS, ids=[e[0] for e in ENCODERS])
def test_round_trip_of_an_error_is_a_terminal_error(name: str, make: Any, adapter: Any) -> None:
    source: list[Event] = [Start("x", "m"), TextDelta("par"), Error("overloaded", "busy", True)]
    decoded = replay(adapter(), [encode(make(), source)])
    error = terminal(decoded)
    assert isinstance(error, Error)
    assert error.retryable
    assert text_of(decoded) == "par"


@pytest.mark.parametrize(("name", "make", "adapter"), ENCODERS, ids=[e[0] for e in ENCODERS])
def test_nothing_is_written_after_an_error(name: str, make: Any, adapter: Any) -> None:
    encoder = make()
    encoder.encode(Error("upstream_error", "x"))
    assert encoder.encode(TextDelta("late")) == b""
    assert encoder.close() == b""


@pytest.mark.parametrize(("name", "make", "adapter"), ENCODERS, ids=[e[0] for e in ENCODERS])
def test_frames_are_exactly_what_the_sse_encoder_writes(name: str, make: Any, adapter: Any) -> None:
    body = encode(make(), conversation())
    decoder = SSEDecoder()
    events = decoder.decode(body) + decoder.flush()
    again = b"".join(
        encode_event(e.data, event=None if e.event == "message" else e.event) for e in events
    )
    assert again == body


@pytest.mark.parametrize(("name", "make", "adapter"), ENCODERS, ids=[e[0] for e in ENCODERS])
def test_closing_twice_is_harmless(name: str, make: Any, adapter: Any) -> None:
    encoder = make()
    encode(encoder, conversation())
    assert encoder.close() == b""


# -- Chat ----------------------------------------------------------------------------------


def test_chat_chunks_carry_id_object_created_model_and_one_choice() -> None:
    body = encode(ChatStreamEncoder("chatcmpl-1", "gpt-x", 1700000000, False), conversation())
    chunks = [data for _, data in sse_payloads(body) if data != "[DONE]"]
    for chunk in chunks:
        assert chunk["id"] == "chatcmpl-1"
        assert chunk["object"] == "chat.completion.chunk"
        assert (chunk["created"], chunk["model"]) == (1700000000, "gpt-x")
        [choice] = chunk["choices"]
        assert choice["index"] == 0
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }


def test_chat_renumbers_tool_calls_in_order_of_appearance() -> None:
    body = encode(ChatStreamEncoder("c", "m", 0, False), conversation())
    indexes = [
        (call["index"], call.get("id"))
        for _, data in sse_payloads(body)
        if data != "[DONE]"
        for call in data["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert indexes == [(0, "call_weather"), (0, None), (0, None), (1, "call_time"), (1, None)]


def test_chat_tool_without_fragments_gets_empty_object_text() -> None:
    body = encode(ChatStreamEncoder("c", "m", 0, False), conversation())
    fragments = [
        call["function"]["arguments"]
        for _, data in sse_payloads(body)
        if data != "[DONE]"
        for call in data["choices"][0]["delta"].get("tool_calls", [])
        if call["index"] == 1
    ]
    assert fragments == ["", "{}"]


def test_chat_usage_chunk_comes_before_done_when_asked_for() -> None:
    usage = Usage(input_tokens=30, output_tokens=12, cache_read_tokens=8, reasoning_tokens=5)
    body = encode(ChatStreamEncoder("c", "m", 0, True), conversation(usage=usage))
    *_, (_, usage_chunk), (_, done) = sse_payloads(body)
    assert done == "[DONE]"
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {
        "prompt_tokens": 30,
        "completion_tokens": 12,
        "total_tokens": 42,
        "prompt_tokens_details": {"cached_tokens": 8},
        "completion_tokens_details": {"reasoning_tokens": 5},
    }


def test_chat_usage_chunk_is_left_out_when_not_asked_for() -> None:
    body = encode(ChatStreamEncoder("c", "m", 0, False), conversation())
    assert b'"usage"' not in body
    assert body.endswith(b'"finish_reason":"tool_calls"}]}\n\ndata: [DONE]\n\n')


@pytest.mark.parametrize(
    ("reason", "word"),
    [("stop", "stop"), ("length", "length"), ("pause", "stop"), ("refusal", "content_filter")],
)
def test_chat_finish_reasons(reason: str, word: str) -> None:
    body = ChatStreamEncoder("c", "m", 0, False).encode(Finish(reason))
    assert body.endswith(b'"finish_reason":"' + word.encode() + b'"}]}\n\n')


def test_chat_error_frame_has_message_type_and_code() -> None:
    encoder = ChatStreamEncoder("c", "m", 0, True)
    body = encoder.encode(Error("rate_limited", "slow down", retryable=True))
    assert body == (
        b'data: {"error":{"message":"slow down","type":"rate_limited","param":null,'
        b'"code":"rate_limit_exceeded"}}\n\n'
    )


# -- Messages ------------------------------------------------------------------------------


def test_messages_start_takes_input_tokens_from_usage_seen_before_content() -> None:
    encoder = MessagesStreamEncoder("msg_1", "claude-x")
    assert encoder.encode(Start("x", "m")) == b""
    body = encoder.encode(Usage(input_tokens=42, cache_read_tokens=7))
    [(name, start)] = sse_payloads(body)
    assert name == "message_start"
    assert start["message"]["id"] == "msg_1"
    # Anthropic counts input without the cached part: 42 in all, 7 of them cached
    assert start["message"]["usage"]["input_tokens"] == 35
    assert start["message"]["usage"]["output_tokens"] == 1


def test_messages_blocks_are_numbered_and_opened_one_at_a_time() -> None:
    body = encode(MessagesStreamEncoder("msg_1", "claude-x"), conversation())
    opened: list[int] = []
    open_now: set[int] = set()
    for name, data in sse_payloads(body):
        if name == "content_block_start":
            assert not open_now
            opened.append(data["index"])
            open_now.add(data["index"])
        elif name == "content_block_stop":
            open_now.remove(data["index"])
    assert opened == [0, 1, 2, 3]
    assert not open_now


def test_messages_ends_with_message_delta_and_message_stop() -> None:
    body = encode(MessagesStreamEncoder("msg_1", "claude-x"), conversation())
    *_, (delta_name, delta), (stop_name, _) = sse_payloads(body)
    assert (delta_name, stop_name) == ("message_delta", "message_stop")
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["output_tokens"] == 12
    assert delta["usage"]["input_tokens"] == 30 - 8  # cached tokens are counted apart


@pytest.mark.parametrize(
    ("reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        ("pause", "pause_turn"),
        ("refusal", "refusal"),
    ],
)
def test_messages_stop_reasons(reason: str, stop_reason: str) -> None:
    body = MessagesStreamEncoder("m", "c").encode(Finish(reason))
    [_, (_, delta), _] = sse_payloads(body)
    assert delta["delta"]["stop_reason"] == stop_reason


@pytest.mark.parametrize(
    ("kind", "anthropic_type"),
    [
        ("overloaded", "overloaded_error"),
        ("rate_limited", "rate_limit_error"),
        ("upstream_error", "api_error"),
        ("upstream_truncated", "api_error"),
    ],
)
def test_messages_error_frames(kind: str, anthropic_type: str) -> None:
    body = MessagesStreamEncoder("m", "c").encode(Error(kind, "oops"))
    assert sse_payloads(body) == [
        ("error", {"type": "error", "error": {"type": anthropic_type, "message": "oops"}})
    ]


def test_messages_tool_arguments_given_whole_are_sent_as_one_fragment() -> None:
    encoder = MessagesStreamEncoder("m", "c")
    encoder.encode(ToolCallStart(0, "toolu_1", "f"))
    body = encoder.encode(ToolCallDone(0, "toolu_1", "f", '{"x":1}', {"x": 1}))
    assert [name for name, _ in sse_payloads(body)] == ["content_block_delta", "content_block_stop"]
    assert sse_payloads(body)[0][1]["delta"] == {
        "type": "input_json_delta",
        "partial_json": '{"x":1}',
    }


# -- Responses -----------------------------------------------------------------------------


def test_responses_sequence_numbers_rise_from_zero_and_match_the_event_names() -> None:
    body = encode(ResponsesStreamEncoder("resp_1", "gpt-x"), conversation())
    payloads = sse_payloads(body)
    assert [data["sequence_number"] for _, data in payloads] == list(range(len(payloads)))
    assert all(name == data["type"] for name, data in payloads)
    assert [name for name, _ in payloads[:2]] == ["response.created", "response.in_progress"]


def test_responses_completed_carries_every_output_item_and_the_usage() -> None:
    body = encode(ResponsesStreamEncoder("resp_1", "gpt-x"), conversation())
    name, completed = sse_payloads(body)[-1]
    assert name == "response.completed"
    response = completed["response"]
    assert (response["id"], response["status"], response["model"]) == (
        "resp_1",
        "completed",
        "gpt-x",
    )
    assert [item["type"] for item in response["output"]] == [
        "reasoning",
        "message",
        "function_call",
        "function_call",
    ]
    assert response["output"][1]["content"][0]["text"] == "Let me check."
    assert [i.get("arguments") for i in response["output"][2:]] == ['{"city": "Paris"}', "{}"]
    assert response["usage"] == {
        "input_tokens": 30,
        "input_tokens_details": {"cached_tokens": 8},
        "output_tokens": 12,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 42,
    }


def test_responses_length_finish_is_an_incomplete_response() -> None:
    body = encode(ResponsesStreamEncoder("resp_1", "m"), [Start("x", "m"), Finish("length")])
    name, data = sse_payloads(body)[-1]
    assert name == "response.incomplete"
    assert data["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_responses_error_writes_an_error_frame_and_a_failed_response() -> None:
    encoder = ResponsesStreamEncoder("resp_1", "m")
    encoder.encode(Start("x", "m"))
    body = encoder.encode(Error("rate_limited", "slow down", retryable=True))
    [(error_name, error), (failed_name, failed)] = sse_payloads(body)
    assert (error_name, error["code"], error["message"]) == (
        "error",
        "rate_limit_exceeded",
        "slow down",
    )
    assert failed_name == "response.failed"
    assert failed["response"]["error"] == {"code": "rate_limit_exceeded", "message": "slow down"}


def test_chat_role_chunk_comes_first_even_without_start() -> None:
    body = ChatStreamEncoder("c", "m", 0, False).encode(TextDelta("hi"))
    deltas = [data["choices"][0]["delta"] for _, data in sse_payloads(body)]
    assert deltas == [{"role": "assistant", "content": ""}, {"content": "hi"}]


def test_messages_never_writes_into_a_tool_block_after_its_stop() -> None:
    # Unsequenced input (the ToolCallSequencer in front of it never gives this): a late
    # fragment, or a late end with whole arguments, for a block already closed is dropped.
    encoder = MessagesStreamEncoder("m", "c")
    encoder.encode(ToolCallStart(0, "call_a", "a"))
    encoder.encode(ToolCallStart(1, "call_b", "b"))  # closes block 0
    assert encoder.encode(ToolCallDelta(0, '{"late": true}')) == b""
    assert encoder.encode(ToolCallDone(0, "call_a", "a", '{"x": 1}', {"x": 1})) == b""


def test_responses_never_writes_into_a_call_item_after_it_ended() -> None:
    encoder = ResponsesStreamEncoder("resp_1", "m")
    encoder.encode(ToolCallStart(0, "call_a", "a"))
    encoder.encode(ToolCallStart(1, "call_b", "b"))  # ends item 0
    assert encoder.encode(ToolCallDelta(0, '{"late": true}')) == b""


def test_messages_text_after_a_tool_call_opens_a_new_text_block() -> None:
    events: list[Event] = [
        TextDelta("a", 0),
        ToolCallStart(1, "toolu_1", "f"),
        ToolCallDone(1, "toolu_1", "f", "", {}),
        TextDelta("b", 2),
    ]
    body = encode(MessagesStreamEncoder("m", "c"), events)
    starts = [
        d["content_block"]["type"] for n, d in sse_payloads(body) if n == "content_block_start"
    ]
    assert starts == ["text", "tool_use", "text"]


def test_responses_call_ended_by_the_next_item_without_fragments_gets_empty_object() -> None:
    events: list[Event] = [
        ToolCallStart(0, "call_a", "a"),
        ToolCallStart(1, "call_b", "b"),
        ToolCallDelta(1, '{"x": 1}'),
        Finish("tool_calls"),
    ]
    body = encode(ResponsesStreamEncoder("resp_1", "m"), events)
    _, completed = sse_payloads(body)[-1]
    assert [i["arguments"] for i in completed["response"]["output"]] == ["{}", '{"x": 1}']


def test_responses_message_cut_by_length_is_an_incomplete_item() -> None:
    body = encode(ResponsesStreamEncoder("resp_1", "m"), [TextDelta("cut"), Finish("length")])
    _, incomplete = sse_payloads(body)[-1]
    [message] = incomplete["response"]["output"]
    assert (message["status"], message["content"][0]["text"]) == ("incomplete", "cut")


def test_responses_failed_response_lists_only_finished_items() -> None:
    events: list[Event] = [
        ReasoningDelta("think"),
        TextDelta("par", 1),
        Error("upstream_error", "boom"),
    ]
    body = encode(ResponsesStreamEncoder("resp_1", "m"), events)
    _, failed = sse_payloads(body)[-1]
    assert [item["type"] for item in failed["response"]["output"]] == ["reasoning"]


# -- round trips of arbitrary turns --------------------------------------------------------

words = st.text(min_size=1, max_size=12)
arguments = st.dictionaries(
    st.text(max_size=6),
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # orjson's range
    | st.text(max_size=8),
    max_size=3,
)
segments = st.lists(
    st.one_of(
        st.tuples(st.just("text"), st.lists(words, min_size=1, max_size=3)),
        st.tuples(st.just("reasoning"), st.lists(words, min_size=1, max_size=3)),
        st.tuples(st.just("tool"), st.tuples(arguments, st.integers(min_value=0, max_value=4))),
    ),
    max_size=6,
)


def turn_of(parts: list[tuple[str, Any]]) -> list[Event]:
    """A well-formed normalised turn: Start, the segments in order, Usage, Finish."""
    events: list[Event] = [Start("upstream", "model")]
    calls = 0
    for position, (kind, body) in enumerate(parts):
        if kind == "text":
            events += [TextDelta(w, position) for w in body]
        elif kind == "reasoning":
            events += [ReasoningDelta(w, position) for w in body]
        else:
            given, pieces = body
            text = orjson.dumps(given).decode() if pieces else ""
            size = -(-len(text) // pieces) if pieces else 1
            cuts = [text[i : i + size] for i in range(0, len(text), size)]
            call_id, name = f"call_{position}", f"tool_{position}"
            events.append(ToolCallStart(position, call_id, name))
            events += [ToolCallDelta(position, cut) for cut in cuts]
            events.append(ToolCallDone(position, call_id, name, text, given))
            calls += 1
    events.append(Usage(input_tokens=5, output_tokens=7, cache_read_tokens=2, final=True))
    events.append(Finish("tool_calls" if calls else "stop"))
    return events


@pytest.mark.parametrize(("name", "make", "adapter"), ENCODERS, ids=[e[0] for e in ENCODERS])
@settings(max_examples=150, deadline=None)
@given(parts=segments)
def test_any_turn_survives_a_round_trip(
    name: str, make: Any, adapter: Any, parts: list[tuple[str, Any]]
) -> None:
    source = turn_of(parts)
    decoded = replay(adapter(), [encode(make(), source)])
    assert summary(decoded) == summary(source)


# -- signatures ----------------------------------------------------------------------------


def test_messages_signature_goes_into_its_thinking_block_before_the_stop() -> None:
    events: list[Event] = [
        Start("x", "m"),
        ReasoningDelta("hm", 0),
        Signature("EqQBCgIYAh", 0),
        TextDelta("Hi", 1),
        Finish("stop"),
    ]
    frames = sse_payloads(encode(MessagesStreamEncoder("msg_1", "c"), events))
    names = [(name, data.get("index"), data.get("delta", {}).get("type")) for name, data in frames]
    assert names[1:6] == [
        ("content_block_start", 0, None),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "signature_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, None),
    ]
    assert frames[3][1]["delta"]["signature"] == "EqQBCgIYAh"


def test_messages_signature_of_a_block_that_is_not_open_thinking_is_dropped() -> None:
    encoder = MessagesStreamEncoder("msg_1", "c")
    encoder.encode(ReasoningDelta("hm", 0))
    assert encoder.encode(Signature("other-block", 3)) == b""
    encoder.encode(TextDelta("Hi", 1))  # the thinking block closes
    assert encoder.encode(Signature("late", 0)) == b""


def test_messages_redacted_reasoning_is_a_block_of_its_own() -> None:
    events: list[Event] = [Signature("EmwKAhgB", 0, redacted=True), TextDelta("Hi", 1)]
    frames = sse_payloads(encode(MessagesStreamEncoder("msg_1", "c"), events))
    blocks = [d["content_block"] for n, d in frames if n == "content_block_start"]
    assert blocks[0] == {"type": "redacted_thinking", "data": "EmwKAhgB"}
    assert [n for n, _ in frames][1:4] == [
        "content_block_start",
        "content_block_stop",
        "content_block_start",
    ]


@pytest.mark.parametrize(("name", "make", "adapter"), ENCODERS[::2], ids=["chat", "responses"])
def test_formats_without_a_place_for_a_signature_leave_it_out(
    name: str, make: Any, adapter: Any
) -> None:
    plain: list[Event] = [Start("x", "m"), ReasoningDelta("hm"), TextDelta("Hi"), Finish("stop")]
    signed = [*plain[:2], Signature("EqQBCgIYAh"), Signature("EmwK", 1, True), *plain[2:]]
    assert encode(make(), signed) == encode(make(), plain)


# -- ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "prefix"),
    [
        (lambda i: ChatStreamEncoder(i, "m", 0, False), "chatcmpl-"),
        (lambda i: MessagesStreamEncoder(i, "m"), "msg_"),
        (lambda i: ResponsesStreamEncoder(i, "m"), "resp_"),
    ],
    ids=["chat", "messages", "responses"],
)
def test_every_encoder_writes_ids_of_its_own_format(make: Any, prefix: str) -> None:
    turn: list[Event] = [Start("x", "m"), TextDelta("a"), Finish("stop")]
    for named in ("op-123", f"{prefix}op-123"):
        frames = sse_payloads(encode(make(named), turn))
        ids = {
            (data.get("message") or data.get("response") or data).get("id")
            for _, data in frames
            if isinstance(data, dict)
        } - {None}
        assert ids == {f"{prefix}op-123"}, named


def test_tool_call_ids_pass_unchanged_and_are_made_up_only_when_missing() -> None:
    events: list[Event] = [
        ToolCallStart(0, "call_upstream", "f"),
        ToolCallDone(0, "call_upstream", "f", "{}", {}),
        ToolCallStart(1, "", "g"),
        ToolCallDone(1, "", "g", "{}", {}),
        Finish("tool_calls"),
    ]
    chat = sse_payloads(encode(ChatStreamEncoder("chatcmpl-op-1", "m", 0, False), events))
    chat_ids = [
        call["id"]
        for _, data in chat
        if isinstance(data, dict)
        for call in data["choices"][0]["delta"].get("tool_calls") or []
        if "id" in call
    ]
    assert chat_ids == ["call_upstream", "call_op-1_1"]
    messages = sse_payloads(encode(MessagesStreamEncoder("msg_op-1", "m"), events))
    blocks = [d["content_block"]["id"] for n, d in messages if n == "content_block_start"]
    assert blocks == ["call_upstream", "toolu_op-1_1"]
