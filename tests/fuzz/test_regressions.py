"""Inputs the fuzzers found that broke a module, kept as plain tests of the right behaviour."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sluice.errors import RequestError
from sluice.turn import TurnRequest
from sluice.wire.requests import parse_chat_request, parse_messages_request

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
