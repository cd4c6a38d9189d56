"""Fuzzing the provider adapters with hostile streams, and everything downstream of them.

The streams are the recorded and hand-written transcripts (``tests/fixtures``) broken the way
a buggy provider or a bad proxy breaks them: frames dropped, repeated, moved, taken from
another stream or another format, cut short, renamed, and JSON values swapped for values of
any type (integers out to the 64-bit edges included). They go through the real SSE decoder in
arbitrary chunks, then the adapter, then what the gateway does with the events: the turn
accumulator, both client encoders, the native presenter and the non-streaming renderers.

Properties: no exception anywhere; every stream ends in exactly one ``Finish`` or typed
``Error`` (the grammar of ``tests/wire/test_adapter_properties.py``); the chunking changes
nothing; what the Chat encoder writes, read back by the Chat adapter, is the same answer.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice import events as ev
from sluice.gateway.presenters import NativePresenter
from sluice.sse import SSEDecoder, encode_event
from sluice.turn import TurnAccumulator
from sluice.wire.anthropic_messages import MessagesStreamAdapter, MessagesStreamEncoder
from sluice.wire.gemini import GeminiStreamAdapter
from sluice.wire.openai_chat import ChatStreamAdapter, ChatStreamEncoder
from sluice.wire.openai_responses import ResponsesStreamAdapter
from sluice.wire.requests import render_chat_response, render_messages_response
from tests.fuzz.budget import fuzz, tally
from tests.wire.test_adapter_properties import check_grammar
from tests.wire.wire_replay import Adapter, adapter_for, frames, transcript, transcripts

ADAPTERS: dict[str, type[Adapter]] = {
    "chat": ChatStreamAdapter,
    "messages": MessagesStreamAdapter,
    "responses": ResponsesStreamAdapter,
    "gemini": GeminiStreamAdapter,
}
Pair = tuple[str, str]  # one SSE event: (event name, data)

FILES = transcripts()
STREAMS: dict[str, list[list[Pair]]] = {name: [] for name in ADAPTERS}
for _path in FILES:
    _kind = {
        ChatStreamAdapter: "chat",
        MessagesStreamAdapter: "messages",
        GeminiStreamAdapter: "gemini",
    }.get(type(adapter_for(_path)), "responses")
    STREAMS[_kind].append(frames(transcript(_path)))
ALL_PAIRS = [pair for streams in STREAMS.values() for stream in streams for pair in stream]

#: integers at the edges of what JSON parsers and 64-bit counters hold
EDGE_INTS = [0, 1, -1, 2**31 - 1, 2**31, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)]
json_ints = st.sampled_from(EDGE_INTS) | st.integers(min_value=-(2**63), max_value=2**64 - 1)
json_scalars = (
    st.none()
    | st.booleans()
    | json_ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
    | st.sampled_from(["", "[DONE]", "stop", "tool_use", "text", "error", "function_call"])
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
event_names = st.sampled_from(
    ["message", "error", "ping", "", "message_stop", "response.completed"]
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


@st.composite
def retyped(draw: st.DrawFn, data: str) -> str:
    """``data`` (a JSON object) with one to three of its values swapped for any JSON value."""
    frame = copy.deepcopy(orjson.loads(data))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(frame) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = frame
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = draw(json_values)
    return orjson.dumps(frame).decode()


def _is_object(data: str) -> bool:
    try:
        return isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        return False


@st.composite
def hostile_streams(draw: st.DrawFn, kind: str) -> list[Pair]:
    """One recorded stream of ``kind``, broken frame by frame."""
    stream = list(draw(st.sampled_from(STREAMS[kind])))
    out: list[Pair] = []
    for name, data in stream:
        action = draw(
            st.sampled_from(
                ["keep"] * 6 + ["drop", "repeat", "foreign", "cut", "retype", "rename", "garbage"]
            )
        )
        match action:
            case "keep":
                out.append((name, data))
            case "drop":
                pass
            case "repeat":
                out += [(name, data)] * draw(st.integers(2, 3))
            case "foreign":  # a frame of any stream, of any format, before this one
                out += [draw(st.sampled_from(ALL_PAIRS)), (name, data)]
            case "cut":
                out.append((name, data[: draw(st.integers(0, max(0, len(data) - 1)))]))
            case "retype":
                out.append((name, draw(retyped(data)) if _is_object(data) else data))
            case "rename":
                out.append((draw(event_names), data))
            case "garbage":
                out.append((name, draw(st.text(max_size=20))))
    if out and draw(st.booleans()):
        # move one frame elsewhere: out-of-order events
        frame = out.pop(draw(st.integers(0, len(out) - 1)))
        out.insert(draw(st.integers(0, len(out))), frame)
    return out


def wire_bytes(pairs: list[Pair]) -> bytes:
    return b"".join(
        encode_event(data, event=name if name != "message" else None) for name, data in pairs
    )


def decode_into(adapter: Adapter, chunks: list[bytes]) -> list[ev.Event]:
    decoder = SSEDecoder(keep_raw=True)
    events: list[ev.Event] = []
    for chunk in chunks:
        for sse in decoder.decode(chunk):
            events += adapter.feed(sse.event, sse.data)
    decoder.flush()
    return events + adapter.close()


def downstream(events: list[ev.Event]) -> bytes:
    """What the gateway does with a session's events; returns the Chat client's bytes."""
    acc = TurnAccumulator()
    chat = ChatStreamEncoder("chatcmpl-fuzz", "sim/fuzz", 1, include_usage=True)
    messages = MessagesStreamEncoder("msg_fuzz", "sim/fuzz")
    native = NativePresenter()
    chat_out = bytearray()
    for seq, event in enumerate(events, start=1):
        acc.apply(event)
        chat_out += chat.encode(event)
        messages.encode(event)
        native.render(seq, event, b"")
        orjson.dumps(ev.payload(event)[1])
    chat_out += chat.close()
    messages.close()
    result = acc.result()
    orjson.dumps(render_chat_response(result, "sim/fuzz"))
    orjson.dumps(render_messages_response(result, "sim/fuzz"))
    return bytes(chat_out)


def assert_chat_reads_back_the_same_answer(events: list[ev.Event], chat_bytes: bytes) -> None:
    again = decode_into(ChatStreamAdapter(), [chat_bytes])
    check_grammar(again)
    text = "".join(e.text for e in events if isinstance(e, ev.TextDelta))
    assert "".join(e.text for e in again if isinstance(e, ev.TextDelta)) == text
    assert type(again[-1]) is type(events[-1])
    if isinstance(events[-1], ev.Error):
        assert isinstance(again[-1], ev.Error) and again[-1].message == events[-1].message


def cuts_of(data: st.DataObject, whole: bytes) -> list[bytes]:
    cuts = data.draw(
        st.lists(st.integers(min_value=0, max_value=len(whole)), max_size=24).map(sorted),
        label="cuts",
    )
    return [whole[a:b] for a, b in pairwise([0, *cuts, len(whole)])]


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
@fuzz(150)
@given(data=st.data())
def test_hostile_streams_end_in_one_typed_terminal_event_at_any_chunking(
    kind: str, data: st.DataObject
) -> None:
    tally(f"adapters: {kind} hostile streams")
    pairs = data.draw(hostile_streams(kind), label="frames")
    whole = wire_bytes(pairs)
    events = decode_into(ADAPTERS[kind](), [whole])
    check_grammar(events)
    for event in events:
        if isinstance(event, ev.Error):
            assert isinstance(event.type, str) and event.type
            assert isinstance(event.message, str) and event.message
    assert decode_into(ADAPTERS[kind](), cuts_of(data, whole)) == events
    assert_chat_reads_back_the_same_answer(events, downstream(events))


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
@fuzz(100)
@given(data=st.data())
def test_any_frames_of_any_format_fed_to_an_adapter_never_raise(
    kind: str, data: st.DataObject
) -> None:
    tally(f"adapters: {kind} foreign frames")
    pairs = data.draw(st.lists(st.sampled_from(ALL_PAIRS), max_size=40), label="frames")
    events = decode_into(ADAPTERS[kind](), [wire_bytes(pairs)])
    check_grammar(events)
    assert_chat_reads_back_the_same_answer(events, downstream(events))


# Usage in each format, with every count replaced: a provider (or a proxy) reporting absurd
# numbers must not break the encoders, the records or the cost.
USAGE_FRAMES: dict[str, tuple[list[Pair], list[tuple[str, ...]]]] = {
    "chat": (
        [
            ("message", '{"id":"c","choices":[{"index":0,"delta":{"content":"hi"}}]}'),
            ("message", '{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}'),
            (
                "message",
                '{"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,'
                '"total_tokens":2,"prompt_tokens_details":{"cached_tokens":0},'
                '"completion_tokens_details":{"reasoning_tokens":0}}}',
            ),
            ("message", "[DONE]"),
        ],
        [
            ("usage", "prompt_tokens"),
            ("usage", "completion_tokens"),
            ("usage", "total_tokens"),
            ("usage", "prompt_tokens_details", "cached_tokens"),
            ("usage", "completion_tokens_details", "reasoning_tokens"),
        ],
    ),
    "messages": (
        [
            (
                "message_start",
                '{"type":"message_start","message":{"id":"m","model":"x","usage":{'
                '"input_tokens":1,"output_tokens":1,"cache_read_input_tokens":0,'
                '"cache_creation_input_tokens":0}}}',
            ),
            (
                "content_block_start",
                '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
            ),
            (
                "content_block_delta",
                '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}',
            ),
            ("content_block_stop", '{"type":"content_block_stop","index":0}'),
            (
                "message_delta",
                '{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{'
                '"input_tokens":1,"output_tokens":1,"cache_read_input_tokens":0,'
                '"cache_creation_input_tokens":0}}',
            ),
            ("message_stop", '{"type":"message_stop"}'),
        ],
        [
            ("message", "usage", "input_tokens"),
            ("message", "usage", "output_tokens"),
            ("message", "usage", "cache_read_input_tokens"),
            ("message", "usage", "cache_creation_input_tokens"),
            ("usage", "input_tokens"),
            ("usage", "output_tokens"),
            ("usage", "cache_read_input_tokens"),
            ("usage", "cache_creation_input_tokens"),
        ],
    ),
    "responses": (
        [
            (
                "response.created",
                '{"type":"response.created","sequence_number":0,"response":{"id":"r","model":"x"}}',
            ),
            (
                "response.output_text.delta",
                '{"type":"response.output_text.delta","sequence_number":1,"item_id":"i",'
                '"output_index":0,"content_index":0,"delta":"hi"}',
            ),
            (
                "response.completed",
                '{"type":"response.completed","sequence_number":2,"response":{"id":"r",'
                '"model":"x","status":"completed","usage":{"input_tokens":1,'
                '"input_tokens_details":{"cached_tokens":0},"output_tokens":1,'
                '"output_tokens_details":{"reasoning_tokens":0},"total_tokens":2}}}',
            ),
        ],
        [
            ("response", "usage", "input_tokens"),
            ("response", "usage", "input_tokens_details", "cached_tokens"),
            ("response", "usage", "output_tokens"),
            ("response", "usage", "output_tokens_details", "reasoning_tokens"),
            ("response", "usage", "total_tokens"),
        ],
    ),
    "gemini": (
        [
            (
                "message",
                '{"candidates":[{"content":{"parts":[{"text":"hi"}],"role":"model"},'
                '"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":1,'
                '"candidatesTokenCount":1,"thoughtsTokenCount":0,"cachedContentTokenCount":0,'
                '"toolUsePromptTokenCount":0,"totalTokenCount":2},"modelVersion":"x",'
                '"responseId":"r"}',
            ),
        ],
        [
            ("usageMetadata", "promptTokenCount"),
            ("usageMetadata", "candidatesTokenCount"),
            ("usageMetadata", "thoughtsTokenCount"),
            ("usageMetadata", "cachedContentTokenCount"),
            ("usageMetadata", "toolUsePromptTokenCount"),
            ("usageMetadata", "totalTokenCount"),
        ],
    ),
}


def _with_counts(pairs: list[Pair], fields: list[tuple[str, ...]], counts: list[Any]) -> list[Pair]:
    out = []
    for name, data in pairs:
        if not data.startswith("{"):
            out.append((name, data))
            continue
        frame = orjson.loads(data)
        for path, value in zip(fields, counts, strict=True):
            parent = frame
            for step in path[:-1]:
                parent = parent.get(step) if isinstance(parent, dict) else None
            if isinstance(parent, dict) and path[-1] in parent:
                parent[path[-1]] = value
        out.append((name, orjson.dumps(frame).decode()))
    return out


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
@fuzz(100)
@given(data=st.data())
def test_usage_counts_of_any_size_or_type_never_break_the_encoders(
    kind: str, data: st.DataObject
) -> None:
    tally(f"adapters: {kind} usage counts")
    pairs, fields = USAGE_FRAMES[kind]
    counts = data.draw(
        st.lists(json_ints | json_scalars, min_size=len(fields), max_size=len(fields))
    )
    events = decode_into(ADAPTERS[kind](), [wire_bytes(_with_counts(pairs, fields, counts))])
    check_grammar(events)
    assert isinstance(events[-1], ev.Finish)
    for usage in (e for e in events if isinstance(e, ev.Usage)):
        # Counts are never negative, and far inside 64 bits, so that sums of them are too.
        for count in (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens):
            assert type(count) is int and 0 <= count < 2**60
    assert_chat_reads_back_the_same_answer(events, downstream(events))


def test_every_format_has_recorded_streams_to_break() -> None:
    assert all(STREAMS.values()), {kind: len(s) for kind, s in STREAMS.items()}
