"""Requests, whole responses and error bodies in each wire format, to and from ``TurnRequest``.

``parse_*`` validate a client's body (raising ``BadRequest`` with a message that names the
field) and return a ``TurnRequest``; ``build_*`` make an upstream body from one;
``render_*`` make the non-streaming response body of a ``TurnResult``; ``*_error_body`` make
each format's error body; ``forward_*`` make a client's body into an upstream body of the same
format. No I/O.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from sluice import events as ev
from sluice.errors import BadRequest
from sluice.turn import (
    Message,
    Part,
    ReasoningSpec,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    TurnRequest,
    TurnResult,
)
from sluice.wire.anthropic_messages import anthropic_id, uncached_input
from sluice.wire.openai_chat import completion_id
from sluice.wire.openai_responses import ResponsesStreamEncoder

JSONDict = dict[str, Any]

# ---------------------------------------------------------------------------------------------
# Shared validation helpers


def _require(body: JSONDict, key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if key not in body or body[key] is None:
        raise BadRequest(f"'{key}' is required")
    value = body[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise BadRequest(f"'{key}' must be {what}")
    return value


def _optional_number(body: JSONDict, key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"'{key}' must be a number")
    return float(value)


def _optional_int(body: JSONDict, *keys: str) -> int | None:
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"'{key}' must be a positive integer")
        return value
    return None


def _stop_list(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise BadRequest(f"'{key}' must be a string or a list of strings")


def _text_of(content: Any, where: str) -> str:
    """Text of a content value that is a string or a list of text parts."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        pieces = []
        for part in content:
            if isinstance(part, str):
                pieces.append(part)
            elif isinstance(part, dict) and part.get("type") in (
                "text",
                "input_text",
                "output_text",
            ):
                pieces.append(str(part.get("text", "")))
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise BadRequest(
                    f"{where}: content part of type {kind!r} cannot be translated "
                    "between provider formats; send text parts"
                )
        return "".join(pieces)
    raise BadRequest(f"{where}: 'content' must be a string or a list of parts")


def _tool_list(body: JSONDict) -> list[Any]:
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise BadRequest("'tools' must be a list")
    return tools


def _load_arguments(raw: Any, where: str) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if raw in (None, ""):
        return {}
    if isinstance(raw, str):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"{where}: 'arguments' is not valid JSON") from exc
        if isinstance(value, dict):
            return value
    raise BadRequest(f"{where}: 'arguments' must be a JSON object")


# ---------------------------------------------------------------------------------------------
# OpenAI Chat Completions


def parse_chat_request(body: JSONDict) -> TurnRequest:
    model = _require(body, "model", str, "a string")
    raw_messages = _require(body, "messages", list, "a list of messages")
    if not raw_messages:
        raise BadRequest("'messages' must not be empty")
    system: list[str] = []
    messages: list[Message] = []
    for i, m in enumerate(raw_messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise BadRequest(f"{where} must be an object")
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(_text_of(m.get("content"), where))
        elif role == "user":
            _append(messages, "user", [TextPart(_text_of(m.get("content"), where))])
        elif role == "assistant":
            parts: list[Part] = []
            text = _text_of(m.get("content"), where)
            if text:
                parts.append(TextPart(text))
            calls = m.get("tool_calls") or []
            if not isinstance(calls, list):
                raise BadRequest(f"{where}: 'tool_calls' must be a list")
            for j, call in enumerate(calls):
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise BadRequest(f"{where}.tool_calls[{j}] needs function.name")
                parts.append(
                    ToolCallPart(
                        call_id=str(call.get("id", f"call_{i}_{j}")),
                        name=fn["name"],
                        arguments=_load_arguments(fn.get("arguments"), f"{where}.tool_calls[{j}]"),
                    )
                )
            _append(messages, "assistant", parts)
        elif role == "tool":
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str):
                raise BadRequest(f"{where}: 'tool_call_id' is required for role 'tool'")
            _append(messages, "user", [ToolResultPart(call_id, _text_of(m.get("content"), where))])
        else:
            raise BadRequest(f"{where}: unknown role {role!r}")
    tools = []
    for i, t in enumerate(_tool_list(body)):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise BadRequest(
                f"tools[{i}] must be {{'type': 'function', 'function': {{'name': …}}}}"
            )
        tools.append(
            ToolSpec(fn["name"], fn.get("description"), fn.get("parameters") or {"type": "object"})
        )
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        function = choice.get("function")
        choice = function.get("name") if isinstance(function, dict) else None
    options = body.get("stream_options") or {}
    return TurnRequest(
        model=model,
        messages=messages,
        system="\n\n".join(system) or None,
        max_tokens=_optional_int(body, "max_completion_tokens", "max_tokens"),
        temperature=_optional_number(body, "temperature"),
        top_p=_optional_number(body, "top_p"),
        stop=_stop_list(body.get("stop"), "stop"),
        tools=tools,
        tool_choice=choice if isinstance(choice, str) else None,
        stream=bool(body.get("stream", False)),
        include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
        user=body.get("user") if isinstance(body.get("user"), str) else None,
        reasoning=ReasoningSpec(effort=effort)
        if isinstance(effort := body.get("reasoning_effort"), str)
        else None,
    )


def _append(messages: list[Message], role: str, parts: list[Part]) -> None:
    if messages and messages[-1].role == role:
        messages[-1].parts.extend(parts)
    else:
        messages.append(Message(role, parts))


def build_chat_request(turn: TurnRequest, model: str) -> JSONDict:
    out: list[JSONDict] = []
    if turn.system:
        out.append({"role": "system", "content": turn.system})
    for m in turn.messages:
        if m.role == "assistant":
            text = "".join(p.text for p in m.parts if isinstance(p, TextPart))
            msg: JSONDict = {"role": "assistant", "content": text or None}
            calls = [
                {
                    "id": p.call_id,
                    "type": "function",
                    "function": {"name": p.name, "arguments": orjson.dumps(p.arguments).decode()},
                }
                for p in m.parts
                if isinstance(p, ToolCallPart)
            ]
            if calls:
                msg["tool_calls"] = calls
            out.append(msg)
            continue
        text_parts: list[str] = []
        for p in m.parts:
            if isinstance(p, ToolResultPart):
                out.append({"role": "tool", "tool_call_id": p.call_id, "content": p.content})
            elif isinstance(p, TextPart):
                text_parts.append(p.text)
        if text_parts:
            out.append({"role": "user", "content": "".join(text_parts)})
    body: JSONDict = {
        "model": model,
        "messages": out,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if turn.max_tokens is not None:
        body["max_tokens"] = turn.max_tokens
    if turn.reasoning is not None and turn.reasoning.effort is not None:
        body["reasoning_effort"] = turn.reasoning.effort
    _copy_sampling(turn, body, stop_key="stop")
    if turn.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in turn.tools
        ]
        if turn.tool_choice in ("auto", "none", "required"):
            body["tool_choice"] = turn.tool_choice
        elif turn.tool_choice:
            body["tool_choice"] = {"type": "function", "function": {"name": turn.tool_choice}}
    return body


def _copy_sampling(turn: TurnRequest, body: JSONDict, stop_key: str) -> None:
    if turn.temperature is not None:
        body["temperature"] = turn.temperature
    if turn.top_p is not None:
        body["top_p"] = turn.top_p
    if turn.stop:
        body[stop_key] = turn.stop


def render_chat_response(result: TurnResult, model: str) -> JSONDict:
    message: JSONDict = {"role": "assistant", "content": result.text or None, "refusal": None}
    if result.tool_calls:
        message["tool_calls"] = [
            {
                "id": c.call_id or f"call_{number}",
                "type": "function",
                "function": {"name": c.name, "arguments": c.raw or "{}"},
            }
            for number, c in enumerate(result.tool_calls)
        ]
    finish = {
        ev.FINISH_PAUSE: "stop",
        ev.FINISH_REFUSAL: "content_filter",
    }.get(result.finish_reason or "stop", result.finish_reason or "stop")
    body: JSONDict = {
        "id": completion_id(result.response_id or "sluice"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": result.model or model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
    }
    if result.usage is not None:
        body["usage"] = chat_usage(result.usage)
    return body


def chat_usage(usage: ev.Usage) -> JSONDict:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error_body(status: int, message: str, code: str | None) -> JSONDict:
    kind = _OPENAI_ERROR_TYPES.get(
        status, "server_error" if status >= 500 else "invalid_request_error"
    )
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# ---------------------------------------------------------------------------------------------
# Anthropic Messages


def parse_messages_request(body: JSONDict) -> TurnRequest:
    model = _require(body, "model", str, "a string")
    max_tokens = _require(body, "max_tokens", int, "a positive integer")
    if max_tokens < 1:
        raise BadRequest("'max_tokens' must be a positive integer")
    raw_messages = _require(body, "messages", list, "a list of messages")
    if not raw_messages:
        raise BadRequest("'messages' must not be empty")
    messages: list[Message] = []
    for i, m in enumerate(raw_messages):
        where = f"messages.{i}"
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise BadRequest(f"{where}: 'role' must be 'user' or 'assistant'")
        content = m.get("content")
        parts: list[Part] = []
        if isinstance(content, str):
            parts.append(TextPart(content))
        elif isinstance(content, list):
            for j, block in enumerate(content):
                parts.append(_anthropic_block(block, f"{where}.content.{j}", m["role"]))
        else:
            raise BadRequest(f"{where}: 'content' must be a string or a list of blocks")
        _append(messages, m["role"], parts)
    system = body.get("system")
    tools = []
    for i, t in enumerate(_tool_list(body)):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise BadRequest(f"tools.{i}: 'name' is required")
        tools.append(
            ToolSpec(t["name"], t.get("description"), t.get("input_schema") or {"type": "object"})
        )
    choice = body.get("tool_choice")
    tool_choice = None
    if isinstance(choice, dict):
        name = choice.get("name")
        tool_choice = {"auto": "auto", "any": "required", "none": "none"}.get(
            str(choice.get("type")), name if isinstance(name, str) else None
        )
    return TurnRequest(
        model=model,
        messages=messages,
        system=_text_of(system, "system") if system is not None else None,
        max_tokens=max_tokens,
        temperature=_optional_number(body, "temperature"),
        top_p=_optional_number(body, "top_p"),
        stop=_stop_list(body.get("stop_sequences"), "stop_sequences"),
        tools=tools,
        tool_choice=tool_choice,
        stream=bool(body.get("stream", False)),
        include_usage=True,
    )


def _anthropic_block(block: Any, where: str, role: str) -> Part:
    if not isinstance(block, dict):
        raise BadRequest(f"{where} must be an object")
    kind = block.get("type")
    if kind == "text":
        return TextPart(str(block.get("text", "")))
    if kind in ("thinking", "redacted_thinking"):
        # A turn with thinking and tools is continued by sending its thinking blocks back,
        # signatures and all: kept for an Anthropic upstream, left out for the others.
        if role != "assistant":
            raise BadRequest(f"{where}: a {kind} block belongs in an assistant message")
        if kind == "redacted_thinking":
            return ThinkingPart("", _string(block, "data", where), redacted=True)
        return ThinkingPart(_string(block, "thinking", where), _string(block, "signature", where))
    if kind == "tool_use":
        return ToolCallPart(
            str(block.get("id", "")),
            str(block.get("name", "")),
            _load_arguments(block.get("input"), where),
        )
    if kind == "tool_result":
        return ToolResultPart(
            str(block.get("tool_use_id", "")),
            _text_of(block.get("content"), where),
            bool(block.get("is_error", False)),
        )
    raise BadRequest(
        f"{where}: content block of type {kind!r} cannot be translated between provider formats"
    )


def _string(block: JSONDict, key: str, where: str) -> str:
    value = block.get(key)
    if not isinstance(value, str):
        raise BadRequest(f"{where}: '{key}' must be a string")
    return value


def build_messages_request(turn: TurnRequest, model: str) -> JSONDict:
    out: list[JSONDict] = []
    for m in turn.messages:
        blocks: list[JSONDict] = []
        for p in m.parts:
            if isinstance(p, TextPart):
                if p.text:
                    blocks.append({"type": "text", "text": p.text})
            elif isinstance(p, ToolCallPart):
                blocks.append(
                    {"type": "tool_use", "id": p.call_id, "name": p.name, "input": p.arguments}
                )
            elif isinstance(p, ThinkingPart):
                # Only what Anthropic can check: a block without its signature (reasoning from
                # another provider) would be refused, and is left out like any other's.
                if p.redacted:
                    blocks.append({"type": "redacted_thinking", "data": p.signature})
                elif p.signature:
                    blocks.append(
                        {"type": "thinking", "thinking": p.text, "signature": p.signature}
                    )
            else:
                blocks.append(
                    {
                        "type": "tool_result",
                        "tool_use_id": p.call_id,
                        "content": p.content,
                        "is_error": p.is_error,
                    }
                )
        out.append({"role": m.role, "content": blocks})
    body: JSONDict = {
        "model": model,
        "messages": out,
        "max_tokens": turn.max_tokens or 4096,
        "stream": True,
    }
    if turn.system:
        body["system"] = turn.system
    _copy_sampling(turn, body, stop_key="stop_sequences")
    if turn.tools:
        body["tools"] = [
            {"name": t.name, "description": t.description or "", "input_schema": t.parameters}
            for t in turn.tools
        ]
        if turn.tool_choice == "required":
            body["tool_choice"] = {"type": "any"}
        elif turn.tool_choice in ("auto", "none"):
            body["tool_choice"] = {"type": turn.tool_choice}
        elif turn.tool_choice:
            body["tool_choice"] = {"type": "tool", "name": turn.tool_choice}
    return body


_ANTHROPIC_STOP = {
    ev.FINISH_STOP: "end_turn",
    ev.FINISH_LENGTH: "max_tokens",
    ev.FINISH_TOOL_CALLS: "tool_use",
    ev.FINISH_CONTENT_FILTER: "refusal",
    ev.FINISH_PAUSE: "pause_turn",
    ev.FINISH_REFUSAL: "refusal",
}


def render_messages_response(result: TurnResult, model: str) -> JSONDict:
    content: list[JSONDict] = []
    for block in result.thinking:
        if block.redacted:
            content.append({"type": "redacted_thinking", "data": block.signature})
        else:
            content.append(
                {"type": "thinking", "thinking": block.text, "signature": block.signature}
            )
    if result.text:
        content.append({"type": "text", "text": result.text})
    for number, c in enumerate(result.tool_calls):
        call_id = c.call_id or f"toolu_{number}"
        content.append(
            {"type": "tool_use", "id": call_id, "name": c.name, "input": c.arguments or {}}
        )
    usage = result.usage or ev.Usage()
    return {
        "id": anthropic_id("msg_", result.response_id or "sluice"),
        "type": "message",
        "role": "assistant",
        "model": result.model or model,
        "content": content,
        "stop_reason": _ANTHROPIC_STOP.get(result.finish_reason or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": {
            "input_tokens": uncached_input(usage),
            "output_tokens": usage.output_tokens,
            "cache_read_input_tokens": usage.cache_read_tokens,
            "cache_creation_input_tokens": usage.cache_write_tokens,
        },
    }


_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
    503: "overloaded_error",
}


def anthropic_error_body(status: int, message: str) -> JSONDict:
    kind = _ANTHROPIC_ERROR_TYPES.get(
        status, "api_error" if status >= 500 else "invalid_request_error"
    )
    return {"type": "error", "error": {"type": kind, "message": message}}


# ---------------------------------------------------------------------------------------------
# OpenAI Responses

#: Request fields that only a Responses upstream can act on: forwarded unchanged to one,
#: refused when the request is translated (another format has no word for them).
_RESPONSES_ONLY = {
    "previous_response_id": "it names a response stored by a Responses provider; send the "
    "whole conversation in 'input' instead",
    "conversation": "it names a conversation stored by a Responses provider; send the whole "
    "conversation in 'input' instead",
    "prompt": "it names a prompt template stored by a Responses provider",
}

#: Input item types that translate, besides messages; ``reasoning`` items are dropped (no
#: other format takes them back).
_RESPONSES_ITEMS = ("message", "function_call", "function_call_output", "reasoning")


def parse_responses_request(body: JSONDict, *, translating: bool = True) -> TurnRequest:
    """A Responses request (``input`` a string or a list of items, ``instructions``,
    function ``tools``...) as a ``TurnRequest``.

    With ``translating`` (the request goes to a provider of another format), what no other
    format can say is refused, naming the field: hosted tools, image and file parts,
    ``previous_response_id``, ``conversation``, ``prompt``, a structured ``text.format``,
    input items other than messages, function calls, their outputs and reasoning (reasoning
    items are dropped). Without it (the body goes unchanged to a Responses provider), those
    are left out of the ``TurnRequest`` only: the provider gets them in the body.
    """
    model = _require(body, "model", str, "a string")
    for key, why in _RESPONSES_ONLY.items():
        if body.get(key) is not None and translating:
            raise BadRequest(f"'{key}' cannot be translated between provider formats: {why}")
    system: list[str] = []
    messages: list[Message] = []
    raw_input = body.get("input")
    if isinstance(raw_input, str):
        messages.append(Message("user", [TextPart(raw_input)]))
    elif isinstance(raw_input, list):
        for i, item in enumerate(raw_input):
            _responses_item(item, f"input[{i}]", translating, system, messages)
    elif raw_input is not None:
        raise BadRequest("'input' must be a string or a list of items")
    elif translating or not any(body.get(key) is not None for key in _RESPONSES_ONLY):
        raise BadRequest("'input' is required")
    if translating and not messages:
        raise BadRequest("'input' must hold a message, a function call or its output")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise BadRequest("'instructions' must be a string")
    if instructions:
        system.insert(0, instructions)
    tools: list[ToolSpec] = []
    for i, tool in enumerate(_tool_list(body)):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            if translating or not isinstance(tool, dict):
                raise BadRequest(
                    f"tools[{i}]: tools of type {kind!r} cannot be translated between provider "
                    "formats; only 'function' tools can"
                )
            continue
        name, parameters = tool.get("name"), tool.get("parameters")
        if not isinstance(name, str):
            raise BadRequest(f"tools[{i}]: 'name' is required")
        description = tool.get("description")
        tools.append(
            ToolSpec(
                name,
                description if isinstance(description, str) else None,
                parameters if isinstance(parameters, dict) else {"type": "object"},
            )
        )
    _check_responses_options(body, translating)
    return TurnRequest(
        model=model,
        messages=messages,
        system="\n\n".join(system) or None,
        max_tokens=_optional_int(body, "max_output_tokens"),
        temperature=_optional_number(body, "temperature"),
        top_p=_optional_number(body, "top_p"),
        tools=tools,
        tool_choice=_responses_tool_choice(body.get("tool_choice"), translating),
        stream=body.get("stream") is True,
        include_usage=True,
        user=body.get("user") if isinstance(body.get("user"), str) else None,
        reasoning=_responses_reasoning(body.get("reasoning")),
    )


def _responses_item(
    item: Any, where: str, translating: bool, system: list[str], messages: list[Message]
) -> None:
    if not isinstance(item, dict):
        raise BadRequest(f"{where} must be an object")
    kind = item.get("type", "message" if "role" in item else None)
    if kind == "message":
        role = item.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise BadRequest(
                f"{where}: 'role' must be 'user', 'assistant', 'system' or 'developer'"
            )
        text = _responses_text(item.get("content"), where, translating)
        if role in ("system", "developer"):
            system.append(text)
        elif text or role == "user":
            _append(messages, role, [TextPart(text)])
    elif kind == "function_call":
        call_id, name = item.get("call_id"), item.get("name")
        if not isinstance(call_id, str) or not isinstance(name, str):
            raise BadRequest(f"{where}: a function_call needs 'call_id' and 'name'")
        arguments = _load_arguments(item.get("arguments"), where)
        _append(messages, "assistant", [ToolCallPart(call_id, name, arguments)])
    elif kind == "function_call_output":
        call_id = item.get("call_id")
        if not isinstance(call_id, str):
            raise BadRequest(f"{where}: a function_call_output needs 'call_id'")
        output = _responses_text(item.get("output"), where, translating, key="output")
        _append(messages, "user", [ToolResultPart(call_id, output)])
    elif translating and kind not in _RESPONSES_ITEMS:
        raise BadRequest(
            f"{where}: input items of type {kind!r} cannot be translated between provider "
            "formats; send messages, function calls and their outputs"
        )


def _responses_text(content: Any, where: str, translating: bool, key: str = "content") -> str:
    """The text of a message's ``content`` (or a call output's ``output``): a string or a
    list of text parts; other parts are refused when translating, else skipped."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if not isinstance(content, list):
        raise BadRequest(f"{where}: '{key}' must be a string or a list of parts")
    pieces = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            text = part.get("text")
            if not isinstance(text, str):
                raise BadRequest(f"{where}: a {kind} part needs 'text'")
            pieces.append(text)
        elif translating or not isinstance(part, dict):
            raise BadRequest(
                f"{where}: content part of type {kind!r} cannot be translated between provider "
                "formats; send text parts"
            )
    return "".join(pieces)


def _responses_tool_choice(choice: Any, translating: bool) -> str | None:
    if choice is None or choice in ("auto", "none", "required"):
        return choice  # type: ignore[no-any-return]
    if isinstance(choice, dict):
        name = choice.get("name")
        if choice.get("type") == "function" and isinstance(name, str):
            return name
        if not translating:
            return None  # a hosted tool's, or a list of allowed tools: the provider's own
        raise BadRequest(
            f"'tool_choice' of type {choice.get('type')!r} cannot be translated between "
            "provider formats; choose 'auto', 'none', 'required' or a function"
        )
    raise BadRequest(
        "'tool_choice' must be 'auto', 'none', 'required' or {'type': 'function', 'name': …}"
    )


def _responses_reasoning(reasoning: Any) -> ReasoningSpec | None:
    """``reasoning.effort``, and ``reasoning.summary`` (any: the client wants the reasoning's
    summary in the answer)."""
    if reasoning is None:
        return None
    if not isinstance(reasoning, dict):
        raise BadRequest("'reasoning' must be an object")
    effort, summary = reasoning.get("effort"), reasoning.get("summary")
    for key, value in (("effort", effort), ("summary", summary)):
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"'reasoning.{key}' must be a string")
    if effort is None and summary is None:
        return None
    return ReasoningSpec(effort=effort, include=summary is not None)


def _check_responses_options(body: JSONDict, translating: bool) -> None:
    """The types of the options Sluice reads or passes over, and ``text.format``."""
    for key in ("stream", "store", "background", "parallel_tool_calls"):
        if body.get(key) is not None and not isinstance(body[key], bool):
            raise BadRequest(f"'{key}' must be a boolean")
    metadata = body.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise BadRequest("'metadata' must be an object of strings")
    text = body.get("text")
    if text is not None and not isinstance(text, dict):
        raise BadRequest("'text' must be an object")
    form = text.get("format") if isinstance(text, dict) else None
    kind = form.get("type") if isinstance(form, dict) else form
    if translating and kind not in (None, "text"):
        raise BadRequest(
            f"'text.format' of type {kind!r} cannot be translated between provider "
            "formats; only plain text can"
        )


def render_responses_response(result: TurnResult, model: str) -> JSONDict:
    """A finished turn as a Responses response object: its reasoning, its text and its calls
    as output items, in that order, written by the stream encoder (so in the shape its
    ``response.completed`` carries). The gateway's own endpoint renders a session's events
    instead, which keeps their order and the stream's item ids."""
    encoder = ResponsesStreamEncoder(
        result.response_id or "resp_sluice",
        model,
        created_at=int(time.time()),
        starting_after=2**62,
    )
    events: list[ev.Event] = []
    if result.reasoning:
        events.append(ev.ReasoningDelta(result.reasoning))
    if result.text:
        events.append(ev.TextDelta(result.text))
    for index, call in enumerate(result.tool_calls):
        arguments = call.arguments
        events.append(
            ev.ToolCallDone(index, call.call_id, call.name, call.raw, arguments, call.status)
        )
    if result.usage is not None:
        events.append(result.usage)
    events.append(result.error or ev.Finish(result.finish_reason or ev.FINISH_STOP))
    for event in events:
        encoder.encode(event)
    return encoder.response()


def build_responses_request(turn: TurnRequest, model: str) -> JSONDict:
    items: list[JSONDict] = []
    for m in turn.messages:
        for p in m.parts:
            if isinstance(p, TextPart):
                kind = "output_text" if m.role == "assistant" else "input_text"
                items.append(
                    {"type": "message", "role": m.role, "content": [{"type": kind, "text": p.text}]}
                )
            elif isinstance(p, ToolCallPart):
                items.append(
                    {
                        "type": "function_call",
                        "call_id": p.call_id,
                        "name": p.name,
                        "arguments": orjson.dumps(p.arguments).decode(),
                    }
                )
            elif isinstance(p, ToolResultPart):
                items.append(
                    {"type": "function_call_output", "call_id": p.call_id, "output": p.content}
                )
            # (another provider's reasoning, ThinkingPart, is not Responses input)
    body: JSONDict = {"model": model, "input": items, "stream": True, "store": False}
    if turn.system:
        body["instructions"] = turn.system
    if turn.max_tokens is not None:
        body["max_output_tokens"] = turn.max_tokens
    if turn.temperature is not None:
        body["temperature"] = turn.temperature
    if turn.top_p is not None:
        body["top_p"] = turn.top_p
    reasoning = turn.reasoning
    if reasoning is not None and (reasoning.effort is not None or reasoning.include):
        body["reasoning"] = {"effort": reasoning.effort} | (
            {"summary": "auto"} if reasoning.include else {}
        )
    if turn.tools:
        body["tools"] = [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
            }
            for t in turn.tools
        ]
        if turn.tool_choice in ("auto", "none", "required"):
            body["tool_choice"] = turn.tool_choice
        elif turn.tool_choice:
            body["tool_choice"] = {"type": "function", "name": turn.tool_choice}
    return body


# ---------------------------------------------------------------------------------------------
# Native API (``POST /api/sessions``): the OpenAI Chat shape, plus Sluice's own options.


def parse_native_request(body: JSONDict) -> TurnRequest:
    """The Chat request shape; ``"prompt": "…"`` may stand in for a one-message ``messages``."""
    if "messages" not in body and isinstance(body.get("prompt"), str):
        body = {**body, "messages": [{"role": "user", "content": body["prompt"]}]}
    turn = parse_chat_request(body)
    turn.stream = True
    turn.include_usage = True
    return turn


# ---------------------------------------------------------------------------------------------
# Passthrough: a client's body forwarded to an upstream of its own format


def forward_request(body: JSONDict, model: str) -> JSONDict:
    """The client's body as it is, with the upstream's model and streaming on."""
    forwarded = dict(body)
    forwarded["model"] = model
    forwarded["stream"] = True
    return forwarded


def forward_chat_request(body: JSONDict, model: str) -> JSONDict:
    """As ``forward_request``, and usage asked for: the record needs it, whether or not the
    client asked (a client that did not is not sent the usage chunk)."""
    forwarded = forward_request(body, model)
    options = forwarded.get("stream_options")
    options = dict(options) if isinstance(options, dict) else {}
    options["include_usage"] = True
    forwarded["stream_options"] = options
    return forwarded
