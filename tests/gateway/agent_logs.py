"""Hand-built event logs of agent runs, as ``AgentRun`` writes them, for the front-end
presenters' tests (rendered in Python, and replayed to the real AG-UI and AI SDK clients)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sluice import events as ev

#: a log's entries (None: a provider's frame that made no event)
Log = list[ev.Event | None]

USAGE_1 = {"input_tokens": 40, "output_tokens": 12, "reasoning_tokens": 5, "source": "provider"}
USAGE_2 = {"input_tokens": 90, "output_tokens": 8, "cache_read_tokens": 30, "source": "provider"}


def two_steps() -> Log:
    """Step 1: reasoning, a sentence, two tool calls whose fragments interleave; the gateway
    runs both (progress from one; the other times out). Step 2: the answer."""
    return [
        ev.StepStart(1),
        ev.Status("waiting"),
        ev.Start("resp-1", "agent-model"),
        ev.Status("thinking"),
        ev.ReasoningDelta("The user wants "),
        ev.ReasoningDelta("arithmetic and the time."),
        ev.TextDelta("Let me check "),
        ev.TextDelta("both."),
        ev.Status("tool", "calculator"),
        ev.ToolCallStart(0, "call_calc", "calculator"),
        ev.ToolCallDelta(0, '{"expression":'),
        ev.ToolCallStart(1, "call_clock", "clock"),
        ev.ToolCallDelta(0, ' "6*7"}'),
        ev.ToolCallDelta(1, "{}"),
        ev.ToolCallDone(
            0, "call_calc", "calculator", '{"expression": "6*7"}', {"expression": "6*7"}
        ),
        ev.ToolCallDone(1, "call_clock", "clock", "{}", {}),
        ev.Usage(40, 12, reasoning_tokens=5, final=True),
        ev.Finish(ev.FINISH_TOOL_CALLS, "tool_calls"),
        ev.Status("tool", "calculator, clock"),
        ev.ToolStart("call_calc", "calculator", "calculator", {"expression": "6*7"}),
        ev.ToolStart("call_clock", "clock", "clock", {}),
        ev.ToolProgress("call_calc", 0.5, 1.0, "halfway"),
        ev.ToolEnd("call_calc", "calculator", 0.01, "42"),
        ev.ToolEnd(
            "call_clock",
            "clock",
            30.0,
            "tool_timeout: no result within 30 s",
            True,
            "tool_timeout",
        ),
        ev.StepEnd(1, ev.FINISH_TOOL_CALLS, USAGE_1, 30.2),
        ev.StepStart(2),
        ev.Status("waiting"),
        ev.Start("resp-2", "agent-model"),
        ev.TextDelta("6*7 is "),
        ev.TextDelta(""),
        ev.TextDelta("42; the clock timed out."),
        ev.Usage(90, 8, cache_read_tokens=30, final=True),
        ev.Finish(ev.FINISH_STOP, "stop"),
        ev.StepEnd(2, ev.FINISH_STOP, USAGE_2, 0.3),
    ]


def stop_while_streaming() -> Log:
    """Stop in the middle of the model's turn: a call's arguments cut short."""
    return [
        ev.StepStart(1),
        ev.Status("waiting"),
        ev.Start("resp-1", "agent-model"),
        ev.TextDelta("Working on "),
        ev.Status("tool", "calculator"),
        ev.ToolCallStart(0, "call_calc", "calculator"),
        ev.ToolCallDelta(0, '{"expr'),
        ev.ToolCallDone(
            0,
            "call_calc",
            "calculator",
            '{"expr',
            None,
            ev.TOOL_INCOMPLETE,
            "the stream ended inside the call",
        ),
        ev.Error("cancelled", "stopped: user"),
    ]


def stop_during_tools() -> Log:
    """Stop while the gateway runs the step's tool."""
    return [
        ev.StepStart(1),
        ev.Start("resp-1", "agent-model"),
        ev.ToolCallStart(0, "call_calc", "calculator"),
        ev.ToolCallDelta(0, '{"expression": "2**10"}'),
        ev.ToolCallDone(
            0, "call_calc", "calculator", '{"expression": "2**10"}', {"expression": "2**10"}
        ),
        ev.Finish(ev.FINISH_TOOL_CALLS),
        ev.ToolStart("call_calc", "calculator", "calculator", {"expression": "2**10"}),
        ev.ToolEnd("call_calc", "calculator", 0.2, "stopped", True, "cancelled"),
        ev.Error("cancelled", "stopped: user"),
    ]


def retried() -> Log:
    """An attempt cut short, a Retry, and the whole run again."""
    return [
        ev.StepStart(1),
        ev.Start("resp-1", "agent-model"),
        ev.ReasoningDelta("Hmm"),
        ev.TextDelta("The first"),
        ev.Retry(2, "overloaded", 0.5),
        ev.StepStart(1),
        ev.Start("resp-2", "agent-model"),
        ev.TextDelta("The whole answer."),
        ev.Finish(ev.FINISH_STOP),
        ev.StepEnd(1, ev.FINISH_STOP, None, 0.2),
    ]


def failed() -> Log:
    """The upstream fails mid-answer (its own error frame made no event)."""
    return [
        ev.StepStart(1),
        ev.Start("resp-1", "agent-model"),
        ev.TextDelta("Half an"),
        None,
        ev.Error("overloaded", "the upstream is overloaded", True, 529),
    ]


def max_steps() -> Log:
    """The last allowed step still asks for a tool."""
    return [
        ev.StepStart(1),
        ev.Start("resp-1", "agent-model"),
        ev.ToolCallStart(0, "call_1", "clock"),
        ev.ToolCallDone(0, "call_1", "clock", "{}", {}),
        ev.Finish(ev.FINISH_TOOL_CALLS),
        ev.ToolStart("call_1", "clock", "clock", {}),
        ev.ToolEnd("call_1", "clock", 0.0, "2026-05-01T12:00:00Z"),
        ev.StepEnd(1, ev.FINISH_TOOL_CALLS, None, 0.1),
        ev.Error("max_steps", "the model still asked for tools after 1 steps"),
    ]


def whole_calls() -> Log:
    """A provider that tells each call whole (no start, no fragments), and a call the model's
    stream never showed (only the gateway's ToolStart)."""
    return [
        ev.StepStart(1),
        ev.Start("resp-1", "agent-model"),
        ev.ToolCallDone(0, "call_a", "clock", "{}", {}),
        ev.Finish(ev.FINISH_TOOL_CALLS),
        ev.ToolStart("call_a", "clock", "clock", {}),
        ev.ToolStart("call_b", "calculator", "calculator", {"expression": "1+1"}),
        ev.ToolEnd("call_a", "clock", 0.0, "2026-05-01T12:00:00Z"),
        ev.ToolEnd("call_b", "calculator", 0.0, "2"),
        ev.StepEnd(1, ev.FINISH_TOOL_CALLS, None, 0.1),
        ev.StepStart(2),
        ev.Start("resp-2", "agent-model"),
        ev.TextDelta("Done."),
        ev.Finish(ev.FINISH_LENGTH),
        ev.StepEnd(2, ev.FINISH_LENGTH, None, 0.1),
    ]


def refused() -> Log:
    """The upstream refused before streaming."""
    return [
        ev.StepStart(1),
        ev.Status("waiting"),
        ev.Error("rate_limited", "slow down", True, 429),
    ]


LOGS: dict[str, Callable[[], Log]] = {
    "two_steps": two_steps,
    "stop_while_streaming": stop_while_streaming,
    "stop_during_tools": stop_during_tools,
    "retried": retried,
    "failed": failed,
    "max_steps": max_steps,
    "whole_calls": whole_calls,
    "refused": refused,
    "empty": list,
}


def present(presenter: Any, log: list[ev.Event | None]) -> bytes:
    """What ``SessionStream`` writes with a presenter that follows finalisation: every entry
    rendered (None: a frame of the provider's own that made no event), then ``close()``."""
    out = b""
    for seq, event in enumerate(log, 1):
        out += presenter.render(seq, event, b"" if event is not None else b"data: {}\n\n")
    return bytes(out + presenter.close())
