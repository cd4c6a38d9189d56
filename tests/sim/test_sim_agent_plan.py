"""The ``agent`` scenario's planning rules, and each format's reading of a conversation (no I/O)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sluice.sim.agent import Plan, first_expression, first_id, first_number, plan
from sluice.sim.conversation import Conversation, DeclaredTool, ToolChoice, ToolResult, Turn
from sluice.sim.formats import GEMINI, ChatFormat, MessagesFormat, ResponsesFormat


def tool(name: str, **properties: Any) -> DeclaredTool:
    """A tool whose properties are all required, but those marked ``"required": False``."""
    required = [key for key, spec in properties.items() if spec.get("required", True)]
    specs = {
        key: {k: v for k, v in spec.items() if k != "required"} for key, spec in properties.items()
    }
    schema = {"type": "object", "properties": specs, "required": required}
    return DeclaredTool(name, "", schema)


AUTO = ToolChoice()


def asked(question: str, *tools: DeclaredTool, choice: ToolChoice = AUTO) -> Plan:
    return plan(Conversation(tools, choice, (Turn("user", question),)))


def called(result: Plan) -> list[tuple[str, Any]]:
    return [(name, json.loads(arguments)) for name, arguments in result.calls]


ORDERS = tool("lookup_order", order_id={"type": "string"})
TICKETS = tool("list-open-tickets")
CLOCK = tool("clock")


@pytest.mark.parametrize(
    ("question", "names"),
    [
        ("Where are my orders?", ["lookup_order"]),  # "order" begins "orders"
        ("Any open tickets?", ["list-open-tickets"]),  # "tickets" (the part "open" is too short)
        ("What time is it?", []),  # "clock" is named by no word
        ("Ask the CLOCK about my order", ["clock"]),  # a whole name wins over hints
        (
            "lookup_order, list-open-tickets and clock!",
            ["lookup_order", "list-open-tickets", "clock"],
        ),
        ("try lookup_orders", ["lookup_order"]),  # not the whole name: the hint "order" matches
        ("Reorder it", []),  # a hint begins a word, it is not anywhere in one
    ],
)
def test_tools_are_called_by_whole_name_else_by_a_long_part(
    question: str, names: list[str]
) -> None:
    result = asked(question, ORDERS, TICKETS, CLOCK)
    assert [name for name, _ in result.calls] == names
    assert result.text == ("Let me check that.\n\n" if names else f'You asked: "{question}"\n\n')


def test_the_tool_choice_limits_and_forces_the_calls() -> None:
    none = asked("lookup_order now", ORDERS, choice=ToolChoice("none"))
    assert none.calls == () and none.answer_to == "lookup_order now"
    forced = asked("hello", ORDERS, CLOCK, choice=ToolChoice("required"))
    assert [name for name, _ in forced.calls] == ["lookup_order"]
    only = asked(
        "my orders and the clock", ORDERS, CLOCK, choice=ToolChoice("auto", frozenset({"clock"}))
    )
    assert [name for name, _ in only.calls] == ["clock"]


@pytest.mark.parametrize(
    ("properties", "question", "arguments"),
    [
        ({"order_id": {"type": "string"}}, "Where is order A-1042?", {"order_id": "A-1042"}),
        ({"orderId": {"type": "string"}}, "(#77) late", {"orderId": "#77"}),
        ({"ID": {"type": "string"}}, "no digits here", {"ID": "no digits here"}),
        ({"order_id": {"type": "integer"}}, "order A-1042", {"order_id": 1042}),
        (
            {"expression": {"type": "string"}},
            "What's 12 * (3 + 4)?",
            {"expression": "12 * (3 + 4)"},
        ),
        ({"query": {"type": "string"}}, " rate  limits\nplease ", {"query": "rate limits please"}),
        ({"limit": {"type": "integer"}}, "order A-1042 in 3 days", {"limit": 3}),
        ({"weight": {"type": ["number", "null"]}}, "2.5 kg", {"weight": 2.5}),
        ({"limit": {"type": "INTEGER", "default": 10}}, "none", {"limit": 10}),
        ({"limit": {"type": "integer"}}, "none", {"limit": 1}),
        (
            {"flag": {"type": "boolean"}, "tags": {"type": "array"}},
            "x",
            {"flag": False, "tags": []},
        ),
        ({"units": {"enum": ["celsius", "fahrenheit"]}}, "in Fahrenheit", {"units": "fahrenheit"}),
        ({"units": {"enum": ["celsius", "fahrenheit"]}}, "warm?", {"units": "celsius"}),
        # optional properties: only with a value of their own in the question
        ({"order_id": {"type": "string", "required": False}}, "order A-1", {"order_id": "A-1"}),
        ({"days": {"type": "integer", "required": False}}, "order A-1042", {}),
        ({"note": {"type": "string", "required": False}}, "order", {}),
        ({"verbose": {"type": "boolean", "required": False}}, "order", {}),
    ],
)
def test_arguments_follow_the_schema_and_the_question(
    properties: dict[str, Any], question: str, arguments: dict[str, Any]
) -> None:
    required = ToolChoice("required")  # called whatever the question says
    result = asked(question, tool("lookup_order", **properties), choice=required)
    assert called(result) == [("lookup_order", arguments)]


def test_a_long_question_is_cut_to_two_hundred_characters() -> None:
    question = "order " + "word " * 100
    [(_, arguments)] = called(asked(question, tool("lookup_order", text={"type": "string"})))
    assert arguments["text"] == " ".join(question.split())[:200]


@pytest.mark.parametrize(
    ("text", "expression"),
    [
        ("What's 2+2?", "2+2"),
        ("see (2+3)*4 now", "(2+3)*4"),
        ("(see 2+2)", "2+2"),
        ("A-1042 and 3*4.", "3*4"),
        ("compute 2 + 2 (please)", "2 + 2"),
        ("2 ** 10 // 3", "2 ** 10 // 3"),
        ("no math 42", None),
    ],
)
def test_the_first_arithmetic_expression(text: str, expression: str | None) -> None:
    assert first_expression(text) == expression


def test_ids_and_numbers() -> None:
    assert first_id('Is "B-7," late?') == "B-7"
    assert first_id("nothing") is None
    assert [first_number(t) for t in ("A-1042 in 3 days", "$40.", "3rd", "v2")] == [
        "3",
        "40",
        None,
        None,
    ]


def test_results_are_quoted_on_one_line_and_cut() -> None:
    long = "x" * 250
    turns = (
        Turn("user", "q"),
        Turn("assistant", calls=("a", "b", "c")),
        Turn(
            "user",
            results=(ToolResult("a", long), ToolResult("b", ""), ToolResult("c", "no!", True)),
        ),
    )
    result = plan(Conversation(turns=turns))
    assert result.text == (
        f"Here is what I found. a: {'x' * 200}…. b: (no output). The tool c failed: no! "
        "Let me know if you need anything else."
    )
    assert result.calls == () and result.answer_to is None


def test_only_results_after_the_last_assistant_turn_count() -> None:
    turns = (
        Turn("user", "where is my order"),
        Turn("assistant", calls=("lookup_order",)),
        Turn("user", results=(ToolResult("lookup_order", "shipped"),)),
        Turn("assistant", "It shipped."),
        Turn("user", "and my order again?"),
    )
    result = plan(Conversation((ORDERS,), turns=turns))
    assert (
        result.text
        == 'Following up on your earlier question ("where is my order"): Let me check that.\n\n'
    )
    assert [name for name, _ in result.calls] == ["lookup_order"]


def test_chat_reads_tool_messages_by_their_call() -> None:
    body = {
        "tools": [{"type": "function", "function": {"name": "lookup_order", "parameters": {}}}],
        "tool_choice": {"type": "function", "function": {"name": "lookup_order"}},
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "lookup_order"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "done"}]},
        ],
    }
    conversation = ChatFormat().conversation(body)
    assert conversation.choice == ToolChoice("required", frozenset({"lookup_order"}))
    assert conversation.questions == ["hi"]
    assert conversation.pending_results == [ToolResult("lookup_order", "done")]
    body["messages"][3]["tool_call_id"] = "c2"
    with pytest.raises(ValueError, match="c2"):
        ChatFormat().conversation(body)


def test_responses_reads_a_string_input_and_trusts_a_stored_response() -> None:
    assert ResponsesFormat().conversation({"input": "hello"}).questions == ["hello"]
    body = {
        "previous_response_id": "resp_1",
        "input": [{"type": "function_call_output", "call_id": "call_9", "output": "ok"}],
    }
    assert ResponsesFormat().conversation(body).pending_results == [ToolResult("call_9", "ok")]
    with pytest.raises(ValueError, match="call_9"):
        ResponsesFormat().conversation({"input": body["input"]})


def test_messages_leaves_server_tools_out_and_keeps_is_error() -> None:
    body = {
        "tools": [
            {"name": "lookup_order", "input_schema": {"type": "object"}},
            {"type": "web_search_20250305", "name": "web_search"},
        ],
        "tool_choice": {"type": "any"},
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "lookup_order", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": "boom",
                        "is_error": True,
                    }
                ],
            },
        ],
    }
    conversation = MessagesFormat().conversation(body)
    assert [t.name for t in conversation.tools] == ["lookup_order"]
    assert conversation.choice == ToolChoice("required")
    assert conversation.pending_results == [ToolResult("lookup_order", "boom", is_error=True)]


def test_gemini_reads_either_spelling_and_quotes_an_object_response_as_json() -> None:
    body = {
        "tools": [
            {"function_declarations": [{"name": "a", "parameters": {"type": "OBJECT"}}]},
            {"functionDeclarations": [{"name": "b", "parametersJsonSchema": {"type": "object"}}]},
        ],
        "tool_config": {
            "function_calling_config": {"mode": "any", "allowed_function_names": ["b"]}
        },
        "contents": [
            {"role": "user", "parts": [{"text": "q"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "a", "args": {}}}]},
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "a", "response": {"eta": "3 days", "ok": True}}},
                    {"function_response": {"name": "b", "response": {"error": {"code": 7}}}},
                ],
            },
        ],
    }
    conversation = GEMINI.conversation(body)
    assert [t.name for t in conversation.tools] == ["a", "b"]
    assert conversation.choice == ToolChoice("required", frozenset({"b"}))
    assert conversation.pending_results == [
        ToolResult("a", '{"eta": "3 days", "ok": true}'),
        ToolResult("b", '{"code": 7}', is_error=True),
    ]
