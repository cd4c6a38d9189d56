"""The ``agent`` scenario's requests and answers in each wire format, written and read by hand
(raw JSON, no SDK): a conversation in neutral terms becomes each format's request body, and
each format's stream or body is checked frame by frame and read back as text, calls and stop;
and the tools, question and results the agent tests share."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .helpers import LOOKUP_ORDER_SCHEMA, check_gemini_stream, gemini_chunks, split_sse

MODEL = "agent"


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    schema: dict[str, Any]


@dataclass(frozen=True)
class Call:
    id: str
    name: str
    args: dict[str, Any]


@dataclass(frozen=True)
class User:
    text: str


@dataclass(frozen=True)
class Assistant:
    text: str
    calls: tuple[Call, ...] = ()


@dataclass(frozen=True)
class Result:
    call: Call
    text: str
    is_error: bool = False


@dataclass(frozen=True)
class Results:
    results: tuple[Result, ...]


Item = User | Assistant | Results


@dataclass
class Answer:
    """A turn read back: its text, its calls (arguments parsed), the format's stop value, and
    the output tokens its usage reports."""

    text: str = ""
    calls: list[Call] = field(default_factory=list)
    stop: str | None = None
    output_tokens: int | None = None


class Format:
    """One wire format as a test drives it."""

    name: str
    #: the stop value of a turn that calls tools, and of one that answers in text
    tool_stop: str
    text_stop: str
    #: the stop value of a turn cut by the token budget
    length_stop: str
    #: whether a tool result can be flagged as an error
    flags_errors: bool

    def path(self, *, stream: bool) -> str:
        raise NotImplementedError

    def body(
        self,
        items: list[Item],
        tools: list[Tool],
        *,
        stream: bool,
        choice_none: bool = False,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        raise NotImplementedError

    def read_stream(self, raw: bytes) -> Answer:
        raise NotImplementedError

    def read_body(self, raw: bytes) -> Answer:
        raise NotImplementedError


class Chat(Format):
    name = "chat"
    length_stop = "length"
    tool_stop = "tool_calls"
    text_stop = "stop"
    flags_errors = False

    def path(self, *, stream: bool) -> str:
        return "/v1/chat/completions"

    def body(
        self,
        items: list[Item],
        tools: list[Tool],
        *,
        stream: bool,
        choice_none: bool = False,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": "Be brief."}]
        for item in items:
            match item:
                case User(text):
                    messages.append({"role": "user", "content": [{"type": "text", "text": text}]})
                case Assistant(text, calls):
                    message: dict[str, Any] = {"role": "assistant", "content": text or None}
                    if calls:
                        message["tool_calls"] = [
                            {
                                "id": call.id,
                                "type": "function",
                                "function": {"name": call.name, "arguments": json.dumps(call.args)},
                            }
                            for call in calls
                        ]
                    messages.append(message)
                case Results(results):
                    messages += [
                        {"role": "tool", "tool_call_id": result.call.id, "content": result.text}
                        for result in results
                    ]
        body: dict[str, Any] = {
            "model": MODEL,
            "messages": messages,
            "stream": stream,
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.schema,
                    },
                }
                for tool in tools
            ],
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if choice_none:
            body["tool_choice"] = "none"
        if max_tokens is not None:
            body["max_completion_tokens"] = max_tokens
        return body

    def read_stream(self, raw: bytes) -> Answer:
        frames = split_sse(raw.decode())
        assert frames[-1] == (None, "[DONE]")
        assert all(event is None for event, _ in frames)
        chunks = [json.loads(data) for _, data in frames[:-1]]
        assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
        assert len({chunk["id"] for chunk in chunks}) == 1
        *body, usage = chunks
        assert usage["choices"] == []
        assert body[0]["choices"][0]["delta"]["role"] == "assistant"
        answer = Answer(output_tokens=usage["usage"]["completion_tokens"])
        arguments: dict[int, list[str]] = {}
        opened: dict[int, tuple[str, str]] = {}
        for chunk in body:
            [choice] = chunk["choices"]
            delta = choice["delta"]
            answer.text += delta.get("content") or ""
            for call in delta.get("tool_calls", []):
                if "id" in call:
                    assert call["index"] not in opened
                    opened[call["index"]] = (call["id"], call["function"]["name"])
                    assert call["function"]["arguments"] == ""
                else:
                    assert set(call) == {"index", "function"}
                arguments.setdefault(call["index"], []).append(call["function"]["arguments"])
            if choice["finish_reason"] is not None:
                assert chunk is body[-1] and delta == {}
                answer.stop = choice["finish_reason"]
        answer.calls = [
            Call(opened[i][0], opened[i][1], json.loads("".join(arguments[i])))
            for i in sorted(opened)
        ]
        return answer

    def read_body(self, raw: bytes) -> Answer:
        body = json.loads(raw)
        assert body["object"] == "chat.completion"
        [choice] = body["choices"]
        message = choice["message"]
        calls = [
            Call(call["id"], call["function"]["name"], json.loads(call["function"]["arguments"]))
            for call in message.get("tool_calls") or []
        ]
        return Answer(
            message["content"] or "",
            calls,
            choice["finish_reason"],
            body["usage"]["completion_tokens"],
        )


class Responses(Format):
    name = "responses"
    length_stop = "incomplete"
    tool_stop = "completed"
    text_stop = "completed"
    flags_errors = False

    def path(self, *, stream: bool) -> str:
        return "/v1/responses"

    def body(
        self,
        items: list[Item],
        tools: list[Tool],
        *,
        stream: bool,
        choice_none: bool = False,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        given: list[dict[str, Any]] = []
        for item in items:
            match item:
                case User(text):
                    given.append({"role": "user", "content": text})
                case Assistant(text, calls):
                    if text:
                        given.append(
                            {
                                "type": "message",
                                "role": "assistant",
                                "content": [{"type": "output_text", "text": text}],
                            }
                        )
                    given += [
                        {
                            "type": "function_call",
                            "call_id": call.id,
                            "name": call.name,
                            "arguments": json.dumps(call.args),
                        }
                        for call in calls
                    ]
                case Results(results):
                    given += [
                        {
                            "type": "function_call_output",
                            "call_id": result.call.id,
                            "output": result.text,
                        }
                        for result in results
                    ]
        body: dict[str, Any] = {
            "model": MODEL,
            "instructions": "Be brief.",
            "input": given,
            "stream": stream,
            "tools": [
                {
                    "type": "function",
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.schema,
                }
                for tool in tools
            ],
        }
        if choice_none:
            body["tool_choice"] = "none"
        if max_tokens is not None:
            body["max_output_tokens"] = max_tokens
        return body

    def read_stream(self, raw: bytes) -> Answer:
        frames = split_sse(raw.decode())
        events = [json.loads(data) for _, data in frames]
        assert [name for name, _ in frames] == [event["type"] for event in events]
        assert [event["sequence_number"] for event in events] == list(range(len(events)))
        assert [event["type"] for event in events[:2]] == [
            "response.created",
            "response.in_progress",
        ]
        final = events[-1]
        assert final["type"] in ("response.completed", "response.incomplete")
        assert all(event["type"] not in ("response.completed", "error") for event in events[:-1])
        text = "".join(
            event["delta"] for event in events if event["type"] == "response.output_text.delta"
        )
        done = [event["item"] for event in events if event["type"] == "response.output_item.done"]
        assert done == final["response"]["output"]
        answer = self._read_response(final["response"])
        assert answer.text == text
        return answer

    def read_body(self, raw: bytes) -> Answer:
        return self._read_response(json.loads(raw))

    def _read_response(self, response: dict[str, Any]) -> Answer:
        assert response["object"] == "response"
        text = "".join(
            part["text"]
            for item in response["output"]
            if item["type"] == "message"
            for part in item["content"]
        )
        calls = [
            Call(item["call_id"], item["name"], json.loads(item["arguments"]))
            for item in response["output"]
            if item["type"] == "function_call"
        ]
        return Answer(text, calls, response["status"], response["usage"]["output_tokens"])


class Messages(Format):
    name = "messages"
    length_stop = "max_tokens"
    tool_stop = "tool_use"
    text_stop = "end_turn"
    flags_errors = True

    def path(self, *, stream: bool) -> str:
        return "/v1/messages"

    def body(
        self,
        items: list[Item],
        tools: list[Tool],
        *,
        stream: bool,
        choice_none: bool = False,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        for item in items:
            match item:
                case User(text):
                    messages.append({"role": "user", "content": text})
                case Assistant(text, calls):
                    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
                    blocks += [
                        {"type": "tool_use", "id": call.id, "name": call.name, "input": call.args}
                        for call in calls
                    ]
                    messages.append({"role": "assistant", "content": blocks})
                case Results(results):
                    blocks = [
                        {
                            "type": "tool_result",
                            "tool_use_id": result.call.id,
                            "content": [{"type": "text", "text": result.text}],
                            "is_error": result.is_error,
                        }
                        for result in results
                    ]
                    messages.append({"role": "user", "content": blocks})
        body: dict[str, Any] = {
            "model": MODEL,
            "system": "Be brief.",
            "max_tokens": max_tokens or 4096,
            "messages": messages,
            "stream": stream,
            "tools": [
                {"name": tool.name, "description": tool.description, "input_schema": tool.schema}
                for tool in tools
            ],
        }
        if choice_none:
            body["tool_choice"] = {"type": "none"}
        return body

    def read_stream(self, raw: bytes) -> Answer:
        frames = split_sse(raw.decode())
        events = [json.loads(data) for _, data in frames]
        assert [name for name, _ in frames] == [event["type"] for event in events]
        assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
        assert events[-2]["type"] == "message_delta"
        answer = Answer(
            stop=events[-2]["delta"]["stop_reason"],
            output_tokens=events[-2]["usage"]["output_tokens"],
        )
        blocks: list[dict[str, Any]] = []
        open_index: int | None = None
        for event in events[1:-2]:
            match event["type"]:
                case "content_block_start":
                    assert open_index is None and event["index"] == len(blocks)
                    open_index = event["index"]
                    blocks.append({**event["content_block"], "json": []})
                case "content_block_delta":
                    assert event["index"] == open_index
                    delta = event["delta"]
                    block = blocks[event["index"]]
                    if delta["type"] == "text_delta":
                        assert block["type"] == "text"
                        block["text"] += delta["text"]
                    else:
                        assert (delta["type"], block["type"]) == ("input_json_delta", "tool_use")
                        block["json"].append(delta["partial_json"])
                case "content_block_stop":
                    assert event["index"] == open_index
                    open_index = None
                case "ping":
                    pass
                case other:
                    raise AssertionError(f"unexpected event {other}")
        assert open_index is None
        for block in blocks:
            if block["type"] == "text":
                answer.text += block["text"]
            else:
                args = json.loads("".join(block["json"]) or "{}")
                answer.calls.append(Call(block["id"], block["name"], args))
        return answer

    def read_body(self, raw: bytes) -> Answer:
        body = json.loads(raw)
        assert body["type"] == "message"
        text = "".join(block["text"] for block in body["content"] if block["type"] == "text")
        calls = [
            Call(block["id"], block["name"], block["input"])
            for block in body["content"]
            if block["type"] == "tool_use"
        ]
        return Answer(text, calls, body["stop_reason"], body["usage"]["output_tokens"])


class Gemini(Format):
    name = "gemini"
    length_stop = "MAX_TOKENS"
    tool_stop = "STOP"
    text_stop = "STOP"
    flags_errors = True

    def path(self, *, stream: bool) -> str:
        if stream:
            return f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
        return f"/v1beta/models/{MODEL}:generateContent"

    def body(
        self,
        items: list[Item],
        tools: list[Tool],
        *,
        stream: bool,
        choice_none: bool = False,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        contents: list[dict[str, Any]] = []
        for item in items:
            match item:
                case User(text):
                    contents.append({"role": "user", "parts": [{"text": text}]})
                case Assistant(text, calls):
                    parts: list[dict[str, Any]] = [{"text": text}] if text else []
                    parts += [
                        {"functionCall": {"name": call.name, "args": call.args}} for call in calls
                    ]
                    contents.append({"role": "model", "parts": parts})
                case Results(results):
                    parts = [
                        {
                            "functionResponse": {
                                "name": result.call.name,
                                "response": {"error" if result.is_error else "output": result.text},
                            }
                        }
                        for result in results
                    ]
                    contents.append({"role": "user", "parts": parts})
        body: dict[str, Any] = {
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": contents,
            "tools": [
                {
                    "functionDeclarations": [
                        {
                            "name": tool.name,
                            "description": tool.description,
                            "parametersJsonSchema": tool.schema,
                        }
                        for tool in tools
                    ]
                }
            ],
        }
        if choice_none:
            body["toolConfig"] = {"functionCallingConfig": {"mode": "NONE"}}
        if max_tokens is not None:
            body["generationConfig"] = {"maxOutputTokens": max_tokens}
        return body

    def read_stream(self, raw: bytes) -> Answer:
        chunks = gemini_chunks(raw)
        check_gemini_stream(chunks)
        parts = [part for chunk in chunks for part in chunk["candidates"][0]["content"]["parts"]]
        last = chunks[-1]
        return self._read(parts, last["candidates"][0]["finishReason"], last["usageMetadata"])

    def read_body(self, raw: bytes) -> Answer:
        body = json.loads(raw)
        [candidate] = body["candidates"]
        return self._read(
            candidate["content"]["parts"], candidate["finishReason"], body["usageMetadata"]
        )

    def _read(self, parts: list[Any], stop: str, usage: dict[str, Any]) -> Answer:
        answer = Answer(stop=stop, output_tokens=usage["candidatesTokenCount"])
        for part in parts:
            if "functionCall" in part:
                call = part["functionCall"]
                # Gemini ties results to calls by name: the name stands for the id.
                answer.calls.append(Call(call["name"], call["name"], call["args"]))
            else:
                answer.text += part["text"]
        return answer


FORMATS: list[Format] = [Chat(), Responses(), Messages(), Gemini()]

LOOKUP_ORDER = Tool("lookup_order", "Look up an order by id.", LOOKUP_ORDER_SCHEMA)
SHIPPING_ESTIMATE = Tool(
    "shipping_estimate",
    "Estimate when an order arrives.",
    {
        "type": "object",
        "properties": {"order_id": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["order_id"],
    },
)
CALCULATOR = Tool(
    "calculator",
    "Arithmetic.",
    {
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
    },
)
CLOCK = Tool("clock", "The time now.", {"type": "object", "properties": {}})
TOOLS = [LOOKUP_ORDER, SHIPPING_ESTIMATE, CALCULATOR, CLOCK]

QUESTION = "Where is my order A-1042, and what is the shipping time?"
ORDER_RESULT = "Order A-1042 shipped on 2 May by courier."
SHIPPING_RESULT = "Arrives within 3 days.\nTracking:   TRK-77"
ANSWER = (
    "Here is what I found. lookup_order: Order A-1042 shipped on 2 May by courier. "
    "shipping_estimate: Arrives within 3 days. Tracking: TRK-77. "
    "Let me know if you need anything else."
)
