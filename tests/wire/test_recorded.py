"""The recorded provider streams (tests/fixtures/recorded) through decoder and adapter."""

from __future__ import annotations

from sluice.events import (
    TOOL_INCOMPLETE,
    TOOL_INVALID_JSON,
    TOOL_OK,
    Error,
    Finish,
    Start,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from tests.wire.wire_replay import (
    RECORDED,
    dones,
    fragments,
    reasoning_of,
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


# -- OpenAI Responses ----------------------------------------------------------------------


def test_responses_text_gives_its_text_and_usage() -> None:
    events = replay_file(RECORDED / "openai-responses-text.sse")
    assert text_of(events) == "2+2 = 4"
    assert sum(isinstance(e, TextDelta) for e in events) == 6
    assert usages(events)[-1] == Usage(input_tokens=20, output_tokens=10, final=True)
    assert terminal(events) == Finish(reason="stop", raw="completed")


def test_responses_function_call_after_commentary_is_a_tool_use() -> None:
    events = replay_file(RECORDED / "openai-responses-function-call.sse")
    assert text_of(events) == "I\u2019ll check the capital lookup tool for \u201cPotatoLand.\u201d"
    [start] = starts(events)
    assert (start.call_id, start.name) == ("call_LabG58Uhrq9kZvR52BYKjToD", "get_capital")
    assert fragments(events, start.index) == '{"country":"PotatoLand"}'
    assert sum(isinstance(e, ToolCallDelta) for e in events) == 7
    [done] = dones(events)
    assert (done.status, done.arguments) == (TOOL_OK, {"country": "PotatoLand"})
    usage = usages(events)[-1]
    assert (usage.input_tokens, usage.output_tokens, usage.reasoning_tokens) == (63, 69, 26)
    assert terminal(events) == Finish(reason="tool_calls", raw="completed")


def test_responses_reasoning_summary_keeps_its_four_parts_and_the_answer() -> None:
    events = replay_file(RECORDED / "openai-responses-reasoning-summary.sse")
    reasoning = reasoning_of(events)
    assert reasoning.startswith("**Providing street crossing instructions**")
    assert len(reasoning) == 460 + 517 + 540 + 505
    answer = text_of(events)
    assert answer.startswith("I'm not a road safety professional") and len(answer) == 1251
    usage = usages(events)[-1]
    assert (usage.input_tokens, usage.output_tokens, usage.reasoning_tokens) == (13, 1680, 1408)


def test_responses_of_2025_without_sequence_numbers_still_parse() -> None:
    events = replay_file(RECORDED / "openai-responses-legacy-no-sequence-number.sse")
    [done] = dones(events)
    assert (done.call_id, done.name, done.arguments) == (
        "call_kL0PCQV7M2WMoVX8V8OtYSAL",
        "get_capital",
        {"country": "France"},
    )
    assert sum(isinstance(e, ToolCallDelta) for e in events) == 5
    assert text_of(events) == ""
    assert usages(events)[-1] == Usage(input_tokens=255, output_tokens=16, final=True)


def test_responses_failure_is_an_error_not_an_empty_success() -> None:
    events = replay_file(RECORDED / "openai-responses-failed.sse")
    error = terminal(events)
    assert isinstance(error, Error)
    assert error.message.startswith("You exceeded your current quota")
    assert error.detail["code"] == "insufficient_quota"
    assert not usages(events)
