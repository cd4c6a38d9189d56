"""ResponsesStreamAdapter: Responses frames -> normalised events."""

from __future__ import annotations

from typing import Any

import orjson

from sluice.events import (
    TOOL_INCOMPLETE,
    TOOL_INVALID_JSON,
    TOOL_OK,
    Error,
    Finish,
    ReasoningDelta,
    Start,
    TextDelta,
    Usage,
)
from sluice.wire.openai_responses import ResponsesStreamAdapter
from tests.wire.wire_replay import (
    HANDMADE,
    dones,
    fragments,
    reasoning_of,
    replay_file,
    starts,
    terminal,
    text_of,
    usages,
)


def feed(adapter: ResponsesStreamAdapter, frame: dict[str, Any]) -> list[Any]:
    return adapter.feed(frame["type"], orjson.dumps(frame).decode())


def with_call(index: int = 0) -> ResponsesStreamAdapter:
    adapter = ResponsesStreamAdapter()
    feed(adapter, {"type": "response.created", "response": {"id": "resp_1", "model": "m"}})
    item = {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_1",
        "name": "f",
        "arguments": "",
    }
    feed(adapter, {"type": "response.output_item.added", "output_index": index, "item": item})
    return adapter


def args_delta(index: int, fragment: str) -> dict[str, Any]:
    return {
        "type": "response.function_call_arguments.delta",
        "output_index": index,
        "delta": fragment,
    }


# -- transcripts ---------------------------------------------------------------------------


def test_text_transcript_gives_start_text_usage_and_stop() -> None:
    events = replay_file(HANDMADE / "responses-text.sse")
    assert events[0] == Start(
        "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b", "gpt-4.1-2025-04-14"
    )
    assert text_of(events) == "Hi there!"
    assert usages(events) == [Usage(input_tokens=37, output_tokens=11, final=True)]
    assert terminal(events) == Finish(reason="stop", raw="completed")


def test_function_calls_parse_and_finish_as_tool_calls() -> None:
    events = replay_file(HANDMADE / "responses-function-calls.sse")
    assert [(s.index, s.call_id, s.name) for s in starts(events)] == [
        (0, "call_weather", "get_weather"),
        (1, "call_stock", "get_stock_price"),
    ]
    assert [(d.index, d.status, d.arguments) for d in dones(events)] == [
        (0, TOOL_OK, {"location": "Paris"}),
        (1, TOOL_OK, {"ticker": "AAPL"}),
    ]
    assert fragments(events, 0) == '{"location": "Paris"}'
    assert terminal(events) == Finish(reason="tool_calls", raw="completed")


def test_reasoning_summary_is_reasoning_and_usage_details_are_read() -> None:
    events = replay_file(HANDMADE / "responses-reasoning-summary.sse")
    assert reasoning_of(events) == "**Adding numbers**\n\nTwo and two make four."
    assert text_of(events) == "4"
    assert usages(events) == [
        Usage(
            input_tokens=1200,
            output_tokens=310,
            cache_read_tokens=1024,
            reasoning_tokens=256,
            final=True,
        )
    ]
    assert terminal(events) == Finish(reason="stop", raw="completed")


def test_failed_response_is_a_terminal_error() -> None:
    events = replay_file(HANDMADE / "responses-failed.sse")
    assert text_of(events) == "Par"
    error = terminal(events)
    assert isinstance(error, Error)
    assert (error.type, error.retryable) == ("upstream_error", True)
    assert error.message == "The model failed to generate a response."


def test_incomplete_response_finishes_length_with_the_open_call_incomplete() -> None:
    events = replay_file(HANDMADE / "responses-incomplete.sse")
    [done] = dones(events)
    assert (done.status, done.arguments) == (TOOL_INCOMPLETE, None)
    assert done.raw == '{"path": "notes.txt", "body": "Once upon'
    assert usages(events) == [Usage(input_tokens=80, output_tokens=64, final=True)]
    assert terminal(events) == Finish(reason="length", raw="max_output_tokens")


def test_error_frame_is_a_terminal_rate_limit() -> None:
    events = replay_file(HANDMADE / "responses-error.sse")
    error = terminal(events)
    assert isinstance(error, Error)
    assert (error.type, error.retryable) == ("rate_limited", True)


def test_tool_with_empty_arguments_has_empty_object_arguments() -> None:
    events = replay_file(HANDMADE / "responses-tool-no-args.sse")
    [done] = dones(events)
    assert (done.name, done.status, done.arguments, done.raw) == ("get_time", TOOL_OK, {}, "")


def test_unknown_events_items_and_fields_are_ignored() -> None:
    events = replay_file(HANDMADE / "responses-unknown-events.sse")
    assert text_of(events) == "Sluice is a gateway."
    assert starts(events) == []
    assert terminal(events) == Finish(reason="stop", raw="completed")


def test_malformed_frame_is_a_terminal_protocol_error() -> None:
    events = replay_file(HANDMADE / "responses-malformed-json.sse")
    error = terminal(events)
    assert isinstance(error, Error)
    assert error.message == "malformed JSON in a OpenAI Responses stream frame"


# -- single behaviours ---------------------------------------------------------------------


def test_done_arguments_field_wins_over_the_fragments() -> None:
    adapter = with_call()
    feed(adapter, args_delta(0, '{"a": 1'))
    [done] = feed(
        adapter,
        {
            "type": "response.function_call_arguments.done",
            "output_index": 0,
            "arguments": '{"a": 2}',
        },
    )
    assert (done.arguments, done.raw) == ({"a": 2}, '{"a": 2}')


def test_done_without_arguments_field_uses_the_fragments() -> None:
    adapter = with_call()
    feed(adapter, args_delta(0, '{"a": 1}'))
    [done] = feed(adapter, {"type": "response.function_call_arguments.done", "output_index": 0})
    assert done.arguments == {"a": 1}


def test_output_item_done_ends_a_call_that_had_no_arguments_done_frame() -> None:
    adapter = with_call()
    item = {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "[1]"}
    [done] = feed(adapter, {"type": "response.output_item.done", "output_index": 0, "item": item})
    assert (done.status, done.raw) == (TOOL_INVALID_JSON, "[1]")
    assert done.error == "arguments are a JSON array, not an object"


def test_reasoning_text_delta_is_reasoning() -> None:
    adapter = ResponsesStreamAdapter()
    frame = {"type": "response.reasoning_text.delta", "output_index": 2, "delta": "hm"}
    assert feed(adapter, frame) == [ReasoningDelta("hm", 2)]


def test_text_delta_index_is_the_output_index() -> None:
    adapter = ResponsesStreamAdapter()
    frame = {"type": "response.output_text.delta", "output_index": 1, "delta": "x"}
    assert feed(adapter, frame) == [TextDelta("x", 1)]


def test_content_filter_incomplete_finishes_content_filter() -> None:
    adapter = ResponsesStreamAdapter()
    response = {"status": "incomplete", "incomplete_details": {"reason": "content_filter"}}
    events = feed(adapter, {"type": "response.incomplete", "response": response})
    assert events == [Finish(reason="content_filter", raw="content_filter")]


def test_close_without_a_terminal_frame_is_truncated() -> None:
    adapter = with_call()
    events = adapter.close()
    assert [type(e).__name__ for e in events] == ["ToolCallDone", "Error"]
    assert isinstance(events[1], Error)
    assert events[1].type == "upstream_truncated"


def test_event_name_is_used_when_the_data_has_no_type() -> None:
    adapter = ResponsesStreamAdapter()
    assert adapter.feed("response.output_text.delta", '{"delta": "x"}') == [TextDelta("x", 0)]
