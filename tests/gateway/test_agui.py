"""The AG-UI presenter over hand-built agent logs, checked against the protocol's rules (the
TypeScript client's ``verify``, its schemas' required fields, camelCase keys, no nulls, LF
framing), and the mapping of a ``RunAgentInput`` to the run's messages."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from sluice import events as ev
from sluice.errors import BadRequest
from sluice.gateway.agui import AGUIPresenter, run_input
from tests.gateway.agent_logs import LOGS, Log, present

SESSION = "op-0123abcd"

#: each event type's required keys besides ``type`` (@ag-ui/core 1.0.0's schemas)
REQUIRED = {
    "RUN_STARTED": {"threadId", "runId"},
    "RUN_FINISHED": {"threadId", "runId"},
    "RUN_ERROR": {"message"},
    "STEP_STARTED": {"stepName"},
    "STEP_FINISHED": {"stepName"},
    "TEXT_MESSAGE_START": {"messageId"},
    "TEXT_MESSAGE_CONTENT": {"messageId", "delta"},
    "TEXT_MESSAGE_END": {"messageId"},
    "TOOL_CALL_START": {"toolCallId", "toolCallName"},
    "TOOL_CALL_ARGS": {"toolCallId", "delta"},
    "TOOL_CALL_END": {"toolCallId"},
    "TOOL_CALL_RESULT": {"messageId", "toolCallId", "content"},
    "REASONING_START": {"messageId"},
    "REASONING_END": {"messageId"},
    "REASONING_MESSAGE_START": {"messageId", "role"},
    "REASONING_MESSAGE_CONTENT": {"messageId", "delta"},
    "REASONING_MESSAGE_END": {"messageId"},
    "CUSTOM": {"name", "value"},
}
CAMEL = re.compile(r"[a-z][A-Za-z0-9]*")


def parse(body: bytes) -> list[dict[str, Any]]:
    """The events of an AG-UI body, split as the TypeScript client splits it (on LF LF)."""
    assert b"\r" not in body
    assert body.endswith(b"\n\n")
    events = []
    for block in body[:-2].split(b"\n\n"):
        assert block.startswith(b"data: ") and b"\n" not in block, block
        events.append(orjson.loads(block[6:]))
    return events


def no_nulls_and_camel_keys(value: Any, top: bool = True) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert item is not None, f"null under {key!r}"
            if top:  # (a CUSTOM value or tool arguments are the application's own)
                assert CAMEL.fullmatch(key), key
            no_nulls_and_camel_keys(item, top and key not in ("value", "result", "metadata"))
    elif isinstance(value, list):
        for item in value:
            no_nulls_and_camel_keys(item, top)


def verify(events: list[dict[str, Any]]) -> None:
    """The rules of @ag-ui/client's ``verifyEvents``, for one run."""
    texts: set[str] = set()
    calls: set[str] = set()
    spans: set[str] = set()
    thoughts: set[str] = set()
    steps: set[str] = set()
    finished = errored = False
    for i, event in enumerate(events):
        kind = event["type"]
        assert kind in REQUIRED, kind
        assert REQUIRED[kind] <= set(event), event
        no_nulls_and_camel_keys(event)
        assert not errored, f"{kind} after RUN_ERROR"
        assert not finished or kind == "RUN_ERROR", f"{kind} after RUN_FINISHED"
        if i == 0:
            assert kind in ("RUN_STARTED", "RUN_ERROR")
        else:
            assert kind != "RUN_STARTED", "a second RUN_STARTED in an active run"
        match kind:
            case "TEXT_MESSAGE_START":
                assert event["messageId"] not in texts
                texts.add(event["messageId"])
            case "TEXT_MESSAGE_CONTENT":
                assert event["messageId"] in texts
            case "TEXT_MESSAGE_END":
                texts.remove(event["messageId"])
            case "TOOL_CALL_START":
                assert event["toolCallId"] not in calls
                calls.add(event["toolCallId"])
            case "TOOL_CALL_ARGS":
                assert event["toolCallId"] in calls
            case "TOOL_CALL_END":
                calls.remove(event["toolCallId"])
            case "REASONING_START":
                assert event["messageId"] not in spans
                spans.add(event["messageId"])
            case "REASONING_END":
                spans.remove(event["messageId"])
            case "REASONING_MESSAGE_START":
                assert event["messageId"] not in thoughts and event["role"] == "reasoning"
                thoughts.add(event["messageId"])
            case "REASONING_MESSAGE_CONTENT":
                assert event["messageId"] in thoughts
            case "REASONING_MESSAGE_END":
                thoughts.remove(event["messageId"])
            case "STEP_STARTED":
                assert event["stepName"] not in steps
                steps.add(event["stepName"])
            case "STEP_FINISHED":
                steps.remove(event["stepName"])
            case "RUN_FINISHED":
                assert not (texts or calls or spans or thoughts or steps), "open at RUN_FINISHED"
                finished = True
            case "RUN_ERROR":
                errored = True
    assert finished or errored, "the run never ended"


def render(log: Log, thread: str = "thread-1", run: str = "run-1") -> list[dict[str, Any]]:
    return parse(present(AGUIPresenter(thread, run, SESSION), log))


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


@pytest.mark.parametrize("name", sorted(LOGS))
def test_every_log_renders_a_run_the_client_verifies(name: str) -> None:
    events = render(LOGS[name]())
    verify(events)
    assert events[0] == {
        "type": "RUN_STARTED",
        "threadId": "thread-1",
        "runId": "run-1",
        "metadata": {"sessionId": SESSION},
    }


def test_two_steps_with_parallel_calls_in_order() -> None:
    events = render(LOGS["two_steps"]())
    m1, m2, r1 = f"{SESSION}-m1", f"{SESSION}-m2", f"{SESSION}-r1"
    status = [e["value"] for e in events if e["type"] == "CUSTOM" and e["name"] == "sluice.status"]
    assert status == [
        {"phase": "waiting"},
        {"phase": "thinking"},
        {"phase": "tool", "detail": "calculator"},
        {"phase": "tool", "detail": "calculator, clock"},
        {"phase": "waiting"},
    ]
    shown = [e for e in events if e["type"] != "CUSTOM"]
    assert [
        (e["type"], e.get("messageId") or e.get("toolCallId") or e.get("stepName")) for e in shown
    ] == [
        ("RUN_STARTED", None),
        ("STEP_STARTED", "step 1"),
        ("REASONING_START", r1),
        ("REASONING_MESSAGE_START", r1),
        ("REASONING_MESSAGE_CONTENT", r1),
        ("REASONING_MESSAGE_CONTENT", r1),
        ("REASONING_MESSAGE_END", r1),
        ("REASONING_END", r1),
        ("TEXT_MESSAGE_START", m1),
        ("TEXT_MESSAGE_CONTENT", m1),
        ("TEXT_MESSAGE_CONTENT", m1),
        ("TEXT_MESSAGE_END", m1),
        ("TOOL_CALL_START", "call_calc"),
        ("TOOL_CALL_ARGS", "call_calc"),
        ("TOOL_CALL_START", "call_clock"),
        ("TOOL_CALL_ARGS", "call_calc"),
        ("TOOL_CALL_ARGS", "call_clock"),
        ("TOOL_CALL_END", "call_calc"),
        ("TOOL_CALL_END", "call_clock"),
        ("TOOL_CALL_RESULT", f"{SESSION}-t1"),
        ("TOOL_CALL_RESULT", f"{SESSION}-t2"),
        ("STEP_FINISHED", "step 1"),
        ("STEP_STARTED", "step 2"),
        ("TEXT_MESSAGE_START", m2),
        ("TEXT_MESSAGE_CONTENT", m2),
        ("TEXT_MESSAGE_CONTENT", m2),
        ("TEXT_MESSAGE_END", m2),
        ("STEP_FINISHED", "step 2"),
        ("RUN_FINISHED", None),
    ]
    # the calls belong to step 1's assistant message; their arguments are the model's text
    starts = [e for e in events if e["type"] == "TOOL_CALL_START"]
    assert {e["toolCallName"]: e["parentMessageId"] for e in starts} == {
        "calculator": m1,
        "clock": m1,
    }
    args = "".join(
        e["delta"] for e in events if e.get("toolCallId") == "call_calc" and "delta" in e
    )
    assert orjson.loads(args) == {"expression": "6*7"}
    text = {
        m: "".join(
            e["delta"]
            for e in events
            if e["type"] == "TEXT_MESSAGE_CONTENT" and e["messageId"] == m
        )
        for m in (m1, m2)
    }
    assert text == {m1: "Let me check both.", m2: "6*7 is 42; the clock timed out."}
    thought = "".join(e["delta"] for e in events if e["type"] == "REASONING_MESSAGE_CONTENT")
    assert thought == "The user wants arithmetic and the time."
    results = {e["toolCallId"]: e for e in events if e["type"] == "TOOL_CALL_RESULT"}
    assert results["call_calc"] == {
        "type": "TOOL_CALL_RESULT",
        "messageId": f"{SESSION}-t1",
        "toolCallId": "call_calc",
        "content": "42",
        "role": "tool",
    }
    assert results["call_clock"]["content"].startswith("tool_timeout:")
    assert results["call_clock"]["metadata"] == {"isError": True, "error": "tool_timeout"}
    progress = [e for e in events if e.get("name") == "sluice.tool_progress"]
    assert [e["value"] for e in progress] == [
        {"toolCallId": "call_calc", "progress": 0.5, "total": 1.0, "message": "halfway"}
    ]
    # the progress comes between the calls' ends and their results
    order = types(events)
    assert (
        order.index("TOOL_CALL_END") < events.index(progress[0]) < order.index("TOOL_CALL_RESULT")
    )
    assert events[-1] == {
        "type": "RUN_FINISHED",
        "threadId": "thread-1",
        "runId": "run-1",
        "outcome": {"type": "success"},
        "result": {"finishReason": "stop"},
        "usage": [
            {
                "model": "agent-model",
                "inputTokens": 130,
                "outputTokens": 20,
                "totalTokens": 150,
                "reasoningTokens": 5,
                "cachedInputTokens": 30,
            }
        ],
    }


def test_a_stop_while_streaming_ends_the_call_and_the_step_then_run_error_cancelled() -> None:
    events = render(LOGS["stop_while_streaming"]())
    assert types(events)[-6:] == [
        "TEXT_MESSAGE_END",
        "TOOL_CALL_START",
        "TOOL_CALL_ARGS",
        "TOOL_CALL_END",
        "STEP_FINISHED",
        "RUN_ERROR",
    ]
    assert events[-1] == {"type": "RUN_ERROR", "message": "stopped: user", "code": "cancelled"}


def test_a_stop_during_tools_tells_the_cancelled_call_then_run_error() -> None:
    events = render(LOGS["stop_during_tools"]())
    result = next(e for e in events if e["type"] == "TOOL_CALL_RESULT")
    assert result["content"] == "stopped"
    assert result["metadata"] == {"isError": True, "error": "cancelled"}
    assert types(events)[-3:] == ["TOOL_CALL_RESULT", "STEP_FINISHED", "RUN_ERROR"]
    assert events[-1]["code"] == "cancelled"


def test_a_retry_closes_the_attempt_and_goes_on_in_the_same_run() -> None:
    events = render(LOGS["retried"]())
    retry = next(e for e in events if e.get("name") == "sluice.retry")
    assert retry["value"] == {"attempt": 2, "reason": "overloaded", "delay": 0.5}
    before = events[: events.index(retry)]
    after = events[events.index(retry) + 1 :]
    # everything of the first attempt is closed before the retry is told
    assert types(before)[-5:] == [
        "REASONING_END",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "STEP_FINISHED",
    ]
    # the new attempt: step 1 again, a new assistant message
    assert after[0] == {"type": "STEP_STARTED", "stepName": "step 1"}
    new_text = [e for e in after if e["type"] == "TEXT_MESSAGE_CONTENT"]
    assert [e["delta"] for e in new_text] == ["The whole answer."]
    assert new_text[0]["messageId"] == f"{SESSION}-m2"
    assert events[-1]["type"] == "RUN_FINISHED"


def test_an_error_is_run_error_with_its_type_as_code_and_nothing_after() -> None:
    events = render(LOGS["failed"]())
    assert events[-1] == {
        "type": "RUN_ERROR",
        "message": "the upstream is overloaded",
        "code": "overloaded",
    }
    presenter = AGUIPresenter("t", "r", SESSION)
    for event in LOGS["failed"]():
        presenter.render(1, event, b"")
    assert presenter.finished
    assert presenter.render(9, ev.TextDelta("late"), b"") == b""
    assert presenter.close() == b""


def test_max_steps_ends_in_run_error_after_the_last_step() -> None:
    events = render(LOGS["max_steps"]())
    assert types(events)[-3:] == ["TOOL_CALL_RESULT", "STEP_FINISHED", "RUN_ERROR"]
    assert events[-1]["code"] == "max_steps"


def test_a_call_told_whole_gets_its_start_args_and_end() -> None:
    events = render(LOGS["whole_calls"]())
    call = [e for e in events if e.get("toolCallId") == "call_a"]
    assert types(call) == ["TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "TOOL_CALL_RESULT"]
    # a result for a call the stream never showed is allowed (AG-UI: an unseen call)
    assert any(e.get("toolCallId") == "call_b" for e in events if e["type"] == "TOOL_CALL_RESULT")
    assert events[-1]["result"] == {"finishReason": "length"}
    assert "usage" not in events[-1]


def test_a_refusal_before_the_stream_is_a_run_error() -> None:
    events = render(LOGS["refused"]())
    assert types(events) == ["RUN_STARTED", "STEP_STARTED", "CUSTOM", "STEP_FINISHED", "RUN_ERROR"]
    assert events[-1]["code"] == "rate_limited"


def test_an_empty_log_is_a_run_started_and_finished() -> None:
    assert types(render([])) == ["RUN_STARTED", "RUN_FINISHED"]


def test_text_with_quotes_and_newlines_stays_one_data_line() -> None:
    text = 'a "quoted"\nline\r\nand \u2028 and \\ and emoji \U0001f600'
    events = render(
        [ev.StepStart(1), ev.TextDelta(text), ev.TextDelta(text), ev.StepEnd(1, "stop", None, 0)]
    )
    assert "".join(e["delta"] for e in events if e["type"] == "TEXT_MESSAGE_CONTENT") == text * 2


# -- the request ------------------------------------------------------------------------------


def test_run_input_maps_the_thread_to_the_runs_messages() -> None:
    thread, run, messages = run_input(
        {
            "threadId": "th-1",
            "runId": "run-9",
            "messages": [
                {"id": "1", "role": "developer", "content": "Be brief."},
                {"id": "2", "role": "user", "content": "What is 6*7?"},
                {
                    "id": "3",
                    "role": "assistant",
                    "toolCalls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "calculator", "arguments": "{}"},
                        }
                    ],
                },
                {"id": "4", "role": "tool", "toolCallId": "c", "content": "42"},
                {"id": "5", "role": "assistant", "content": "42."},
                {"id": "6", "role": "reasoning", "content": "hmm"},
                {
                    "id": "7",
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "And "},
                        {"type": "image", "source": {"type": "url", "value": "https://x/y.png"}},
                        {"type": "text", "text": "7*8?"},
                    ],
                },
            ],
            "tools": [{"name": "frontend_tool", "description": "ignored"}],
            "context": [{"description": "The user's name", "value": "Ada"}],
            "state": None,
            "forwardedProps": {},
        }
    )
    assert (thread, run) == ("th-1", "run-9")
    assert messages == [
        {"role": "system", "content": "The user's name: Ada"},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 6*7?"},
        {"role": "assistant", "content": "42."},
        {"role": "user", "content": "And 7*8?"},
    ]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"runId": "r", "messages": []}, "threadId"),
        ({"threadId": "t", "messages": []}, "runId"),
        ({"threadId": "t", "runId": "r", "messages": {}}, "'messages' must be a list"),
        (
            {"threadId": "t", "runId": "r", "messages": [{"role": "wizard", "content": "x"}]},
            "unknown role",
        ),
        ({"threadId": "t", "runId": "r", "messages": [{"role": "user", "content": 5}]}, "content"),
        (
            {"threadId": "t", "runId": "r", "messages": [{"role": "assistant", "content": "x"}]},
            "no user message",
        ),
        (
            {
                "threadId": "t",
                "runId": "r",
                "messages": [{"role": "user", "content": "x"}],
                "context": [{"value": "v"}],
            },
            "context[0]",
        ),
    ],
)
def test_run_input_refuses_what_it_cannot_map(body: dict[str, Any], says: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(says)):
        run_input(body)
