"""Fuzzing the request intake: any JSON object a client sends is either a ``TurnRequest`` that
builds into every upstream format, or a typed ``RequestError`` (4xx, a stable ``type``, a
message); never another exception.

The parsers' contract is a JSON object (the gateway refuses any other JSON value before
parsing, see ``tests/fuzz/test_api_fuzz.py``), so the generated bodies are objects whose values
are arbitrary JSON: random objects over the request vocabulary, and valid requests of each
format with parts of them replaced, deleted or retyped.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.config import load_settings
from sluice.errors import RequestError, SluiceError
from sluice.providers import Router, build_body
from sluice.turn import TurnRequest
from sluice.wire import formats
from sluice.wire.requests import (
    parse_chat_request,
    parse_messages_request,
    parse_native_request,
    parse_responses_request,
)
from tests.fuzz.budget import fuzz, tally

Parser = Callable[[dict[str, Any]], TurnRequest]
PARSERS: dict[str, tuple[Parser, str | None]] = {
    # name: (parser, the client wire format the gateway passes to the router)
    "chat": (parse_chat_request, "chat"),
    "messages": (parse_messages_request, "messages"),
    "native": (parse_native_request, None),
    "responses": (parse_responses_request, "responses"),
    # the same body, bound for a Responses provider unchanged
    "responses-passthrough": (partial(parse_responses_request, translating=False), "responses"),
    # Gemini's model and streaming are in the path: the fuzzed body is what varies
    "gemini": (
        lambda body: formats.GEMINI.parse(  # type: ignore[misc]
            body, "/v1beta/models/sim/support:streamGenerateContent"
        ),
        "gemini",
    ),
}

#: The stable ``type`` strings a request may be refused with, before any upstream is asked.
REQUEST_ERROR_TYPES = {"invalid_request", "unknown_model"}

# -- valid requests of each format, the seeds of the mutations ---------------------------------

CHAT = {
    "model": "sim/support",
    "stream": True,
    "stream_options": {"include_usage": True},
    "max_tokens": 64,
    "temperature": 0.2,
    "top_p": 0.9,
    "stop": ["END"],
    "user": "u-1",
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "lookup_order",
                "description": "Find an order",
                "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
            },
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "lookup_order"}},
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Where is A-1?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup_order", "arguments": '{"id": "A-1"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "shipped"},
        {"role": "developer", "content": "Answer in English."},
    ],
}

MESSAGES = {
    "model": "sim/support",
    "max_tokens": 64,
    "stream": True,
    "system": [{"type": "text", "text": "Be brief."}],
    "stop_sequences": ["END"],
    "temperature": 0.5,
    "tools": [
        {"name": "lookup_order", "description": "Find an order", "input_schema": {"type": "object"}}
    ],
    "tool_choice": {"type": "tool", "name": "lookup_order"},
    "messages": [
        {"role": "user", "content": "Where is A-1?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "tu_1", "name": "lookup_order", "input": {"id": "A-1"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "tu_1",
                    "content": [{"type": "text", "text": "shipped"}],
                    "is_error": False,
                }
            ],
        },
    ],
}

NATIVE = {"model": "sim/support", "prompt": "Hello", "disconnect_policy": "detach"}

RESPONSES = {
    "model": "sim/support",
    "instructions": "Be brief.",
    "stream": True,
    "max_output_tokens": 64,
    "temperature": 0.2,
    "reasoning": {"effort": "low", "summary": "auto"},
    "metadata": {"ticket": "T-1"},
    "store": False,
    "background": False,
    "tools": [
        {
            "type": "function",
            "name": "lookup_order",
            "description": "Find an order",
            "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
        },
        {"type": "web_search"},
    ],
    "tool_choice": {"type": "function", "name": "lookup_order"},
    "text": {"format": {"type": "text"}},
    "input": [
        {"role": "developer", "content": "Answer in English."},
        {"role": "user", "content": [{"type": "input_text", "text": "Where is A-1?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hm"}],
        },
        {"type": "function_call", "call_id": "call_1", "name": "lookup_order", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "shipped"},
        {"role": "user", "content": [{"type": "input_image", "image_url": "https://x"}]},
    ],
}

GEMINI = {
    "contents": [
        {"role": "user", "parts": [{"text": "Where is A-1?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Let me look.", "thought": True},
                {"functionCall": {"name": "lookup_order", "args": {"id": "A-1"}, "id": "c1"}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "lookup_order", "response": {"ok": True}}},
                {"text": "And?"},
            ],
        },
    ],
    "systemInstruction": {"parts": [{"text": "Be brief."}]},
    "tools": [
        {"functionDeclarations": [{"name": "lookup_order", "parametersJsonSchema": {}}]},
        {"googleSearch": {}},
    ],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["x"]}},
    "generationConfig": {
        "maxOutputTokens": 64,
        "temperature": 0.2,
        "topP": 0.9,
        "stopSequences": ["END"],
        "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 128},
    },
}

SEEDS: dict[str, list[dict[str, Any]]] = {
    "chat": [CHAT],
    "messages": [MESSAGES],
    "native": [NATIVE, CHAT],
    "responses": [RESPONSES, {"model": "sim/support", "input": "Hello"}],
    "responses-passthrough": [RESPONSES, {"model": "sim/support", "previous_response_id": "r"}],
    "gemini": [GEMINI],
}

# -- arbitrary JSON --------------------------------------------------------------------------

KEYS = [
    "model", "messages", "role", "content", "tool_calls", "function", "name", "arguments",
    "tools", "tool_choice", "type", "text", "input", "input_schema", "parameters", "id",
    "tool_call_id", "tool_use_id", "is_error", "stream", "stream_options", "include_usage",
    "system", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
    "stop_sequences", "prompt", "user", "description", "disconnect_policy", "instructions",
    "max_output_tokens", "reasoning", "effort", "metadata", "store", "background", "call_id",
    "output", "previous_response_id", "format", "summary",
    "contents", "parts", "functionCall", "functionResponse", "args", "response", "thought",
    "systemInstruction", "functionDeclarations", "generationConfig", "thinkingConfig",
    "maxOutputTokens", "thinkingBudget", "thinkingLevel", "toolConfig", "mode",
]  # fmt: skip
WORDS = [
    "user", "assistant", "system", "developer", "tool", "text", "input_text", "output_text",
    "tool_use", "tool_result", "image", "function", "auto", "any", "none", "required",
    "sim/support", "sim/", "/support", "nope/x", "cancel", "detach", "drain", "",
    "input_text", "input_image", "message", "function_call", "function_call_output",
    "reasoning", "web_search", "json_schema",
    "model", "ANY", "AUTO", "NONE", "HIGH",
]  # fmt: skip

#: every integer ``orjson.loads`` can give (larger ones come back as floats)
json_ints = st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.sampled_from(
    [0, 1, -1, 2**31, 2**53, 2**63 - 1, 2**64 - 1, -(2**63)]
)
json_scalars = (
    st.none()
    | st.booleans()
    | json_ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(WORDS)
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=5)
    ),
    max_leaves=24,
)
json_objects = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), json_values)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


@st.composite
def mutated(draw: st.DrawFn, seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """A valid request with one to five nodes replaced by arbitrary JSON, or deleted."""
    body = copy.deepcopy(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 5))):
        paths = [p for p in _paths(body) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return body


def bodies(name: str) -> st.SearchStrategy[dict[str, Any]]:
    return json_objects | mutated(SEEDS[name])


# -- the property ---------------------------------------------------------------------------

ROUTER = Router(load_settings(None, store_url="sqlite:///:memory:"))


def intake(name: str, body: dict[str, Any]) -> None:
    """What the gateway does with a body before it opens the upstream, minus the I/O."""
    parse, client_wire = PARSERS[name]
    original = orjson.dumps(body)
    try:
        turn = parse(body)
    except SluiceError as exc:
        assert isinstance(exc, RequestError), exc
        assert 400 <= exc.status < 500
        assert exc.type in REQUEST_ERROR_TYPES
        assert exc.message and isinstance(exc.message, str)
        return
    finally:
        assert orjson.dumps(body) == original, "the parser must not change the client's body"
    assert isinstance(turn.model, str) and turn.messages is not None
    assert turn.max_tokens is None or (type(turn.max_tokens) is int and turn.max_tokens >= 1)
    assert turn.tool_choice is None or isinstance(turn.tool_choice, str)
    assert all(isinstance(s, str) for s in turn.stop)
    for fmt in formats.all():
        orjson.dumps(fmt.build(turn, "upstream-model"))
    try:
        route = ROUTER.resolve(turn.model, client_wire)
    except RequestError as exc:
        assert exc.type == "unknown_model"
        return
    passthrough = client_wire is not None and route.wire == client_wire
    build_body(route, turn, body if passthrough else None)


@pytest.mark.parametrize("name", sorted(PARSERS))
@fuzz(300)
@given(data=st.data())
def test_any_json_object_is_a_turn_or_a_typed_request_error(name: str, data: st.DataObject) -> None:
    tally(f"requests: {name} parser")
    intake(name, data.draw(bodies(name), label="body"))
