"""ToolCallSequencer: each tool call's events together, whatever the order upstream.

A Chat stream whose parallel calls interleave their argument fragments (the recorded one, and a
hand-made worst case whose fragments alternate chunk by chunk, cut at any byte) is translated
to every client format behind the sequencer; each result is held to a strict checker of its
format's order (``order_checks``) and read back by the official SDK's accumulator, which must
give every call its whole, valid arguments. The sequencer alone is held to its contract on
generated interleavings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
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
from sluice.wire.anthropic_messages import MessagesStreamAdapter, MessagesStreamEncoder
from sluice.wire.base import StreamEncoder
from sluice.wire.openai_chat import ChatStreamAdapter, ChatStreamEncoder
from sluice.wire.openai_responses import ResponsesStreamAdapter, ResponsesStreamEncoder
from sluice.wire.sequencer import ToolCallSequencer
from tests.wire.order_checks import (
    check_chat_order,
    check_messages_order,
    check_responses_order,
    sse_frames,
)
from tests.wire.wire_replay import HANDMADE, RECORDED, replay, transcript

RECORDED_CALLS = {
    "call_lQnnsesjFMWMQ5IeWPHzR4th": {"city": "Edinburgh", "country": "UK", "units": "c"},
    "call_2xjOUgaCdiwAcl9ZBL9LyMUU": {"ticker": "AAPL", "exchange": "NASDAQ"},
}
WORST_CALLS = {
    "call_Weather0000000000000001": {"city": "Paris", "units": "celsius"},
    "call_Time00000000000000000002": {"timezone": "Europe/Paris"},
    "call_Tickets000000000000003": {},
}
WORST = HANDMADE / "chat-parallel-tools-interleaved.sse"

TARGETS: dict[str, Callable[[], StreamEncoder]] = {
    "chat": lambda: ChatStreamEncoder("chatcmpl-sluice", "gpt-x", 1700000000, True),
    "messages": lambda: MessagesStreamEncoder("msg_sluice", "claude-x"),
    "responses": lambda: ResponsesStreamEncoder("resp_sluice", "gpt-x"),
}
ADAPTERS: dict[str, Any] = {
    "chat": ChatStreamAdapter,
    "messages": MessagesStreamAdapter,
    "responses": ResponsesStreamAdapter,
}
CHECKS = {
    "chat": check_chat_order,
    "messages": check_messages_order,
    "responses": check_responses_order,
}


def translated(events: list[Event], target: str) -> bytes:
    sequencer = ToolCallSequencer(TARGETS[target]())
    return b"".join(sequencer.encode(event) for event in events) + sequencer.close()


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


# -- the official SDKs' accumulators ---------------------------------------------------------


@contextmanager
def serving(payload: bytes) -> Iterator[httpx2.Client]:
    """An HTTP client whose every request is answered with ``payload`` as an SSE body (an
    in-process transport: everything after the bytes is the SDK's own code)."""

    def respond(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=payload)

    with httpx2.Client(transport=httpx2.MockTransport(respond)) as http:
        yield http


MESSAGES: Any = [{"role": "user", "content": "Weather and time in Paris?"}]


def sdk_calls(target: str, body: bytes) -> dict[str, Any]:
    """Each tool call's arguments as the official SDK's stream accumulator gives them."""
    with serving(body) as http:
        if target == "messages":
            client = anthropic.Anthropic(
                api_key="sk-test", base_url="http://sluice.test", http_client=http, max_retries=0
            )
            with client.messages.stream(
                model="claude-x", max_tokens=256, messages=MESSAGES
            ) as stream:
                message = stream.get_final_message()
            return {b.id: b.input for b in message.content if b.type == "tool_use"}
        oai = openai.OpenAI(
            api_key="sk-test", base_url="http://sluice.test/v1", http_client=http, max_retries=0
        )
        if target == "chat":
            with oai.chat.completions.stream(model="gpt-x", messages=MESSAGES) as stream:
                completion = stream.get_final_completion()
            calls = completion.choices[0].message.tool_calls or []
            return {c.id: orjson.loads(c.function.arguments) for c in calls}
        with oai.responses.stream(model="gpt-x", input="Weather?") as responses:
            response = responses.get_final_response()
        return {
            item.call_id: orjson.loads(item.arguments)
            for item in response.output
            if item.type == "function_call"
        }


def check_translation(events: list[Event], target: str, calls: dict[str, Any]) -> bytes:
    body = translated(events, target)
    joined = CHECKS[target](body)
    assert {call_id: orjson.loads(text) for call_id, text in joined.items()} == calls
    return body


# -- the recorded parallel calls, and the worst case ------------------------------------------


def test_the_worst_case_interleaves_every_call_with_the_others() -> None:
    events = replay(ChatStreamAdapter(), [transcript(WORST)])
    owners = [e.index for e in events if isinstance(e, ToolCallStart | ToolCallDelta)]
    changes = sum(a != b for a, b in pairwise(owners))
    assert changes >= len(owners) - 3  # the call changes at almost every fragment
    texts = [i for i, e in enumerate(events) if isinstance(e, TextDelta)]
    first_call = next(i for i, e in enumerate(events) if isinstance(e, ToolCallStart))
    assert texts[-1] > first_call  # text while calls are open


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize(
    ("path", "calls"),
    [(RECORDED / "openai-chat-parallel-tools.sse", RECORDED_CALLS), (WORST, WORST_CALLS)],
    ids=["recorded", "worst-case"],
)
def test_parallel_calls_translated_keep_each_call_together(
    path: Path, calls: dict[str, Any], target: str
) -> None:
    events = replay(ChatStreamAdapter(), [transcript(path)])
    body = check_translation(events, target, calls)
    assert sdk_calls(target, body) == calls


@pytest.mark.parametrize("target", list(TARGETS))
def test_text_held_behind_an_open_call_comes_after_it_whole(target: str) -> None:
    events = replay(ChatStreamAdapter(), [transcript(WORST)])
    body = translated(events, target)
    if target == "messages":
        frames = [orjson.loads(data) for _, data in sse_frames(body)]
        blocks = [f["content_block"]["type"] for f in frames if f["type"] == "content_block_start"]
        assert blocks == ["text", "tool_use", "tool_use", "tool_use", "text"]
    again = replay(ADAPTERS[target](), [body])
    assert "".join(e.text for e in again if isinstance(e, TextDelta)) == "Checking both."


@pytest.mark.parametrize("target", list(TARGETS))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_the_worst_case_cut_anywhere_translates_in_order(target: str, data: st.DataObject) -> None:
    whole = transcript(WORST)
    cuts = data.draw(st.lists(st.integers(0, len(whole)), max_size=60), label="cuts")
    events = replay(ChatStreamAdapter(), chunked(whole, cuts))
    body = check_translation(events, target, WORST_CALLS)
    assert sdk_calls(target, body) == WORST_CALLS


def test_the_checker_refuses_a_fragment_after_its_block_stopped() -> None:
    # What the encoder wrote before the sequencer: call 0's last fragment after its stop.
    late = [
        ("message_start", {"type": "message_start", "message": {"id": "msg_1"}}),
        ("content_block_start", _tool_start(0, "toolu_a")),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", _tool_start(1, "toolu_b")),
        ("content_block_delta", _json_delta(0, "{}")),
    ]
    body = b"".join(
        b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        for name, data in late
    )
    with pytest.raises(AssertionError, match="not inside its start and stop"):
        check_messages_order(body)


def _tool_start(index: int, call_id: str) -> dict[str, Any]:
    block = {"type": "tool_use", "id": call_id, "name": "f", "input": {}}
    return {"type": "content_block_start", "index": index, "content_block": block}


def _json_delta(index: int, fragment: str) -> dict[str, Any]:
    delta = {"type": "input_json_delta", "partial_json": fragment}
    return {"type": "content_block_delta", "index": index, "delta": delta}


# -- the sequencer's contract, on generated interleavings --------------------------------------


class Recorder:
    """A stand-in encoder that keeps what it is given, and when (the ``encode`` call number)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, Event]] = []
        self.call = 0
        self.closed = False

    def encode(self, event: Event) -> bytes:
        self.seen.append((self.call, event))
        return b"x"

    def close(self) -> bytes:
        self.closed = True
        return b""


@st.composite
def interleavings(draw: st.DrawFn) -> list[Event]:
    """Start, then tool calls whose starts, fragments and ends interleave with each other and
    with text, reasoning and signatures in any order a provider might send, then usage and a
    terminal event (an error may cut calls short: then they have no end)."""
    calls = draw(st.integers(0, 4))
    fragments = [draw(st.integers(0, 4)) for _ in range(calls)]
    streams: list[list[Event]] = []
    for index in range(calls):
        call_id = f"call_{index}"
        own: list[Event] = [ToolCallStart(index, call_id, f"f{index}")]
        own += [ToolCallDelta(index, f"<{index}.{n}>") for n in range(fragments[index])]
        own.append(ToolCallDone(index, call_id, f"f{index}", "", {}))
        streams.append(own)
    between: list[Event] = [TextDelta("t"), ReasoningDelta("r", 9), Signature("s", 9), Usage(1, 2)]
    others: list[Event] = draw(st.lists(st.sampled_from(between), max_size=6))
    streams.append(others)
    out: list[Event] = [Start("r", "m")]
    while any(streams):
        pick = draw(st.sampled_from([s for s in streams if s]))
        out.append(pick.pop(0))
    if draw(st.booleans()):
        cut = draw(st.integers(1, len(out)))
        return [*out[:cut], Error("cancelled", "stopped")]
    return [*out, Finish("tool_calls")]


def sequenced(events: list[Event]) -> tuple[Recorder, list[Event]]:
    recorder = Recorder()
    sequencer = ToolCallSequencer(recorder)
    for number, event in enumerate(events):
        recorder.call = number
        sequencer.encode(event)
    recorder.call = len(events)
    sequencer.close()
    return recorder, [event for _, event in recorder.seen]


def call_of(event: Event) -> int | None:
    return event.index if isinstance(event, ToolCallStart | ToolCallDelta | ToolCallDone) else None


@settings(max_examples=300, deadline=None)
@given(interleavings())
def test_every_event_comes_out_once_each_call_together_in_order(events: list[Event]) -> None:
    recorder, out = sequenced(events)
    assert sorted(map(repr, out)) == sorted(map(repr, events))  # nothing lost, nothing added
    assert out[-1] == events[-1] and recorder.closed  # the terminal event last
    # each call: its start, its fragments in order, its end, with nothing between
    owners = [call_of(e) for e in out]
    for index in {i for i in owners if i is not None}:
        positions = [p for p, owner in enumerate(owners) if owner == index]
        assert positions == list(range(positions[0], positions[-1] + 1)), index
        assert isinstance(out[positions[0]], ToolCallStart)
        mine = [e for e in events if call_of(e) == index]
        assert [out[p] for p in positions] == mine
    # the calls in the order they started; everything else in the order it came
    starts = [e.index for e in out if isinstance(e, ToolCallStart)]
    assert starts == [e.index for e in events if isinstance(e, ToolCallStart)]
    rest = [e for e in out if call_of(e) is None]
    assert rest == [e for e in events if call_of(e) is None]


@settings(max_examples=100, deadline=None)
@given(interleavings())
def test_nothing_waits_while_no_call_is_open(events: list[Event]) -> None:
    recorder, _ = sequenced(events)
    open_call: int | None = None
    passed = {number for number, _ in recorder.seen}
    for number, event in enumerate(events[:-1]):
        if open_call is None:
            assert number in passed, f"{event!r} waited with no call open"
        if isinstance(event, ToolCallStart) and open_call is None:
            open_call = event.index
        # (once a call is open, what follows may wait; the worst case above covers that)
        if isinstance(event, ToolCallDone) and event.index == open_call:
            break


def test_a_stream_without_tool_calls_passes_through_untouched() -> None:
    events: list[Event] = [
        Start("r", "m"),
        ReasoningDelta("hm"),
        Signature("sig"),
        TextDelta("a"),
        TextDelta("b"),
        Usage(1, 2, final=True),
        Finish("stop"),
    ]
    recorder, out = sequenced(events)
    assert recorder.seen == list(enumerate(events))
    assert out == events


def test_fragments_of_a_later_call_wait_for_the_open_one_to_end() -> None:
    recorder = Recorder()
    sequencer = ToolCallSequencer(recorder)
    events: list[Event] = [
        ToolCallStart(0, "a", "f"),
        ToolCallStart(1, "b", "g"),
        ToolCallDelta(1, "{}"),
        TextDelta("meanwhile"),
        ToolCallDelta(0, '{"x":'),
    ]
    for event in events:
        sequencer.encode(event)
    assert [e for _, e in recorder.seen] == [ToolCallStart(0, "a", "f"), ToolCallDelta(0, '{"x":')]
    assert not sequencer.idle
    sequencer.encode(ToolCallDelta(0, "1}"))
    sequencer.encode(ToolCallDone(0, "a", "f", '{"x":1}', {"x": 1}))
    assert [e for _, e in recorder.seen][-3:] == [
        ToolCallDone(0, "a", "f", '{"x":1}', {"x": 1}),
        ToolCallStart(1, "b", "g"),
        ToolCallDelta(1, "{}"),
    ]
    assert not sequencer.idle  # call 1 is open until its end, and the text came after it began
    sequencer.encode(ToolCallDone(1, "b", "g", "{}", {}))
    assert [e for _, e in recorder.seen][-2:] == [
        ToolCallDone(1, "b", "g", "{}", {}),
        TextDelta("meanwhile"),
    ]
    assert sequencer.idle


@pytest.mark.parametrize("target", list(TARGETS))
def test_an_index_used_again_after_its_call_ended_is_a_new_call(target: str) -> None:
    # (an upstream that numbers its blocks again from 0: a protocol slip, not a repeat)
    events: list[Event] = [Start("r", "m")]
    for call_id, name, text in (("call_a", "f", '{"x": 1}'), ("call_b", "g", '{"y": 2}')):
        events += [
            ToolCallStart(0, call_id, name),
            ToolCallDelta(0, text),
            ToolCallDone(0, call_id, name, text, orjson.loads(text)),
        ]
    events.append(Finish("tool_calls"))
    check_translation(events, target, {"call_a": {"x": 1}, "call_b": {"y": 2}})


@pytest.mark.parametrize("target", list(TARGETS))
def test_an_index_used_again_while_held_is_still_a_new_call(target: str) -> None:
    # Call 1 is open while call 0 comes and goes twice under the same index: both wait, and
    # come out as two calls.
    events: list[Event] = [
        Start("r", "m"),
        ToolCallStart(1, "call_open", "h"),
        ToolCallStart(0, "call_a", "f"),
        ToolCallDelta(0, '{"x": 1}'),
        ToolCallDone(0, "call_a", "f", '{"x": 1}', {"x": 1}),
        ToolCallStart(0, "call_b", "g"),
        ToolCallDelta(1, '{"z": 3}'),
        ToolCallDelta(0, '{"y": 2}'),
        ToolCallDone(0, "call_b", "g", '{"y": 2}', {"y": 2}),
        ToolCallDone(1, "call_open", "h", '{"z": 3}', {"z": 3}),
        Finish("tool_calls"),
    ]
    calls = {"call_open": {"z": 3}, "call_a": {"x": 1}, "call_b": {"y": 2}}
    check_translation(events, target, calls)
