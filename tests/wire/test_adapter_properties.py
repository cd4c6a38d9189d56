"""Properties every stream adapter has: chunking-blind, replayable, total over any input."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from sluice.wire.anthropic_messages import MessagesStreamAdapter
from sluice.wire.gemini import GeminiStreamAdapter
from sluice.wire.openai_chat import ChatStreamAdapter
from sluice.wire.openai_responses import ResponsesStreamAdapter
from tests.wire.wire_replay import (
    Adapter,
    adapter_for,
    feed_all,
    frames,
    replay,
    transcript,
    transcripts,
)

EVENT_TYPES = (
    Start,
    TextDelta,
    ReasoningDelta,
    Signature,
    ToolCallStart,
    ToolCallDelta,
    ToolCallDone,
    Usage,
)
ADAPTERS = [ChatStreamAdapter, MessagesStreamAdapter, ResponsesStreamAdapter, GeminiStreamAdapter]
FILES = transcripts()


def check_grammar(events: list[Event]) -> None:
    """One terminal event, last; one Start at most; every tool call started once and ended once."""
    assert all(isinstance(e, (*EVENT_TYPES, Finish, Error)) for e in events)
    terminals = [e for e in events if isinstance(e, Finish | Error)]
    assert len(terminals) == 1 and events[-1] is terminals[0]
    assert sum(isinstance(e, Start) for e in events) <= 1
    open_calls: Counter[int] = Counter()
    for event in events:
        if isinstance(event, ToolCallStart):
            assert open_calls[event.index] == 0
            open_calls[event.index] += 1
        elif isinstance(event, ToolCallDelta):
            assert open_calls[event.index] == 1
            assert event.fragment
        elif isinstance(event, ToolCallDone):
            assert open_calls[event.index] == 1
            open_calls[event.index] -= 1
            assert event.parse_attempts == 1
            assert (event.arguments is None) == (event.status != "ok")
    assert not +open_calls


# -- chunk boundaries ----------------------------------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_chunking_gives_the_same_events(path: Path, data: st.DataObject) -> None:
    whole = transcript(path)
    cuts = data.draw(
        st.lists(st.integers(min_value=0, max_value=len(whole)), max_size=40).map(sorted),
        label="cuts",
    )
    bounds = [0, *cuts, len(whole)]
    chunks = [whole[a:b] for a, b in pairwise(bounds)]
    assert replay(adapter_for(path), chunks) == replay(adapter_for(path), [whole])


def test_byte_at_a_time_gives_the_same_events() -> None:
    for path in FILES:
        whole = transcript(path)
        one_by_one = [whole[i : i + 1] for i in range(len(whole))]
        assert replay(adapter_for(path), one_by_one) == replay(adapter_for(path), [whole])


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_transcript_obeys_the_event_grammar(path: Path) -> None:
    check_grammar(replay(adapter_for(path), [transcript(path)]))


# -- replay --------------------------------------------------------------------------------

ALL_FRAMES = [(path, pair) for path in FILES for pair in frames(transcript(path))]


@settings(max_examples=200, deadline=None)
@given(
    adapter=st.sampled_from(ADAPTERS),
    picked=st.lists(st.sampled_from(ALL_FRAMES), max_size=30),
)
def test_a_fold_replayed_twice_gives_the_same_events(
    adapter: type[Adapter],
    picked: list[tuple[Path, tuple[str, str]]],
) -> None:
    pairs = [pair for _, pair in picked]
    first = feed_all(adapter(), pairs)
    assert feed_all(adapter(), pairs) == first
    check_grammar(first)


# -- totality ------------------------------------------------------------------------------

TYPE_WORDS = [
    # Anthropic
    "message_start", "content_block_start", "content_block_delta", "content_block_stop",
    "message_delta", "message_stop", "ping", "error", "text", "tool_use", "thinking",
    "text_delta", "input_json_delta", "thinking_delta", "signature_delta",
    # Responses
    "response.created", "response.output_item.added", "response.output_item.done",
    "response.function_call_arguments.delta", "response.function_call_arguments.done",
    "response.output_text.delta", "response.reasoning_summary_text.delta",
    "response.completed", "response.incomplete", "response.failed", "function_call",
    # Chat and errors
    "function", "stop", "length", "tool_calls", "max_tokens", "overloaded_error",
    "rate_limit_exceeded", "max_output_tokens",
    # Gemini
    "STOP", "MAX_TOKENS", "SAFETY", "MALFORMED_FUNCTION_CALL", "RESOURCE_EXHAUSTED", "model",
]  # fmt: skip
KEYS = [
    "type", "index", "id", "model", "message", "usage", "content_block", "delta", "text",
    "partial_json", "thinking", "stop_reason", "error", "input", "name", "choices",
    "finish_reason", "tool_calls", "function", "arguments", "content", "reasoning_content",
    "reasoning", "prompt_tokens", "input_tokens", "output_tokens", "response", "item",
    "output_index", "call_id", "status", "incomplete_details", "reason", "code",
    "candidates", "parts", "functionCall", "args", "thought", "thoughtSignature",
    "finishReason", "usageMetadata", "promptTokenCount", "candidatesTokenCount",
    "thoughtsTokenCount", "responseId", "modelVersion", "promptFeedback", "blockReason",
]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(TYPE_WORDS)
    | st.integers(min_value=0, max_value=3)
)
json_frames: st.SearchStrategy[Any] = st.deferred(
    lambda: st.dictionaries(
        st.sampled_from(KEYS),
        scalars | st.lists(json_frames | scalars, max_size=3) | json_frames,
        max_size=5,
    )
)
datas = (
    st.text()
    | st.sampled_from(["[DONE]", "", "{}", "[]", "null", "1", '"x"', "{"])
    | json_frames.map(lambda frame: orjson.dumps(frame).decode())
)
names = st.sampled_from(["message", "error", "ping", *TYPE_WORDS]) | st.text(max_size=10)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    adapter=st.sampled_from(ADAPTERS),
    pairs=st.lists(st.tuples(names, datas), max_size=25),
)
def test_adapters_never_raise_and_errors_are_typed_events(
    adapter: type[Adapter],
    pairs: list[tuple[str, str]],
) -> None:
    fold = adapter()
    events: list[Event] = []
    for event, data in pairs:
        produced = fold.feed(event, data)
        if fold.done:
            assert any(isinstance(e, Finish | Error) for e in events + produced)
        events += produced
    events += fold.close()
    assert fold.done
    assert fold.feed("message", "{}") == [] and fold.close() == []
    check_grammar(events)
