"""ToolArgs: fragments appended, joined once, parsed once; and the adapters use it linearly."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from sluice.events import TOOL_INCOMPLETE, TOOL_INVALID_JSON, TOOL_OK, Event, ToolCallDone
from sluice.wire import _toolargs
from sluice.wire._toolargs import ToolArgs
from sluice.wire.anthropic_messages import MessagesStreamAdapter
from sluice.wire.openai_chat import ChatStreamAdapter
from sluice.wire.openai_responses import ResponsesStreamAdapter
from tests.wire.wire_replay import dones


def args(*fragments: str) -> ToolArgs:
    call = ToolArgs(0, "call_1", "f")
    for fragment in fragments:
        call.append(fragment)
    return call


def test_fragments_cut_anywhere_parse_at_the_end() -> None:
    done = args('{"locati', 'on": "P', "ar", 'is"}').finish()
    assert (done.status, done.arguments, done.raw, done.error) == (
        TOOL_OK,
        {"location": "Paris"},
        '{"location": "Paris"}',
        None,
    )


def test_no_text_is_empty_object_arguments() -> None:
    assert args().finish().arguments == {}
    assert args("").finish().arguments == {}


def test_whitespace_only_text_is_empty_object_arguments() -> None:
    assert args(" \n").finish().arguments == {}


def test_invalid_json_keeps_the_raw_text_and_a_short_message() -> None:
    done = args('{"unit": ', "celsius}").finish()
    assert (done.status, done.arguments, done.raw) == (TOOL_INVALID_JSON, None, '{"unit": celsius}')
    assert done.error and len(done.error) < 200


@pytest.mark.parametrize(
    ("text", "kind"), [("[1, 2]", "array"), ('"x"', "string"), ("3", "number"), ("null", "null")]
)
def test_json_that_is_not_an_object_is_invalid(text: str, kind: str) -> None:
    done = args(text).finish()
    assert (done.status, done.arguments) == (TOOL_INVALID_JSON, None)
    assert done.error == f"arguments are a JSON {kind}, not an object"


def test_incomplete_is_never_empty_arguments() -> None:
    done = args('{"a": ').incomplete()
    assert (done.status, done.arguments, done.raw) == (TOOL_INCOMPLETE, None, '{"a": ')
    assert args().incomplete().arguments is None


def test_given_text_overrides_the_fragments() -> None:
    assert args('{"a": 1').finish('{"a": 2}').arguments == {"a": 2}


def test_parse_attempts_is_always_one() -> None:
    endings = [args("{}").finish(), args("{").finish(), args("{").incomplete(), args().finish()]
    assert {d.parse_attempts for d in endings} == {1}


# -- linear accumulation through each adapter ----------------------------------------------

N = 20_000


def _chat() -> Iterator[tuple[str, str]]:
    def chunk(tool: dict[str, Any] | None = None, finish: str | None = None) -> str:
        delta = {"tool_calls": [tool]} if tool else {}
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return orjson.dumps({"id": "c", "model": "m", "choices": [choice]}).decode()

    yield "message", chunk({"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}})
    yield "message", chunk({"index": 0, "function": {"arguments": '{"k": "'}})
    for _ in range(N):
        yield "message", chunk({"index": 0, "function": {"arguments": "x"}})
    yield "message", chunk({"index": 0, "function": {"arguments": '"}'}})
    yield "message", chunk(finish="tool_calls")
    yield "message", "[DONE]"


def _messages() -> Iterator[tuple[str, str]]:
    def frame(body: dict[str, Any]) -> tuple[str, str]:
        return body["type"], orjson.dumps(body).decode()

    def delta(fragment: str) -> tuple[str, str]:
        json_delta = {"type": "input_json_delta", "partial_json": fragment}
        return frame({"type": "content_block_delta", "index": 0, "delta": json_delta})

    yield frame({"type": "message_start", "message": {"id": "msg", "model": "m", "usage": {}}})
    block = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    yield frame({"type": "content_block_start", "index": 0, "content_block": block})
    yield delta('{"k": "')
    for _ in range(N):
        yield delta("x")
    yield delta('"}')
    yield frame({"type": "content_block_stop", "index": 0})
    yield frame({"type": "message_stop"})


def _responses() -> Iterator[tuple[str, str]]:
    def frame(body: dict[str, Any]) -> tuple[str, str]:
        return body["type"], orjson.dumps(body).decode()

    def delta(fragment: str) -> tuple[str, str]:
        return frame(
            {"type": "response.function_call_arguments.delta", "output_index": 0, "delta": fragment}
        )

    yield frame({"type": "response.created", "response": {"id": "resp", "model": "m"}})
    item = {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": ""}
    yield frame({"type": "response.output_item.added", "output_index": 0, "item": item})
    yield delta('{"k": "')
    for _ in range(N):
        yield delta("x")
    yield delta('"}')
    yield frame({"type": "response.function_call_arguments.done", "output_index": 0})
    yield frame({"type": "response.completed", "response": {"status": "completed"}})


@pytest.mark.parametrize(
    ("make", "transcript"),
    [
        (ChatStreamAdapter, _chat),
        (MessagesStreamAdapter, _messages),
        (ResponsesStreamAdapter, _responses),
    ],
    ids=["chat", "messages", "responses"],
)
def test_twenty_thousand_fragments_complete_with_exactly_one_parse(
    monkeypatch: pytest.MonkeyPatch,
    make: Callable[[], ChatStreamAdapter | MessagesStreamAdapter | ResponsesStreamAdapter],
    transcript: Callable[[], Iterator[tuple[str, str]]],
) -> None:
    parsed: list[int] = []

    def counting_loads(text: str) -> Any:
        parsed.append(len(text))
        return orjson.loads(text)

    monkeypatch.setattr(_toolargs, "_loads", counting_loads)
    adapter = make()
    events: list[Event] = []
    for event, data in transcript():
        events += adapter.feed(event, data)
    [done] = dones(events)
    assert isinstance(done, ToolCallDone)
    assert done.arguments == {"k": "x" * N}
    assert done.parse_attempts == 1
    assert parsed == [N + 9]  # one parse, of the whole text
