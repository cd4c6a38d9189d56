"""Client requests parsed into TurnRequest and built into each upstream format."""

from __future__ import annotations

import copy
import re
from typing import Any

import orjson
import pytest

from sluice import events as ev
from sluice.errors import BadRequest
from sluice.events import Usage
from sluice.turn import (
    ReasoningSpec,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    TurnAccumulator,
    TurnResult,
)
from sluice.wire.requests import (
    anthropic_error_body,
    build_chat_request,
    build_messages_request,
    build_responses_request,
    openai_error_body,
    parse_chat_request,
    parse_messages_request,
    parse_native_request,
    parse_responses_request,
    render_chat_response,
    render_messages_response,
)

TOOLS_CHAT = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Find an order",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        },
    }
]

CHAT_CONVERSATION = {
    "model": "sim/support",
    "stream": True,
    "stream_options": {"include_usage": True},
    "max_tokens": 256,
    "temperature": 0.2,
    "stop": "END",
    "tools": TOOLS_CHAT,
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
                    "function": {"name": "lookup_order", "arguments": '{"order_id": "A-1"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "shipped"},
    ],
}


def test_a_chat_request_parses_every_field() -> None:
    turn = parse_chat_request(CHAT_CONVERSATION)
    assert turn.model == "sim/support" and turn.stream and turn.include_usage
    assert turn.system == "Be brief."
    assert turn.max_tokens == 256 and turn.temperature == 0.2 and turn.stop == ["END"]
    assert turn.tool_choice == "lookup_order" and turn.tools[0].name == "lookup_order"
    assert [m.role for m in turn.messages] == ["user", "assistant", "user"]
    assert turn.messages[1].parts == [ToolCallPart("call_1", "lookup_order", {"order_id": "A-1"})]
    assert turn.messages[2].parts == [ToolResultPart("call_1", "shipped")]


def test_chat_to_anthropic_keeps_tools_results_and_system() -> None:
    body = build_messages_request(parse_chat_request(CHAT_CONVERSATION), "claude-x")
    assert body["model"] == "claude-x" and body["stream"] is True
    assert body["system"] == "Be brief." and body["max_tokens"] == 256
    assert body["stop_sequences"] == ["END"]
    assert body["tool_choice"] == {"type": "tool", "name": "lookup_order"}
    assert body["tools"][0]["input_schema"]["properties"] == {"order_id": {"type": "string"}}
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "lookup_order", "input": {"order_id": "A-1"}}
    ]
    assert body["messages"][2]["content"][0]["type"] == "tool_result"


def test_anthropic_to_chat_round_trips_a_tool_conversation() -> None:
    anthropic = build_messages_request(parse_chat_request(CHAT_CONVERSATION), "m")
    turn = parse_messages_request(anthropic)
    chat = build_chat_request(turn, "gpt-x")
    assert chat["stream_options"] == {"include_usage": True}
    roles = [m["role"] for m in chat["messages"]]
    assert roles == ["system", "user", "assistant", "tool"]
    call = chat["messages"][2]["tool_calls"][0]
    assert orjson.loads(call["function"]["arguments"]) == {"order_id": "A-1"}
    assert chat["messages"][3] == {"role": "tool", "tool_call_id": "call_1", "content": "shipped"}


def test_responses_request_uses_input_items_and_instructions() -> None:
    body = build_responses_request(parse_chat_request(CHAT_CONVERSATION), "gpt-x")
    assert body["instructions"] == "Be brief." and body["max_output_tokens"] == 256
    kinds = [item["type"] for item in body["input"]]
    assert kinds == ["message", "function_call", "function_call_output"]
    assert body["tools"][0]["name"] == "lookup_order"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "'model' is required"),
        ({"model": 3, "messages": []}, "'model' must be a string"),
        ({"model": "sim/x"}, "'messages' is required"),
        ({"model": "sim/x", "messages": []}, "must not be empty"),
        ({"model": "sim/x", "messages": [{"role": "wizard"}]}, "unknown role"),
        (
            {"model": "sim/x", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
            "positive integer",
        ),
        (
            {
                "model": "sim/x",
                "messages": [{"role": "user", "content": "x"}],
                "temperature": "hot",
            },
            "must be a number",
        ),
        ({"model": "sim/x", "messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
    ],
)
def test_bad_chat_requests_name_the_field(body: dict, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_chat_request(body)


def test_anthropic_requests_require_max_tokens() -> None:
    with pytest.raises(BadRequest, match="'max_tokens' is required"):
        parse_messages_request({"model": "sim/x", "messages": [{"role": "user", "content": "x"}]})


def test_an_image_part_cannot_be_translated_and_says_so() -> None:
    body = {
        "model": "sim/x",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
    }
    with pytest.raises(BadRequest, match="'image_url' cannot be translated"):
        parse_chat_request(body)


def test_native_requests_accept_a_bare_prompt() -> None:
    turn = parse_native_request({"model": "sim/support", "prompt": "hello"})
    assert turn.messages[0].parts == [TextPart("hello")] and turn.stream


def test_non_streaming_responses_render_text_tools_and_usage() -> None:
    from sluice.turn import ToolCallResult

    result = TurnResult(
        response_id="r1",
        model="m",
        text="Hi",
        tool_calls=[ToolCallResult("c1", "f", '{"a": 1}', {"a": 1}, "ok")],
        usage=Usage(3, 4),
        finish_reason="tool_calls",
    )
    chat = render_chat_response(result, "sim/m")
    assert chat["choices"][0]["message"]["content"] == "Hi"
    assert chat["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'
    assert chat["choices"][0]["finish_reason"] == "tool_calls"
    assert chat["usage"]["total_tokens"] == 7
    msg = render_messages_response(result, "sim/m")
    assert msg["content"][0] == {"type": "text", "text": "Hi"}
    assert msg["content"][1]["input"] == {"a": 1} and msg["stop_reason"] == "tool_use"
    assert msg["usage"]["input_tokens"] == 3


def test_error_bodies_follow_each_provider_format() -> None:
    assert openai_error_body(404, "no", "unknown_model") == {
        "error": {
            "message": "no",
            "type": "invalid_request_error",
            "param": None,
            "code": "unknown_model",
        }
    }
    assert anthropic_error_body(529, "busy") == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "busy"},
    }
    assert anthropic_error_body(413, "big")["error"]["type"] == "request_too_large"


# -- thinking blocks, sent back to continue a turn --------------------------------------------

SIGNATURE = "ErUBCkYIBRgCIkDcFakeSignatureForTestsOnly"
CONTINUED = {
    "model": "sim/support",
    "max_tokens": 256,
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "I should call it.", "signature": SIGNATURE},
                {"type": "redacted_thinking", "data": "EmwKAhgB"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"c": 1}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"}],
        },
    ],
}


def test_thinking_blocks_of_a_continued_turn_are_kept_with_their_signatures() -> None:
    turn = parse_messages_request(CONTINUED)
    assert turn.messages[1].parts[:2] == [
        ThinkingPart("I should call it.", SIGNATURE),
        ThinkingPart("", "EmwKAhgB", redacted=True),
    ]
    body = build_messages_request(turn, "claude-x")
    # the assistant's blocks go back exactly as they came, signatures and all
    assert body["messages"][1] == CONTINUED["messages"][1]  # type: ignore[index]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


def test_other_formats_leave_the_thinking_blocks_out() -> None:
    turn = parse_messages_request(CONTINUED)
    chat = build_chat_request(turn, "gpt-x")
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant", "tool"]
    assert chat["messages"][1]["content"] == "Let me check."
    items = build_responses_request(turn, "gpt-x")["input"]
    assert [item["type"] for item in items] == [
        "message",
        "message",
        "function_call",
        "function_call_output",
    ]


def test_a_thinking_block_without_a_signature_is_not_sent_to_anthropic() -> None:
    body = orjson.loads(orjson.dumps(CONTINUED))
    body["messages"][1]["content"][0]["signature"] = ""  # reasoning another provider gave
    built = build_messages_request(parse_messages_request(body), "claude-x")
    assert [b["type"] for b in built["messages"][1]["content"]] == [
        "redacted_thinking",
        "text",
        "tool_use",
    ]


@pytest.mark.parametrize(
    ("block", "role", "message"),
    [
        ({"type": "thinking", "thinking": "x", "signature": 5}, "assistant", "'signature'"),
        ({"type": "redacted_thinking"}, "assistant", "'data'"),
        ({"type": "thinking", "thinking": "x", "signature": "s"}, "user", "assistant message"),
    ],
)
def test_malformed_thinking_blocks_are_a_bad_request(
    block: dict[str, object], role: str, message: str
) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": role, "content": [block]}]}
    with pytest.raises(BadRequest, match=message):
        parse_messages_request(body)


def test_a_non_streamed_answer_carries_each_thinking_block_with_its_signature() -> None:
    acc = TurnAccumulator()
    for event in [
        ev.ReasoningDelta("first ", 0),
        ev.ReasoningDelta("block", 0),
        ev.Signature("sig-0", 0),
        ev.Signature("EmwK", 1, redacted=True),
        ev.ReasoningDelta("second", 2),
        ev.Signature("sig-2", 2),
        ev.TextDelta("Hi", 3),
    ]:
        acc.apply(event)
    result = acc.result()
    assert result.reasoning == "first blocksecond"
    assert render_messages_response(result, "m")["content"] == [
        {"type": "thinking", "thinking": "first block", "signature": "sig-0"},
        {"type": "redacted_thinking", "data": "EmwK"},
        {"type": "thinking", "thinking": "second", "signature": "sig-2"},
        {"type": "text", "text": "Hi"},
    ]
    chat = render_chat_response(result, "m")
    assert "sig-0" not in orjson.dumps(chat).decode()


def test_reasoning_without_a_signature_renders_with_an_empty_one() -> None:
    acc = TurnAccumulator()
    acc.apply(ev.ReasoningDelta("hm"))
    content = render_messages_response(acc.result(), "m")["content"]
    assert content == [{"type": "thinking", "thinking": "hm", "signature": ""}]


# -- OpenAI Responses requests ---------------------------------------------------------------

RESPONSES_CONVERSATION: dict[str, Any] = {
    "model": "sim/support",
    "instructions": "Be brief.",
    "stream": True,
    "max_output_tokens": 256,
    "temperature": 0.2,
    "top_p": 0.9,
    "reasoning": {"effort": "low", "summary": "auto"},
    "metadata": {"ticket": "T-1"},
    "store": False,
    "user": "u-1",
    "tools": [
        {
            "type": "function",
            "name": "lookup_order",
            "description": "Find an order",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
            "strict": True,
        }
    ],
    "tool_choice": {"type": "function", "name": "lookup_order"},
    "input": [
        {"role": "developer", "content": "Answer in English."},
        {"role": "user", "content": [{"type": "input_text", "text": "Where is A-1?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
        {
            "type": "message",
            "role": "assistant",
            "id": "msg_1",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Looking.", "annotations": []}],
        },
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "lookup_order",
            "arguments": '{"order_id": "A-1"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "shipped"},
    ],
}


def test_a_responses_request_parses_every_field() -> None:
    turn = parse_responses_request(RESPONSES_CONVERSATION)
    assert (turn.model, turn.system) == ("sim/support", "Be brief.\n\nAnswer in English.")
    assert (turn.max_tokens, turn.temperature, turn.top_p) == (256, 0.2, 0.9)
    assert (turn.stream, turn.include_usage, turn.user) == (True, True, "u-1")
    assert (turn.tool_choice, turn.reasoning) == (
        "lookup_order",
        ReasoningSpec(effort="low", include=True),
    )
    [tool] = turn.tools
    assert (tool.name, tool.description) == ("lookup_order", "Find an order")
    assert tool.parameters["properties"] == {"order_id": {"type": "string"}}
    assert [m.role for m in turn.messages] == ["user", "assistant", "user"]
    assert turn.messages[0].parts == [TextPart("Where is A-1?")]
    assert turn.messages[1].parts == [
        TextPart("Looking."),
        ToolCallPart("call_1", "lookup_order", {"order_id": "A-1"}),
    ]
    assert turn.messages[2].parts == [ToolResultPart("call_1", "shipped")]


def test_a_responses_input_string_is_one_user_message() -> None:
    turn = parse_responses_request({"model": "sim/x", "input": "Hello"})
    assert [(m.role, m.parts) for m in turn.messages] == [("user", [TextPart("Hello")])]
    assert (turn.stream, turn.system, turn.tool_choice) == (False, None, None)


def test_parsing_a_responses_request_leaves_the_body_as_it_was() -> None:
    body = copy.deepcopy(RESPONSES_CONVERSATION)
    parse_responses_request(body)
    parse_responses_request(body, translating=False)
    assert body == RESPONSES_CONVERSATION


UNTRANSLATABLE: list[tuple[dict[str, Any], str]] = [
    ({"tools": [{"type": "web_search"}]}, "tools[0]: tools of type 'web_search'"),
    ({"previous_response_id": "resp_1"}, "'previous_response_id' cannot be translated"),
    ({"conversation": "conv_1"}, "'conversation' cannot be translated"),
    ({"prompt": {"id": "pmpt_1"}}, "'prompt' cannot be translated"),
    ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "'text.format' of type"),
    ({"tool_choice": {"type": "web_search"}}, "'tool_choice' of type 'web_search'"),
    (
        {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
        "input[0]: content part of type 'input_image'",
    ),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input items of type"),
]


@pytest.mark.parametrize(("extra", "message"), UNTRANSLATABLE)
def test_what_only_a_responses_provider_can_act_on_is_refused_when_translating(
    extra: dict[str, Any], message: str
) -> None:
    body = {"model": "sim/x", "input": "hi"} | extra
    with pytest.raises(BadRequest, match=re.escape(message)):
        parse_responses_request(body)
    turn = parse_responses_request(body, translating=False)  # forwarded as it is
    assert turn.tools == [] and turn.tool_choice is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"input": "x"}, "'model' is required"),
        ({"model": "m"}, "'input' is required"),
        ({"model": "m", "input": 3}, "'input' must be a string or a list of items"),
        ({"model": "m", "input": ["x"]}, "input[0] must be an object"),
        ({"model": "m", "input": [{"role": "tool", "content": "x"}]}, "input[0]: 'role' must be"),
        ({"model": "m", "input": [{"type": "function_call", "name": "f"}]}, "needs 'call_id'"),
        ({"model": "m", "input": [{"type": "function_call_output"}]}, "needs 'call_id'"),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_text"}]}]},
            "needs 'text'",
        ),
        ({"model": "m", "input": "x", "instructions": ["x"]}, "'instructions' must be a string"),
        ({"model": "m", "input": "x", "tools": [{"type": "function"}]}, "'name' is required"),
        ({"model": "m", "input": "x", "max_output_tokens": 0}, "positive integer"),
        ({"model": "m", "input": "x", "stream": "yes"}, "'stream' must be a boolean"),
        ({"model": "m", "input": "x", "store": 1}, "'store' must be a boolean"),
        ({"model": "m", "input": "x", "metadata": {"n": 1}}, "'metadata' must be an object"),
        ({"model": "m", "input": "x", "reasoning": "high"}, "'reasoning' must be an object"),
        ({"model": "m", "input": "x", "tool_choice": "any"}, "'tool_choice' must be"),
    ],
)
def test_bad_responses_requests_name_the_field(body: dict[str, Any], message: str) -> None:
    for translating in (True, False):
        with pytest.raises(BadRequest, match=re.escape(message)):
            parse_responses_request(body, translating=translating)


def test_a_responses_request_without_input_may_continue_a_stored_response_upstream() -> None:
    turn = parse_responses_request(
        {"model": "m", "previous_response_id": "resp_1"}, translating=False
    )
    assert turn.messages == []


def test_reasoning_effort_reaches_the_formats_that_take_one() -> None:
    turn = parse_responses_request(
        {"model": "m", "input": "x", "reasoning": {"effort": "high", "summary": "auto"}}
    )
    assert turn.reasoning == ReasoningSpec(effort="high", include=True)
    assert build_chat_request(turn, "gpt-x")["reasoning_effort"] == "high"
    assert build_responses_request(turn, "gpt-x")["reasoning"] == {
        "effort": "high",
        "summary": "auto",
    }
    assert "reasoning" not in orjson.dumps(build_messages_request(turn, "claude-x")).decode()
    chat = parse_chat_request(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "low"}
    )
    assert chat.reasoning == ReasoningSpec(effort="low")


def test_a_responses_request_survives_being_built_and_parsed_again() -> None:
    turn = parse_responses_request(RESPONSES_CONVERSATION)
    again = parse_responses_request(build_responses_request(turn, "sim/support"))
    assert (again.messages, again.system, again.tools) == (turn.messages, turn.system, turn.tools)
    assert (again.tool_choice, again.max_tokens, again.reasoning) == (
        "lookup_order",
        256,
        ReasoningSpec(effort="low", include=True),
    )
