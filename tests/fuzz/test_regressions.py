"""Inputs the fuzzers found that broke a module, kept as plain tests of the right behaviour."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sluice.errors import RequestError
from sluice.events import Usage
from sluice.gateway.presenters import NativePresenter
from sluice.turn import TurnRequest
from sluice.wire.anthropic_messages import MessagesStreamAdapter
from sluice.wire.openai_chat import ChatStreamAdapter, ChatStreamEncoder
from sluice.wire.requests import parse_chat_request, parse_messages_request
from tests.conftest import GatewayUnderTest

# -- request parsing (sluice.wire.requests) ----------------------------------------------------


@pytest.mark.parametrize(
    "tool_calls",
    [5, 1.5, True, ["not an object"], [{"function": "lookup_order"}], [{"function": [1]}]],
)
def test_chat_assistant_tool_calls_of_the_wrong_shape_are_a_bad_request(tool_calls: Any) -> None:
    body = {
        "model": "sim/support",
        "messages": [{"role": "assistant", "content": "x", "tool_calls": tool_calls}],
    }
    with pytest.raises(RequestError, match="tool_calls"):
        parse_chat_request(body)


@pytest.mark.parametrize("parse", [parse_chat_request, parse_messages_request])
@pytest.mark.parametrize("tools", [7, 2.5, True, "lookup_order", {"name": "lookup_order"}])
def test_tools_that_are_not_a_list_are_a_bad_request(
    parse: Callable[[dict[str, Any]], TurnRequest], tools: Any
) -> None:
    body = {
        "model": "sim/support",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": tools,
    }
    with pytest.raises(RequestError, match="'tools' must be a list"):
        parse(body)


@pytest.mark.parametrize("function", ["lookup_order", ["lookup_order"], 3])
def test_chat_tool_choice_whose_function_is_not_an_object_is_ignored(function: Any) -> None:
    body = {
        "model": "sim/support",
        "messages": [{"role": "user", "content": "hi"}],
        "tool_choice": {"type": "function", "function": function},
    }
    assert parse_chat_request(body).tool_choice is None


@pytest.mark.parametrize("name", [7, ["lookup_order"], {"a": 1}])
def test_anthropic_tool_choice_whose_name_is_not_a_string_is_ignored(name: Any) -> None:
    body = {
        "model": "sim/support",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
        "tool_choice": {"type": "tool", "name": name},
    }
    assert parse_messages_request(body).tool_choice is None


# -- stream adapters (sluice.wire.*) -------------------------------------------------------------

CHAT_USAGE = (
    '{"id":"c","choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,'
    '"prompt_tokens_details":{"cached_tokens":%d}}}'
)


@pytest.mark.parametrize(
    ("prompt", "completion", "cached"),
    [(2**64 - 1, 1, 0), (1, 2**64 - 1, 0), (-1, 2, 0), (5, 5, -(2**63))],
)
def test_chat_usage_counts_outside_0_to_2_53_read_as_absent_and_encode(
    prompt: int, completion: int, cached: int
) -> None:
    adapter = ChatStreamAdapter()
    events = adapter.feed("message", '{"id":"c","choices":[{"index":0,"delta":{"content":"hi"}}]}')
    events += adapter.feed("message", '{"id":"c","choices":[{"index":0,"finish_reason":"stop"}]}')
    events += adapter.feed("message", CHAT_USAGE % (prompt, completion, cached))
    events += adapter.feed("message", "[DONE]")
    usage = next(e for e in events if isinstance(e, Usage))
    for given, read in [
        (prompt, usage.input_tokens),
        (completion, usage.output_tokens),
        (cached, usage.cache_read_tokens),
    ]:
        assert read == (given if 0 <= given <= 2**53 - 1 else 0)
    encoder = ChatStreamEncoder("chatcmpl-1", "sim/x", 1, include_usage=True)
    written = b"".join(encoder.encode(e) for e in events) + encoder.close()
    assert written.endswith(b"data: [DONE]\n\n")


def test_anthropic_usage_counts_far_below_zero_do_not_break_the_native_stream() -> None:
    adapter = MessagesStreamAdapter()
    events = adapter.feed(
        "message_start",
        '{"type":"message_start","message":{"id":"m","model":"x","usage":{"input_tokens":-1,'
        '"output_tokens":1,"cache_read_input_tokens":-9223372036854775808}}}',
    )
    events += adapter.feed(
        "message_delta",
        '{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{'
        '"output_tokens":18446744073709551615,"cache_creation_input_tokens":-9223372036854775808}}',
    )
    events += adapter.feed("message_stop", '{"type":"message_stop"}')
    usages = [e for e in events if isinstance(e, Usage)]
    assert [(u.input_tokens, u.output_tokens, u.cache_read_tokens) for u in usages] == [
        (0, 1, 0),
        (0, 1, 0),
    ]
    presenter = NativePresenter()
    assert all(presenter.render(seq, e, b"") for seq, e in enumerate(events, start=1))


# -- routing refusals (sluice.gateway.app) -------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "fmt"),
    [
        ("GET", "/v1/chat/completions", 405, "openai"),
        ("TRACE", "/v1/chat/completions", 405, "openai"),
        ("GET", "/v1/messages", 405, "anthropic"),
        ("DELETE", "/api/sessions", 405, "native"),
        ("PUT", "/api/sessions/op-x/cancel", 405, "native"),
        ("POST", "/healthz", 405, "native"),
        ("GET", "/api/no-such-thing", 404, "native"),
        ("POST", "/v1/embeddings", 404, "openai"),
    ],
)
async def test_routing_refusals_on_api_paths_use_the_api_error_format(
    gateway: GatewayUnderTest, method: str, path: str, status: int, fmt: str
) -> None:
    response = await gateway.http.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    kind = {404: "not_found", 405: "method_not_allowed"}[status]
    if fmt == "anthropic":
        assert body["type"] == "error" and body["error"]["message"]
    elif fmt == "openai":
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert body["error"]["code"] == kind
    else:
        assert body == {"error": {"type": kind, "message": body["error"]["message"]}}
    if status == 405:
        assert response.headers["allow"]


async def test_routing_refusals_elsewhere_keep_plain_text(gateway: GatewayUnderTest) -> None:
    response = await gateway.http.request("POST", "/runbook")
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("text/plain")
