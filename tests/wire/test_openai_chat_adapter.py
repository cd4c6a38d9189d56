"""ChatStreamAdapter: Chat Completions chunks -> normalised events."""

from __future__ import annotations

import orjson
import pytest

from sluice.events import (
    TOOL_INCOMPLETE,
    TOOL_OK,
    Error,
    Finish,
    ReasoningDelta,
    Start,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from sluice.wire.openai_chat import ChatStreamAdapter
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


def chunk(
    delta: dict[str, object] | None = None, finish: str | None = None, **extra: object
) -> str:
    body: dict[str, object] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
    }
    body.update(extra)
    return orjson.dumps(body).decode()


def tool(index: int, arguments: str, call_id: str | None = None, name: str | None = None) -> str:
    fragment: dict[str, object] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        fragment |= {"id": call_id, "type": "function"}
        fragment["function"] = {"name": name, "arguments": arguments}
    return chunk({"tool_calls": [fragment]})


# -- transcripts ---------------------------------------------------------------------------


def test_reasoning_content_becomes_reasoning_deltas_before_the_text() -> None:
    events = replay_file(HANDMADE / "chat-reasoning-content.sse")
    assert reasoning_of(events) == "The user greets me. A short reply fits."
    assert text_of(events) == "Hello! How can I help?"
    kinds = [type(e) for e in events if isinstance(e, TextDelta | ReasoningDelta)]
    assert kinds == [ReasoningDelta, ReasoningDelta, TextDelta, TextDelta]


def test_reasoning_content_usage_details_are_read() -> None:
    events = replay_file(HANDMADE / "chat-reasoning-content.sse")
    assert usages(events) == [
        Usage(
            input_tokens=12,
            output_tokens=40,
            cache_read_tokens=8,
            reasoning_tokens=31,
            final=True,
        )
    ]
    assert terminal(events) == Finish(reason="stop", raw="stop")


def test_reasoning_field_of_vllm_becomes_reasoning_deltas() -> None:
    events = replay_file(HANDMADE / "chat-reasoning-field.sse")
    assert reasoning_of(events) == "Two plus two is four."
    assert text_of(events) == "4"
    assert events[0] == Start("chatcmpl-v1", "Qwen/Qwen3-8B")


def test_close_after_finish_reason_without_done_finishes() -> None:
    events = replay_file(HANDMADE / "chat-no-done.sse")
    assert text_of(events) == "No terminator here."
    assert terminal(events) == Finish(reason="length", raw="length")


def test_body_ending_without_finish_reason_is_truncated_and_open_calls_incomplete() -> None:
    events = replay_file(HANDMADE / "chat-truncated.sse")
    [done] = dones(events)
    assert (done.status, done.arguments, done.raw) == (TOOL_INCOMPLETE, None, '{"query": "tid')
    error = terminal(events)
    assert isinstance(error, Error)
    assert (error.type, error.retryable) == ("upstream_truncated", True)


def test_error_frame_is_a_typed_terminal_error() -> None:
    events = replay_file(HANDMADE / "chat-error.sse")
    assert text_of(events) == "Partial"
    error = terminal(events)
    assert isinstance(error, Error)
    assert (error.type, error.retryable) == ("upstream_error", True)
    assert error.message.startswith("The server had an error")


def test_malformed_json_is_a_terminal_protocol_error() -> None:
    events = replay_file(HANDMADE / "chat-malformed-json.sse")
    assert text_of(events) == "Before"
    error = terminal(events)
    assert isinstance(error, Error)
    assert error.type == "upstream_protocol"
    assert error.message == "malformed JSON in a OpenAI Chat stream frame"
    assert error.retryable


def test_tool_with_only_an_empty_fragment_has_empty_object_arguments() -> None:
    events = replay_file(HANDMADE / "chat-tool-no-args.sse")
    [done] = dones(events)
    assert (done.name, done.status, done.arguments, done.raw) == ("get_time", TOOL_OK, {}, "")
    assert not [e for e in events if isinstance(e, ToolCallDelta)]
    assert terminal(events) == Finish(reason="tool_calls", raw="tool_calls")


def test_unknown_fields_other_choices_and_azure_filter_chunk_are_ignored() -> None:
    events = replay_file(HANDMADE / "chat-unknown-fields.sse")
    assert events[0] == Start("chatcmpl-u1", "gpt-4o-2024-11-20")
    assert text_of(events) == "Hi there"
    assert usages(events) == []


def test_unknown_finish_reason_is_stop_with_the_raw_word_kept() -> None:
    events = replay_file(HANDMADE / "chat-unknown-fields.sse")
    assert terminal(events) == Finish(reason="stop", raw="end_of_turn_unknown")


# -- single behaviours ---------------------------------------------------------------------


def test_finish_waits_for_done_so_usage_comes_first() -> None:
    adapter = ChatStreamAdapter()
    adapter.feed("message", chunk({"content": "x"}))
    assert adapter.feed("message", chunk({}, "stop")) == []
    assert not adapter.done
    usage = orjson.dumps({"id": "c", "choices": [], "usage": {"prompt_tokens": 3}}).decode()
    assert adapter.feed("message", usage) == [Usage(input_tokens=3, final=True)]
    assert adapter.feed("message", "[DONE]") == [Finish(reason="stop", raw="stop")]
    assert adapter.done


def test_usage_only_frame_is_flagged_and_other_frames_are_not() -> None:
    adapter = ChatStreamAdapter()
    adapter.feed("message", chunk({"content": "x"}, usage=None))
    assert adapter.last_was_usage_only is False
    adapter.feed("message", chunk({}, "stop"))
    assert adapter.last_was_usage_only is False
    adapter.feed("message", orjson.dumps({"choices": [], "usage": {"prompt_tokens": 1}}).decode())
    assert adapter.last_was_usage_only is True
    adapter.feed("message", "[DONE]")
    assert adapter.last_was_usage_only is False


def test_usage_with_null_details_reads_as_zero() -> None:
    adapter = ChatStreamAdapter()
    body = {
        "choices": [],
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": None,
            "prompt_tokens_details": None,
            "completion_tokens_details": {"reasoning_tokens": None},
        },
    }
    events = adapter.feed("message", orjson.dumps(body).decode())
    assert events[-1] == Usage(input_tokens=5, final=True)


def test_interleaved_tool_calls_close_in_index_order_at_finish_reason() -> None:
    adapter = ChatStreamAdapter()
    events = adapter.feed("message", tool(1, '{"b"', "call_b", "b"))
    events += adapter.feed("message", tool(0, '{"a"', "call_a", "a"))
    events += adapter.feed("message", tool(1, ": 2}"))
    events += adapter.feed("message", tool(0, ": 1}"))
    events += adapter.feed("message", chunk({}, "tool_calls"))
    assert [(s.index, s.call_id) for s in starts(events)] == [(1, "call_b"), (0, "call_a")]
    assert [(d.index, d.arguments) for d in dones(events)] == [(0, {"a": 1}), (1, {"b": 2})]


def test_a_call_cut_by_the_output_limit_is_incomplete_not_parsed() -> None:
    adapter = ChatStreamAdapter()
    events = adapter.feed("message", tool(0, '{"query": "ti', "call_a", "search"))
    events += adapter.feed("message", chunk({}, "length"))
    events += adapter.feed("message", "[DONE]")
    [done] = dones(events)
    assert (done.status, done.arguments, done.raw) == (TOOL_INCOMPLETE, None, '{"query": "ti')
    finish = terminal(events)
    assert isinstance(finish, Finish) and finish.raw == "length"


def test_tool_call_start_comes_only_from_the_first_fragment_of_an_index() -> None:
    adapter = ChatStreamAdapter()
    events = adapter.feed("message", tool(0, "", "call_a", "a"))
    events += adapter.feed("message", tool(0, "{}"))
    assert events[1:] == [ToolCallStart(0, "call_a", "a"), ToolCallDelta(0, "{}")]


def test_fragments_after_the_finish_reason_for_a_closed_call_are_ignored() -> None:
    adapter = ChatStreamAdapter()
    adapter.feed("message", tool(0, "{}", "call_a", "a"))
    adapter.feed("message", chunk({}, "tool_calls"))
    assert adapter.feed("message", tool(0, "garbage")) == []
    assert adapter.feed("message", "[DONE]") == [Finish(reason="tool_calls", raw="tool_calls")]


@pytest.mark.parametrize(
    ("reason", "normalised"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("content_filter", "content_filter"),
        ("function_call", "tool_calls"),
        ("eos", "stop"),
    ],
)
def test_finish_reasons_are_normalised(reason: str, normalised: str) -> None:
    adapter = ChatStreamAdapter()
    adapter.feed("message", chunk({}, reason))
    assert adapter.feed("message", "[DONE]") == [Finish(reason=normalised, raw=reason)]


def test_done_without_any_finish_reason_is_truncated() -> None:
    adapter = ChatStreamAdapter()
    adapter.feed("message", chunk({"content": "x"}))
    [error] = adapter.feed("message", "[DONE]")
    assert isinstance(error, Error)
    assert error.type == "upstream_truncated"


@pytest.mark.parametrize(
    ("error", "kind", "retryable", "status"),
    [
        (
            {"type": "requests", "code": "rate_limit_exceeded", "message": "slow"},
            "rate_limited",
            True,
            None,
        ),
        ({"type": "server_error", "code": None, "message": "boom"}, "upstream_error", True, None),
        ({"type": "overloaded", "message": "busy"}, "overloaded", True, None),
        ({"code": 503, "message": "unavailable"}, "overloaded", True, 503),
        ({"code": "429", "message": "slow"}, "rate_limited", True, 429),
        ({"type": "invalid_request_error", "message": "bad"}, "upstream_error", False, None),
        ("a bare string", "upstream_error", False, None),
    ],
)
def test_error_frames_are_classified(
    error: object, kind: str, retryable: bool, status: int | None
) -> None:
    adapter = ChatStreamAdapter()
    [event] = adapter.feed("message", orjson.dumps({"error": error}).decode())
    assert isinstance(event, Error)
    assert (event.type, event.retryable, event.status) == (kind, retryable, status)
    assert adapter.done


def test_input_after_a_terminal_event_is_ignored() -> None:
    adapter = ChatStreamAdapter()
    adapter.feed("message", chunk({}, "stop"))
    adapter.feed("message", "[DONE]")
    assert adapter.feed("message", chunk({"content": "late"})) == []
    assert adapter.close() == []


def test_non_object_json_is_a_protocol_error() -> None:
    [error] = ChatStreamAdapter().feed("message", "[1, 2]")
    assert isinstance(error, Error)
    assert error.type == "upstream_protocol"
