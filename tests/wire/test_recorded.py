"""The five recorded provider streams (tests/fixtures/recorded) through decoder and adapter."""

from __future__ import annotations

from sluice.events import (
    TOOL_INCOMPLETE,
    TOOL_INVALID_JSON,
    TOOL_OK,
    Finish,
    Start,
    ToolCallDelta,
    Usage,
)
from tests.wire.wire_replay import (
    RECORDED,
    dones,
    fragments,
    replay_file,
    starts,
    terminal,
    text_of,
    usages,
)


def test_anthropic_basic_gives_its_text_and_ends_with_stop() -> None:
    events = replay_file(RECORDED / "anthropic-basic.sse")
    assert events[0] == Start("msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK", "claude-3-opus-latest")
    assert text_of(events) == "Hello there!"
    assert terminal(events) == Finish(reason="stop", raw="end_turn")


def test_anthropic_basic_usage_is_replaced_not_added() -> None:
    events = replay_file(RECORDED / "anthropic-basic.sse")
    first, last = usages(events)
    assert (first.input_tokens, first.output_tokens, first.final) == (11, 1, False)
    assert (last.input_tokens, last.output_tokens, last.final) == (11, 6, True)


def test_anthropic_tool_use_parses_the_arguments_once() -> None:
    events = replay_file(RECORDED / "anthropic-tool-use.sse")
    [start] = starts(events)
    assert (start.index, start.call_id, start.name) == (
        1,
        "toolu_01NRLabsLyVHZPKxbKvkfSMn",
        "get_weather",
    )
    [done] = dones(events)
    assert done.status == TOOL_OK
    assert done.arguments == {"location": "Paris"}
    assert done.raw == '{"location": "Paris"}'
    assert done.parse_attempts == 1


def test_anthropic_tool_use_skips_the_empty_first_fragment() -> None:
    events = replay_file(RECORDED / "anthropic-tool-use.sse")
    assert fragments(events, 1) == '{"location": "Paris"}'
    assert all(e.fragment for e in events if isinstance(e, ToolCallDelta))


def test_anthropic_tool_use_text_usage_and_finish() -> None:
    events = replay_file(RECORDED / "anthropic-tool-use.sse")
    assert text_of(events) == "I'll check the current weather in Paris for you."
    assert usages(events)[-1] == Usage(input_tokens=377, output_tokens=65, final=True)
    assert terminal(events) == Finish(reason="tool_calls", raw="tool_use")


def test_anthropic_arguments_cut_by_max_tokens_are_incomplete_with_raw_text_kept() -> None:
    events = replay_file(RECORDED / "anthropic-tool-args-cut-by-max-tokens.sse")
    [done] = dones(events)
    assert done.status == TOOL_INCOMPLETE
    assert done.arguments is None
    assert done.raw.startswith('{"filename": "taxes.txt", "lines_of_text": [')
    assert done.raw.endswith('"Filing taxes')
    assert done.raw == fragments(events, 1)
    assert terminal(events) == Finish(reason="length", raw="max_tokens")


def test_anthropic_frames_padded_with_spaces_parse() -> None:
    events = replay_file(RECORDED / "anthropic-tool-args-cut-by-max-tokens.sse")
    assert text_of(events).startswith("I'll create a comprehensive tax guide")
    assert usages(events)[-1] == Usage(input_tokens=450, output_tokens=124, final=True)


def test_anthropic_invalid_arguments_are_an_explicit_error_with_raw_text_kept() -> None:
    events = replay_file(RECORDED / "anthropic-tool-args-invalid-json.sse")
    [done] = dones(events)
    assert done.status == TOOL_INVALID_JSON
    assert done.arguments is None
    assert done.raw == '{"location": "Paris", "unit": celsius}'
    assert done.error
    assert done.parse_attempts == 1
    assert terminal(events) == Finish(reason="tool_calls", raw="tool_use")


def test_openai_parallel_calls_both_parse() -> None:
    events = replay_file(RECORDED / "openai-chat-parallel-tools.sse")
    assert [(s.index, s.call_id, s.name) for s in starts(events)] == [
        (0, "call_lQnnsesjFMWMQ5IeWPHzR4th", "GetWeatherArgs"),
        (1, "call_2xjOUgaCdiwAcl9ZBL9LyMUU", "get_stock_price"),
    ]
    assert [(d.index, d.status, d.arguments) for d in dones(events)] == [
        (0, TOOL_OK, {"city": "Edinburgh", "country": "UK", "units": "c"}),
        (1, TOOL_OK, {"ticker": "AAPL", "exchange": "NASDAQ"}),
    ]


def test_openai_parallel_usage_comes_before_finish() -> None:
    events = replay_file(RECORDED / "openai-chat-parallel-tools.sse")
    assert events[0] == Start("chatcmpl-9tXjpPLJgivc9nyuBCCWX8HNg9L2J", "gpt-4o-2024-08-06")
    assert events[-2] == Usage(input_tokens=149, output_tokens=60, final=True)
    assert terminal(events) == Finish(reason="tool_calls", raw="tool_calls")
    assert text_of(events) == ""
