"""The AI SDK UI message stream presenter over hand-built agent logs, checked against the
client's rules (``processUIMessageStream``'s checks, the chunk schema's required fields and
enums, ``[DONE]`` last), and the mapping of a ``useChat`` request to the run's messages."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from sluice import events as ev
from sluice.errors import BadRequest
from sluice.gateway.uimessages import UIMessagePresenter, chat_request
from tests.gateway.agent_logs import LOGS, Log, present

SESSION = "op-0123abcd"
DONE = "[DONE]"

#: each chunk type's required keys besides ``type`` (ai 7's ``uiMessageChunkSchema``)
REQUIRED = {
    "start": set(),
    "start-step": set(),
    "finish-step": set(),
    "text-start": {"id"},
    "text-delta": {"id", "delta"},
    "text-end": {"id"},
    "reasoning-start": {"id"},
    "reasoning-delta": {"id", "delta"},
    "reasoning-end": {"id"},
    "tool-input-start": {"toolCallId", "toolName"},
    "tool-input-delta": {"toolCallId", "inputTextDelta"},
    "tool-input-available": {"toolCallId", "toolName", "input"},
    "tool-input-error": {"toolCallId", "toolName", "input", "errorText"},
    "tool-output-available": {"toolCallId", "output"},
    "tool-output-error": {"toolCallId", "errorText"},
    "data-status": {"data"},
    "data-tool-progress": {"data"},
    "data-retry": {"data"},
    "finish": set(),
    "abort": set(),
    "error": {"errorText"},
}
FINISH_REASONS = {"stop", "length", "content-filter", "tool-calls", "error", "interrupted", "other"}


def parse(body: bytes) -> list[Any]:
    """The chunks of a UI message stream body (``[DONE]`` as the string)."""
    assert body.endswith(b"\n\n")
    chunks: list[Any] = []
    for block in body[:-2].split(b"\n\n"):
        assert block.startswith(b"data: ") and b"\n" not in block, block
        data = block[6:]
        chunks.append(DONE if data == b"[DONE]" else orjson.loads(data))
    return chunks


def verify(chunks: list[Any]) -> None:
    """What ``processUIMessageStream`` refuses, and the stream's frame: ``start`` first,
    ``finish`` or ``abort`` before ``[DONE]``, which is last."""
    assert chunks[-1] == DONE and DONE not in chunks[:-1]
    chunks = chunks[:-1]
    assert chunks[0]["type"] == "start"
    assert chunks[-1]["type"] in ("finish", "abort")
    texts: set[str] = set()
    thoughts: set[str] = set()
    partial: set[str] = set()
    known: set[str] = set()
    step = False
    for chunk in chunks:
        kind = chunk["type"]
        assert kind in REQUIRED, kind
        assert REQUIRED[kind] <= set(chunk), chunk
        assert all(value is not None for value in chunk.values()), chunk
        match kind:
            case "start-step":
                assert not step
                step = True
            case "finish-step":
                assert step
                step = False
            case "text-start":
                texts.add(chunk["id"])
            case "text-delta":
                assert chunk["id"] in texts
            case "text-end":
                texts.remove(chunk["id"])
            case "reasoning-start":
                thoughts.add(chunk["id"])
            case "reasoning-delta":
                assert chunk["id"] in thoughts
            case "reasoning-end":
                thoughts.remove(chunk["id"])
            case "tool-input-start":
                partial.add(chunk["toolCallId"])
                known.add(chunk["toolCallId"])
            case "tool-input-delta":
                assert chunk["toolCallId"] in partial
            case "tool-input-available" | "tool-input-error":
                known.add(chunk["toolCallId"])
            case "tool-output-available" | "tool-output-error":
                assert chunk["toolCallId"] in known
            case "finish":
                assert chunk.get("finishReason", "stop") in FINISH_REASONS
            case "data-status" | "data-tool-progress" | "data-retry":
                assert chunk["transient"] is True
    assert not (texts or thoughts), "parts left open"
    assert not step, "a step left open"


def render(log: Log) -> list[Any]:
    return parse(present(UIMessagePresenter(SESSION), log))


def types(chunks: list[Any]) -> list[str]:
    return [c if c == DONE else c["type"] for c in chunks]


@pytest.mark.parametrize("name", sorted(LOGS))
def test_every_log_renders_a_stream_the_client_accepts(name: str) -> None:
    chunks = render(LOGS[name]())
    verify(chunks)
    assert chunks[0] == {"type": "start", "messageId": SESSION}


def test_two_steps_with_parallel_calls_in_order() -> None:
    chunks = render(LOGS["two_steps"]())
    status = [c["data"] for c in chunks[:-1] if c["type"] == "data-status"]
    assert status[2:4] == [
        {"phase": "tool", "detail": "calculator"},
        {"phase": "tool", "detail": "calculator, clock"},
    ]
    shown = [c for c in chunks if c == DONE or not c["type"].startswith("data-")]
    r1, t2, t3 = f"{SESSION}-r1", f"{SESSION}-t2", f"{SESSION}-t3"
    assert [
        (c, None) if c == DONE else (c["type"], c.get("id") or c.get("toolCallId")) for c in shown
    ] == [
        ("start", None),
        ("start-step", None),
        ("reasoning-start", r1),
        ("reasoning-delta", r1),
        ("reasoning-delta", r1),
        ("reasoning-end", r1),
        ("text-start", t2),
        ("text-delta", t2),
        ("text-delta", t2),
        ("text-end", t2),
        ("tool-input-start", "call_calc"),
        ("tool-input-delta", "call_calc"),
        ("tool-input-start", "call_clock"),
        ("tool-input-delta", "call_calc"),
        ("tool-input-delta", "call_clock"),
        ("tool-input-available", "call_calc"),
        ("tool-input-available", "call_clock"),
        ("tool-output-available", "call_calc"),
        ("tool-output-error", "call_clock"),
        ("finish-step", None),
        ("start-step", None),
        ("text-start", t3),
        ("text-delta", t3),
        ("text-delta", t3),
        ("text-end", t3),
        ("finish-step", None),
        ("finish", None),
        (DONE, None),
    ]
    available = {c["toolCallId"]: c for c in chunks[:-1] if c["type"] == "tool-input-available"}
    assert available["call_calc"] == {
        "type": "tool-input-available",
        "toolCallId": "call_calc",
        "toolName": "calculator",
        "input": {"expression": "6*7"},
        "dynamic": True,
        "providerExecuted": True,
    }
    fragments = "".join(
        c["inputTextDelta"]
        for c in chunks[:-1]
        if c["type"] == "tool-input-delta" and c["toolCallId"] == "call_calc"
    )
    assert orjson.loads(fragments) == {"expression": "6*7"}
    outputs = {c["toolCallId"]: c for c in chunks[:-1] if c["type"].startswith("tool-output")}
    assert outputs["call_calc"]["output"] == "42"
    assert outputs["call_clock"]["errorText"].startswith("tool_timeout:")
    text = "".join(c["delta"] for c in chunks[:-1] if c["type"] == "text-delta" and c["id"] == t3)
    assert text == "6*7 is 42; the clock timed out."
    progress = next(c for c in chunks[:-1] if c["type"] == "data-tool-progress")
    assert progress == {
        "type": "data-tool-progress",
        "data": {"toolCallId": "call_calc", "progress": 0.5, "total": 1.0, "message": "halfway"},
        "transient": True,
    }
    assert chunks[-2] == {"type": "finish", "finishReason": "stop"}


def test_a_stop_while_streaming_fails_the_cut_call_and_aborts() -> None:
    chunks = render(LOGS["stop_while_streaming"]())
    assert types(chunks)[-7:] == [
        "text-end",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-error",
        "finish-step",
        "abort",
        DONE,
    ]
    error = next(c for c in chunks[:-1] if c["type"] == "tool-input-error")
    assert error["input"] == '{"expr'
    assert error["errorText"] == "the stream ended inside the call"
    assert chunks[-2] == {"type": "abort", "reason": "stopped: user"}
    assert "finish" not in types(chunks)


def test_a_stop_during_tools_is_the_calls_error_then_abort() -> None:
    chunks = render(LOGS["stop_during_tools"]())
    assert types(chunks)[-4:] == ["tool-output-error", "finish-step", "abort", DONE]
    assert chunks[-4]["errorText"] == "stopped"


def test_a_retry_closes_the_attempt_and_goes_on_in_the_same_message() -> None:
    chunks = render(LOGS["retried"]())
    retry = next(c for c in chunks[:-1] if c["type"] == "data-retry")
    assert retry == {
        "type": "data-retry",
        "data": {"attempt": 2, "reason": "overloaded", "delay": 0.5},
        "transient": True,
    }
    index = chunks.index(retry)
    assert types(chunks[index - 2 : index]) == ["text-end", "finish-step"]
    assert types(chunks[index + 1 :]) == [
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
        DONE,
    ]
    assert types(chunks).count("start") == 1


def test_an_error_is_error_then_finish_error() -> None:
    chunks = render(LOGS["failed"]())
    assert chunks[-3:] == [
        {"type": "error", "errorText": "overloaded: the upstream is overloaded"},
        {"type": "finish", "finishReason": "error"},
        DONE,
    ]
    presenter = UIMessagePresenter(SESSION)
    for event in LOGS["failed"]():
        presenter.render(1, event, b"")
    assert presenter.render(9, ev.TextDelta("late"), b"") == b""
    assert presenter.close() == b"data: [DONE]\n\n"


def test_max_steps_is_an_error_after_the_last_step() -> None:
    chunks = render(LOGS["max_steps"]())
    assert types(chunks)[-5:] == ["tool-output-available", "finish-step", "error", "finish", DONE]
    assert chunks[-3]["errorText"].startswith("max_steps:")


def test_calls_told_whole_or_only_by_the_gateway_reach_the_client_before_their_output() -> None:
    chunks = render(LOGS["whole_calls"]())
    calls = [(c["type"], c["toolCallId"]) for c in chunks[:-1] if "toolCallId" in c]
    assert calls == [
        ("tool-input-available", "call_a"),
        ("tool-input-available", "call_b"),
        ("tool-output-available", "call_a"),
        ("tool-output-available", "call_b"),
    ]
    assert chunks[1 + types(chunks).index("tool-input-available")]["input"] == {"expression": "1+1"}
    assert chunks[-2] == {"type": "finish", "finishReason": "length"}


def test_a_refusal_before_the_stream_is_an_error() -> None:
    chunks = render(LOGS["refused"]())
    assert types(chunks) == [
        "start",
        "start-step",
        "data-status",
        "finish-step",
        "error",
        "finish",
        DONE,
    ]


def test_an_empty_log_is_a_start_and_a_finish() -> None:
    assert types(render([])) == ["start", "finish", DONE]


# -- the request ------------------------------------------------------------------------------


def test_chat_request_maps_the_chats_text_parts() -> None:
    chat_id, messages = chat_request(
        {
            "id": "chat-1",
            "trigger": "submit-message",
            "messageId": None,
            "messages": [
                {"id": "s", "role": "system", "parts": [{"type": "text", "text": "Be brief."}]},
                {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "6*7?"}]},
                {
                    "id": "a1",
                    "role": "assistant",
                    "parts": [
                        {"type": "step-start"},
                        {"type": "reasoning", "text": "easy", "state": "done"},
                        {
                            "type": "dynamic-tool",
                            "toolName": "calculator",
                            "toolCallId": "c",
                            "state": "output-available",
                            "input": {"expression": "6*7"},
                            "output": "42",
                        },
                        {"type": "text", "text": "42", "state": "done"},
                    ],
                },
                {"id": "a2", "role": "assistant", "parts": [{"type": "step-start"}]},
                {
                    "id": "u2",
                    "role": "user",
                    "parts": [
                        {"type": "text", "text": "And "},
                        {
                            "type": "file",
                            "mediaType": "image/png",
                            "url": "data:image/png;base64,AA==",
                        },
                        {"type": "text", "text": "7*8?"},
                    ],
                },
            ],
        }
    )
    assert chat_id == "chat-1"
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "6*7?"},
        {"role": "assistant", "content": "42"},
        {"role": "user", "content": "And 7*8?"},
    ]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"messages": []}, "'id'"),
        ({"id": "c", "messages": "hi"}, "'messages' must be a list"),
        ({"id": "c", "messages": [{"role": "tool", "parts": []}]}, "'role'"),
        ({"id": "c", "messages": [{"role": "user", "content": "hi"}]}, "'parts'"),
        (
            {"id": "c", "messages": [{"role": "user", "parts": [{"type": "text", "text": 1}]}]},
            "'text'",
        ),
        (
            {"id": "c", "messages": [{"role": "user", "parts": [{"type": "step-start"}]}]},
            "no user message",
        ),
    ],
)
def test_chat_request_refuses_what_it_cannot_map(body: dict[str, Any], says: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(says)):
        chat_request(body)
