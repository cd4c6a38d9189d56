"""MessagesStreamAdapter: Anthropic Messages frames -> normalised events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sluice.events import (
    TOOL_INCOMPLETE,
    TOOL_OK,
    Error,
    Finish,
    ReasoningDelta,
    Signature,
    Start,
    TextDelta,
    ToolCallDone,
    ToolCallStart,
    Usage,
)
from sluice.wire.anthropic_messages import MessagesStreamAdapter
from tests.wire.wire_replay import (
    HANDMADE,
    dones,
    reasoning_of,
    replay_file,
    starts,
    terminal,
    text_of,
    usages,
)


def feed(adapter: MessagesStreamAdapter, frame: dict[str, Any]) -> list[Any]:
    return adapter.feed(frame["type"], orjson.dumps(frame).decode())


def started(usage: dict[str, Any] | None = None) -> MessagesStreamAdapter:
    adapter = MessagesStreamAdapter()
    message = {"id": "msg_1", "model": "claude", "usage": usage or {"input_tokens": 1}}
    feed(adapter, {"type": "message_start", "message": message})
    return adapter


def tool_block(index: int, call_id: str = "toolu_1", name: str = "f") -> dict[str, Any]:
    block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
    return {"type": "content_block_start", "index": index, "content_block": block}


def json_delta(index: int, fragment: str) -> dict[str, Any]:
    delta = {"type": "input_json_delta", "partial_json": fragment}
    return {"type": "content_block_delta", "index": index, "delta": delta}


# -- transcripts ---------------------------------------------------------------------------


def test_thinking_becomes_reasoning_with_its_signature_and_a_redacted_block_its_data() -> None:
    events = replay_file(HANDMADE / "anthropic-thinking.sse")
    assert reasoning_of(events) == "The user wants 27 * 453. That is 12231."
    assert text_of(events) == "27 * 453 = 12231"
    assert [type(e) for e in events] == [
        Start,
        Usage,
        ReasoningDelta,
        ReasoningDelta,
        Signature,
        Signature,
        TextDelta,
        Usage,
        Finish,
    ]
    assert [e for e in events if isinstance(e, Signature)] == [
        Signature("EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds", 0),
        Signature("EmwKAhgBEgy3va3pzix", 1, redacted=True),
    ]


def test_a_signature_given_with_the_thinking_block_start_is_kept() -> None:
    adapter = started()
    block = {"type": "thinking", "thinking": "hm", "signature": "sig"}
    events = feed(adapter, {"type": "content_block_start", "index": 0, "content_block": block})
    assert events == [ReasoningDelta("hm", 0), Signature("sig", 0)]


def test_an_empty_signature_delta_says_nothing() -> None:
    adapter = started()
    block = {"type": "thinking", "thinking": "", "signature": ""}
    feed(adapter, {"type": "content_block_start", "index": 0, "content_block": block})
    delta = {"type": "signature_delta", "signature": ""}
    assert feed(adapter, {"type": "content_block_delta", "index": 0, "delta": delta}) == []


def test_thinking_transcript_cache_counts_survive_the_final_usage() -> None:
    events = replay_file(HANDMADE / "anthropic-thinking.sse")
    # Anthropic's input_tokens (52) leaves the cached tokens out; the event model counts them in
    assert usages(events)[-1] == Usage(
        input_tokens=52 + 2000 + 10,
        output_tokens=87,
        cache_read_tokens=2000,
        cache_write_tokens=10,
        final=True,
    )


def test_error_frame_is_terminal_overloaded_and_retryable() -> None:
    events = replay_file(HANDMADE / "anthropic-error.sse")
    assert text_of(events) == "Let me"
    error = terminal(events)
    assert isinstance(error, Error)
    assert (error.type, error.message, error.retryable) == ("overloaded", "Overloaded", True)


def test_tool_without_any_fragment_has_empty_object_arguments() -> None:
    events = replay_file(HANDMADE / "anthropic-tool-no-args.sse")
    [done] = dones(events)
    assert (done.call_id, done.status, done.arguments, done.raw) == (
        "toolu_01Clock",
        TOOL_OK,
        {},
        "",
    )
    assert terminal(events) == Finish(reason="tool_calls", raw="tool_use")


def test_unknown_events_blocks_and_deltas_are_ignored() -> None:
    events = replay_file(HANDMADE / "anthropic-unknown-events.sse")
    assert text_of(events) == "Found it."
    assert starts(events) == []  # server_tool_use is run by Anthropic, not by the client
    assert terminal(events) == Finish(reason="stop", raw="end_turn")


def test_malformed_frame_ends_the_stream_and_reports_the_open_call_incomplete() -> None:
    events = replay_file(HANDMADE / "anthropic-malformed-json.sse")
    [done] = dones(events)
    assert (done.status, done.raw) == (TOOL_INCOMPLETE, '{"a": ')
    error = terminal(events)
    assert isinstance(error, Error)
    assert error.type == "upstream_protocol"
    assert error.message == "malformed JSON in a Anthropic Messages stream frame"


# -- single behaviours ---------------------------------------------------------------------


def test_message_start_gives_start_and_a_non_final_usage() -> None:
    usage = {
        "input_tokens": 10,
        "output_tokens": 1,
        "cache_read_input_tokens": 7,
        "cache_creation_input_tokens": 3,
    }
    adapter = MessagesStreamAdapter()
    message = {"id": "msg_1", "model": "claude-x", "usage": usage}
    events = feed(adapter, {"type": "message_start", "message": message})
    assert events == [
        Start("msg_1", "claude-x"),
        Usage(input_tokens=10 + 7 + 3, output_tokens=1, cache_read_tokens=7, cache_write_tokens=3),
    ]


def test_message_delta_usage_replaces_and_keeps_input_counts_it_does_not_carry() -> None:
    adapter = started({"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 4})
    delta = {"stop_reason": "end_turn"}
    first = feed(adapter, {"type": "message_delta", "delta": delta, "usage": {"output_tokens": 5}})
    second = feed(
        adapter,
        {
            "type": "message_delta",
            "delta": delta,
            "usage": {"output_tokens": 9, "input_tokens": 12},
        },
    )
    # the event model counts cached input in input_tokens (Anthropic leaves it out)
    assert first == [Usage(input_tokens=14, output_tokens=5, cache_read_tokens=4, final=True)]
    assert second == [Usage(input_tokens=16, output_tokens=9, cache_read_tokens=4, final=True)]


def test_empty_first_fragment_is_skipped_but_counts_as_started() -> None:
    adapter = started()
    feed(adapter, tool_block(0))
    assert feed(adapter, json_delta(0, "")) == []
    [done] = feed(adapter, {"type": "content_block_stop", "index": 0})
    assert (done.status, done.arguments) == (TOOL_OK, {})


def test_tool_block_start_carrying_its_input_gives_those_arguments() -> None:
    adapter = started()
    block = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": 1}}
    feed(adapter, {"type": "content_block_start", "index": 0, "content_block": block})
    [done] = feed(adapter, {"type": "content_block_stop", "index": 0})
    assert (done.status, done.arguments, done.raw) == (TOOL_OK, {"x": 1}, '{"x":1}')


def test_max_tokens_message_delta_reports_the_open_call_incomplete_before_usage() -> None:
    adapter = started()
    feed(adapter, tool_block(0))
    feed(adapter, json_delta(0, '{"a": [1,'))
    events = feed(
        adapter,
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens"},
            "usage": {"output_tokens": 4},
        },
    )
    assert isinstance(events[0], ToolCallDone)
    assert (events[0].status, events[0].raw, events[0].arguments) == (
        TOOL_INCOMPLETE,
        '{"a": [1,',
        None,
    )
    assert isinstance(events[1], Usage)
    assert feed(adapter, {"type": "message_stop"}) == [Finish(reason="length", raw="max_tokens")]


def test_message_stop_reports_a_still_open_call_incomplete_then_finishes() -> None:
    adapter = started()
    feed(adapter, tool_block(0))
    feed(adapter, json_delta(0, '{"a"'))
    events = feed(adapter, {"type": "message_stop"})
    assert [type(e) for e in events] == [ToolCallDone, Finish]
    assert events[0].status == TOOL_INCOMPLETE


def test_close_without_message_stop_is_truncated_after_open_calls_incomplete() -> None:
    adapter = started()
    feed(adapter, tool_block(0))
    events = adapter.close()
    assert isinstance(events[0], ToolCallDone)
    assert (events[0].status, events[0].raw, events[0].arguments) == (TOOL_INCOMPLETE, "", None)
    assert isinstance(events[1], Error)
    assert (events[1].type, events[1].retryable) == ("upstream_truncated", True)
    assert adapter.done
    assert adapter.close() == []


def test_close_after_message_stop_says_nothing() -> None:
    adapter = started()
    feed(adapter, {"type": "message_stop"})
    assert adapter.close() == []


def test_initial_text_of_a_text_block_is_a_text_delta() -> None:
    adapter = started()
    block = {"type": "text", "text": "Hi"}
    events = feed(adapter, {"type": "content_block_start", "index": 0, "content_block": block})
    assert events == [TextDelta("Hi", 0)]


def test_tool_call_index_is_the_block_index() -> None:
    adapter = started()
    assert feed(adapter, tool_block(3, "toolu_9", "g")) == [ToolCallStart(3, "toolu_9", "g")]


@pytest.mark.parametrize(
    ("stop_reason", "normalised"),
    [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("stop_sequence", "stop"),
        ("tool_use", "tool_calls"),
        ("pause_turn", "pause"),
        ("refusal", "refusal"),
        ("something_new", "stop"),
    ],
)
def test_stop_reasons_are_normalised(stop_reason: str, normalised: str) -> None:
    adapter = started()
    delta = {"stop_reason": stop_reason}
    feed(adapter, {"type": "message_delta", "delta": delta, "usage": {"output_tokens": 1}})
    assert feed(adapter, {"type": "message_stop"}) == [Finish(reason=normalised, raw=stop_reason)]


@pytest.mark.parametrize(
    ("error_type", "kind", "retryable"),
    [
        ("overloaded_error", "overloaded", True),
        ("rate_limit_error", "rate_limited", True),
        ("api_error", "upstream_error", True),
        ("invalid_request_error", "invalid_request", False),
        ("authentication_error", "authentication", False),
    ],
)
def test_error_types_are_mapped(error_type: str, kind: str, retryable: bool) -> None:
    adapter = started()
    error = {"type": error_type, "message": "m"}
    [event] = feed(adapter, {"type": "error", "error": error})
    assert isinstance(event, Error)
    assert (event.type, event.retryable, event.message) == (kind, retryable, "m")


def test_ping_says_nothing() -> None:
    assert feed(started(), {"type": "ping"}) == []


def test_ping_and_empty_data_are_skipped_before_parsing() -> None:
    adapter = started()
    assert adapter.feed("ping", "") == []
    assert adapter.feed("content_block_delta", "") == []
    assert not adapter.done
