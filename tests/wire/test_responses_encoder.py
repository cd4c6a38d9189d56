"""The Responses encoder: normalised events to the API's exact event sequence, and back.

Each stream the encoder writes is held to the strict order checker (``responses_order``), read
back through the project's own Responses adapter (the same turn), and replayed into the
``openai`` SDK's own stream state (``ResponseStreamState``, fed the frames as the SDK's stream
would, without a network): its final response is the encoder's. A resume (``starting_after``)
writes exactly the frames after its number, and a log read back from the store writes the same
stream, byte for byte.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai import omit
from openai._models import construct_type
from openai.lib.streaming.responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent

from sluice import events as ev
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
from sluice.wire.openai_responses import ResponsesStreamAdapter, ResponsesStreamEncoder
from sluice.wire.sequencer import ToolCallSequencer
from tests.wire.responses_order import check, frames_of
from tests.wire.wire_replay import (
    adapter_for,
    dones,
    reasoning_of,
    replay,
    terminal,
    text_of,
    transcript,
    transcripts,
    usages,
)

USAGE = Usage(
    input_tokens=30, output_tokens=12, cache_read_tokens=8, reasoning_tokens=5, final=True
)


def done(index: int, call_id: str, name: str, raw: str, status: str = ev.TOOL_OK) -> ToolCallDone:
    arguments = orjson.loads(raw) if status == ev.TOOL_OK and raw else ({} if not raw else None)
    return ToolCallDone(index, call_id, name, raw, arguments, status)


CANONICAL: dict[str, list[Event]] = {
    "text": [Start("up", "m"), TextDelta("Hello"), TextDelta(", world."), USAGE, Finish("stop")],
    "reasoning, signature, text": [
        Start("up", "m"),
        ReasoningDelta("Two and two ", 0),
        ReasoningDelta("make four.", 0),
        Signature("sig-A", 0),
        TextDelta("4", 1),
        USAGE,
        Finish("stop"),
    ],
    "reasoning, text, two calls": [
        Start("up", "m"),
        ReasoningDelta("Weather first.", 0),
        TextDelta("Let me ", 1),
        TextDelta("check.", 1),
        ToolCallStart(4, "call_weather", "get_weather"),
        ToolCallDelta(4, '{"city": '),
        ToolCallDelta(4, '"Paris"}'),
        done(4, "call_weather", "get_weather", '{"city": "Paris"}'),
        ToolCallStart(7, "call_time", "get_time"),
        done(7, "call_time", "get_time", ""),
        USAGE,
        Finish("tool_calls"),
    ],
    "interleaved calls": [
        Start("up", "m"),
        ToolCallStart(0, "call_a", "lookup_order"),
        ToolCallStart(1, "call_b", "list_open_tickets"),
        ToolCallDelta(0, '{"order'),
        ToolCallDelta(1, "{}"),
        ToolCallDelta(0, '_id": "A-1"}'),
        done(0, "call_a", "lookup_order", '{"order_id": "A-1"}'),
        done(1, "call_b", "list_open_tickets", "{}"),
        USAGE,
        Finish("tool_calls"),
    ],
    "a call given whole": [
        Start("up", "m"),
        done(0, "call_g", "get_capital", '{"country": "France"}'),
        USAGE,
        Finish("tool_calls"),
    ],
    "text around a call": [
        Start("up", "m"),
        TextDelta("Looking.", 0),
        ToolCallStart(1, "call_1", "f"),
        ToolCallDelta(1, '{"x": 1}'),
        done(1, "call_1", "f", '{"x": 1}'),
        TextDelta("Found it.", 2),
        USAGE,
        Finish("stop"),
    ],
    "two reasoning blocks": [
        Start("up", "m"),
        ReasoningDelta("First.", 0),
        Signature("sig-1", 0),
        ReasoningDelta("Second.", 1),
        Signature("sig-2", 1),
        TextDelta("Done.", 2),
        USAGE,
        Finish("stop"),
    ],
    "cut by length": [
        Start("up", "m"),
        TextDelta("Writing "),
        ToolCallStart(1, "call_w", "write"),
        ToolCallDelta(1, '{"text": "abc'),
        done(1, "call_w", "write", '{"text": "abc', ev.TOOL_INCOMPLETE),
        USAGE,
        Finish("length"),
    ],
    "content filter": [Start("up", "m"), TextDelta("I can"), USAGE, Finish("content_filter")],
    "error in the middle of text": [
        Start("up", "m"),
        ReasoningDelta("Hm."),
        TextDelta("par"),
        Error("overloaded", "Overloaded", retryable=True),
    ],
    "error before anything": [Error("upstream_truncated", "the stream ended", retryable=True)],
    "stop": [
        Start("up", "m"),
        ReasoningDelta("Hm."),
        TextDelta("partial an"),
        Error("cancelled", "stopped: client_stop"),
    ],
}

ENDINGS = {
    "cut by length": "incomplete",
    "content filter": "incomplete",
    "error in the middle of text": "failed",
    "error before anything": "failed",
    "stop": "cancelled",
}
NAMES = sorted(CANONICAL)


def encode(events: list[Event], **options: Any) -> bytes:
    """The stream for ``events``, as a client gets it: through the tool-call sequencer."""
    encoder = ResponsesStreamEncoder("resp_op-1", "sim/support", created_at=1700000000, **options)
    sequencer = ToolCallSequencer(encoder)
    return b"".join(sequencer.encode(e) for e in events) + sequencer.close()


def final_of(events: list[Event]) -> dict[str, Any]:
    encoder = ResponsesStreamEncoder("resp_op-1", "sim/support", created_at=1700000000)
    sequencer = ToolCallSequencer(encoder)
    for event in events:
        sequencer.encode(event)
    sequencer.close()
    return encoder.response()


def sdk_replay(body: bytes) -> tuple[list[Any], Any]:
    """The SDK's own stream state fed the frames as its stream parses them: the events it
    yields and its final response (None without ``response.completed``)."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    yielded = []
    for _, data in frames_of(body):
        yielded += state.handle_event(construct_type(type_=ResponseStreamEvent, value=data))  # type: ignore[arg-type]
    return yielded, state._completed_response


def content(events: list[Event]) -> dict[str, Any]:
    """What a round trip must keep."""
    calls = [(d.call_id, d.name, d.raw or "{}") for d in dones(events)]
    usage = usages(events)[-1] if usages(events) else None
    end = terminal(events)
    return {
        "text": text_of(events),
        "reasoning": reasoning_of(events),
        "calls": calls,
        "usage": None if usage is None else (usage.input_tokens, usage.output_tokens),
        "end": end.reason if isinstance(end, Finish) else end.type,
    }


# -- the order -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_stream_keeps_the_event_order(name: str) -> None:
    final = check(frames_of(encode(CANONICAL[name])))
    assert final is not None
    assert final["status"] == ENDINGS.get(name, "completed")
    assert final["id"] == "resp_op-1"


@pytest.mark.parametrize("name", NAMES)
def test_the_last_frame_carries_the_response_object_the_encoder_holds(name: str) -> None:
    *_, (_, last) = frames_of(encode(CANONICAL[name]))
    assert last["response"] == final_of(CANONICAL[name])


def test_a_text_delta_into_an_open_message_is_one_frame() -> None:
    encoder = ResponsesStreamEncoder("resp_op-1", "m")
    encoder.encode(Start("up", "m"))
    encoder.encode(TextDelta("Hel"))
    assert encoder.encode(TextDelta('lo "x"')) == (
        b"event: response.output_text.delta\n"
        b'data: {"type":"response.output_text.delta","item_id":"msg_op-1_0","output_index":0,'
        b'"content_index":0,"logprobs":[],"delta":"lo \\"x\\"","sequence_number":5}\n\n'
    )


def test_the_first_text_opens_the_message_and_its_part() -> None:
    encoder = ResponsesStreamEncoder("resp_op-1", "m")
    names = [name for name, _ in frames_of(encoder.encode(TextDelta("hi")))]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]


def test_usage_reaches_the_completed_response() -> None:
    *_, (_, last) = frames_of(encode(CANONICAL["text"]))
    assert last["response"]["usage"] == {
        "input_tokens": 30,
        "input_tokens_details": {"cached_tokens": 8},
        "output_tokens": 12,
        "output_tokens_details": {"reasoning_tokens": 5},
        "total_tokens": 42,
    }


def test_a_signature_ends_its_reasoning_block_and_is_not_written() -> None:
    body = encode(CANONICAL["two reasoning blocks"])
    assert b"sig-1" not in body and b"sig-2" not in body
    reasoning = [item for item in final_of(CANONICAL["two reasoning blocks"])["output"]]
    assert [(r["type"], r.get("summary")) for r in reasoning[:2]] == [
        ("reasoning", [{"type": "summary_text", "text": "First."}]),
        ("reasoning", [{"type": "summary_text", "text": "Second."}]),
    ]
    assert all("encrypted_content" not in r for r in reasoning)


def test_a_signature_with_no_reasoning_open_is_dropped() -> None:
    events: list[Event] = [
        Start("up", "m"),
        ToolCallStart(0, "call_1", "f"),
        Signature("gemini-signature", 0),
        done(0, "call_1", "f", "{}"),
        TextDelta("ok", 1),
        Signature("another", 1),
        USAGE,
        Finish("tool_calls"),
    ]
    body = encode(events)
    assert b"signature" not in body
    check(frames_of(body))


def test_interleaved_calls_come_out_one_item_after_the_other_each_whole() -> None:
    frames = frames_of(encode(CANONICAL["interleaved calls"]))
    final = check(frames)
    assert final is not None
    assert [(i["call_id"], i["arguments"]) for i in final["output"]] == [
        ("call_a", '{"order_id": "A-1"}'),
        ("call_b", "{}"),
    ]
    names = [name for name, _ in frames]
    first_done = names.index("response.output_item.done")
    assert names.index("response.output_item.added", 3) > first_done  # one open at a time


def test_a_fragment_for_a_call_whose_item_ended_is_never_written() -> None:
    encoder = ResponsesStreamEncoder("resp_op-1", "m")
    encoder.encode(ToolCallStart(0, "call_a", "a"))
    encoder.encode(ToolCallStart(1, "call_b", "b"))  # ends item 0
    assert encoder.encode(ToolCallDelta(0, '{"late": 1}')) == b""
    assert encoder.encode(done(0, "call_a", "a", '{"late": 1}')) == b""


def test_a_call_without_an_id_gets_one() -> None:
    final = final_of([Start("up", "m"), done(0, "", "f", "{}"), USAGE, Finish("tool_calls")])
    assert [item["call_id"] for item in final["output"]] == ["call_0"]


def test_an_error_lists_only_the_items_that_had_ended() -> None:
    final = final_of(CANONICAL["error in the middle of text"])
    assert [item["type"] for item in final["output"]] == ["reasoning"]
    assert final["error"] == {"code": "server_error", "message": "Overloaded"}


def test_a_stop_ends_the_open_items_incomplete_and_the_response_cancelled() -> None:
    frames = frames_of(encode(CANONICAL["stop"]))
    assert "error" not in [name for name, _ in frames]
    name, last = frames[-1]
    assert name == "response.failed"
    response = last["response"]
    assert (response["status"], response["error"]) == ("cancelled", None)
    assert [(i["type"], i.get("status")) for i in response["output"]] == [
        ("reasoning", None),
        ("message", "incomplete"),
    ]
    assert response["output"][1]["content"][0]["text"] == "partial an"


def test_a_response_in_progress_lists_its_items_so_far_without_usage() -> None:
    events: list[Event] = [Start("up", "m"), ReasoningDelta("Hm."), TextDelta("so fa"), USAGE]
    response = final_of(events)
    assert (response["status"], response["usage"]) == ("in_progress", None)
    assert [(i["type"], i.get("status")) for i in response["output"]] == [
        ("reasoning", None),
        ("message", "in_progress"),
    ]
    assert response["output"][1]["content"][0]["text"] == "so fa"


def test_nothing_is_written_after_the_end() -> None:
    encoder = ResponsesStreamEncoder("resp_op-1", "m")
    for event in CANONICAL["text"]:
        encoder.encode(event)
    assert encoder.ended
    assert encoder.encode(TextDelta("late")) == b""
    assert encoder.encode(Error("overloaded", "late")) == b""


# -- read back -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_the_projects_adapter_reads_back_the_same_turn(name: str) -> None:
    source = CANONICAL[name]
    decoded = replay(ResponsesStreamAdapter(), [encode(source)])
    expected, got = content(source), content(decoded)
    if name in ("error before anything", "stop", "error in the middle of text"):
        # an error keeps its type only as far as the format's codes say it
        expected["end"] = got["end"] = "error"
    if expected["end"] == "stop" and expected["calls"]:
        expected["end"] = "tool_calls"  # the format has no stop reason: a call says tool_calls
    assert got == expected


@pytest.mark.parametrize("name", NAMES)
def test_the_sdk_accumulates_the_encoders_response(name: str) -> None:
    yielded, final = sdk_replay(encode(CANONICAL[name]))
    expected = final_of(CANONICAL[name])
    if expected["status"] != "completed":
        assert final is None  # the SDK completes only a completed response
        last = yielded[-1]
        ending = "response.incomplete" if expected["status"] == "incomplete" else "response.failed"
        assert (last.type, last.response.status) == (ending, expected["status"])
        assert [o.id for o in last.response.output] == [o["id"] for o in expected["output"]]
        return
    assert final is not None
    assert final.id == "resp_op-1" and final.status == "completed"
    assert final.output_text == text_of(CANONICAL[name])
    assert [o.type for o in final.output] == [o["type"] for o in expected["output"]]
    calls = [(o.call_id, o.name, o.arguments) for o in final.output if o.type == "function_call"]
    assert calls == [(d.call_id, d.name, d.raw or "{}") for d in dones(CANONICAL[name])]
    summaries = "".join(s.text for o in final.output if o.type == "reasoning" for s in o.summary)
    assert summaries == reasoning_of(CANONICAL[name])
    usage = final.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (30, 12, 42)
    assert usage.input_tokens_details.cached_tokens == 8
    assert usage.output_tokens_details.reasoning_tokens == 5


def test_the_sdk_yields_every_text_delta_with_its_snapshot() -> None:
    yielded, _ = sdk_replay(encode(CANONICAL["text"]))
    deltas = [(e.delta, e.snapshot) for e in yielded if e.type == "response.output_text.delta"]
    assert deltas == [("Hello", "Hello"), (", world.", "Hello, world.")]


# -- resume ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_a_resume_writes_exactly_the_frames_after_its_number(name: str) -> None:
    whole = encode(CANONICAL[name])
    frames = whole.split(b"\n\n")[:-1]
    for after in range(-1, len(frames) + 1):
        tail = encode(CANONICAL[name], starting_after=after)
        assert tail == b"".join(f + b"\n\n" for f in frames[after + 1 :]), after
        check(frames_of(tail), first=after + 1, ended=after + 1 < len(frames))


def test_a_log_read_back_from_the_store_renders_the_same_stream() -> None:
    """The store keeps a text or reasoning delta without its index: the stream the encoder
    writes from a stored log is the live one, for every transcript's events."""
    logs = [replay(adapter_for(path), [transcript(path)]) for path in transcripts()]
    for events in [*logs, *CANONICAL.values()]:
        stored = [ev.from_payload(*ev.payload(event)) for event in events]
        assert None not in stored
        assert encode(stored) == encode(events)  # type: ignore[arg-type]


def test_a_silent_replay_writes_nothing_and_holds_the_final_response() -> None:
    events = CANONICAL["reasoning, text, two calls"]
    encoder = ResponsesStreamEncoder(
        "resp_op-1", "sim/support", created_at=1700000000, starting_after=2**62
    )
    assert b"".join(encoder.encode(e) for e in events) == b""
    assert encoder.response() == final_of(events)
    assert encoder.frames == len(frames_of(encode(events)))


# -- recorded streams, translated ------------------------------------------------------------


@pytest.mark.parametrize("path", transcripts(), ids=lambda p: p.name)
def test_every_transcript_translated_keeps_the_order_and_accumulates_what_was_sent(
    path: Any,
) -> None:
    events = replay(adapter_for(path), [transcript(path)])
    body = encode(events)
    final = check(frames_of(body))
    assert final is not None
    _, accumulated = sdk_replay(body)
    if final["status"] != "completed":
        assert accumulated is None
        return
    assert accumulated.output_text == text_of(events)
    calls = [
        (o.call_id, o.name, o.arguments) for o in accumulated.output if o.type == "function_call"
    ]
    assert calls == [(d.call_id, d.name, d.raw or "{}") for d in dones(events)]


# -- any turn --------------------------------------------------------------------------------

words = st.text(min_size=1, max_size=8)
call_arguments = st.dictionaries(
    st.text(max_size=5), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5), max_size=3
)


@st.composite
def turns(draw: st.DrawFn) -> list[Event]:
    """A well-formed turn whose tool calls may interleave, with any ending."""
    events: list[Event] = [Start("up", "m")]
    for position in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["text", "reasoning", "signature", "calls"]))
        if kind == "text":
            events += [
                TextDelta(w, position) for w in draw(st.lists(words, min_size=1, max_size=3))
            ]
        elif kind == "reasoning":
            events += [
                ReasoningDelta(w, position) for w in draw(st.lists(words, min_size=1, max_size=3))
            ]
        elif kind == "signature":
            events.append(Signature(draw(words), position))
        else:
            count = draw(st.integers(1, 3))
            texts = [orjson.dumps(draw(call_arguments)).decode() for _ in range(count)]
            pieces: list[list[str]] = []
            for text in texts:
                cut = draw(st.integers(0, len(text)))
                pieces.append([text[:cut], text[cut:]])
            # the calls' fragments interleave, each call's in its own order
            turns_of = draw(st.permutations([n for n in range(count) for _ in range(2)]))
            order = [(n, pieces[n].pop(0)) for n in turns_of]
            index = 10 * position
            events += [
                ToolCallStart(index + n, f"call_{position}_{n}", f"f{n}") for n in range(count)
            ]
            events += [ToolCallDelta(index + n, piece) for n, piece in order if piece]
            events += [
                done(index + n, f"call_{position}_{n}", f"f{n}", t) for n, t in enumerate(texts)
            ]
    ending = draw(st.sampled_from(["stop", "tool_calls", "length", "error", "cancelled"]))
    if ending in ("error", "cancelled"):
        events.append(Error(ending if ending == "cancelled" else "overloaded", "ended"))
    else:
        events += [USAGE, Finish(ending)]
    return events


@settings(max_examples=200, deadline=None)
@given(events=turns(), data=st.data())
def test_any_turn_keeps_the_order_reads_back_and_resumes(
    events: list[Event], data: st.DataObject
) -> None:
    body = encode(events)
    frames = frames_of(body)
    final = check(frames)
    assert final is not None
    decoded = replay(ResponsesStreamAdapter(), [body])
    assert text_of(decoded) == text_of(events)
    assert [(d.call_id, d.raw or "{}") for d in dones(decoded)] == [
        (d.call_id, d.raw or "{}") for d in dones(events)
    ]
    after = data.draw(st.integers(-1, len(frames)), label="starting_after")
    tail = encode(events, starting_after=after)
    assert tail == b"".join(f + b"\n\n" for f in body.split(b"\n\n")[after + 1 : -1])
    _, accumulated = sdk_replay(body)
    assert (accumulated is not None) == (final["status"] == "completed")
    if accumulated is not None:
        assert accumulated.output_text == text_of(events)
