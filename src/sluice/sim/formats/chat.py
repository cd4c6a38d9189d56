"""OpenAI Chat Completions (``POST /v1/chat/completions``): chunks, bodies and errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sluice.sim.conversation import (
    CallNames,
    Conversation,
    DeclaredTool,
    ToolResult,
    Turn,
    as_list,
    as_mapping,
    openai_choice,
    text_of,
)
from sluice.sim.formats.base import (
    ErrorKind,
    ErrorReply,
    Exchange,
    collect_text,
    dumps,
    openai_error,
    positive_int,
)
from sluice.sim.script import (
    ConnectionReset,
    Event,
    Finish,
    MalformedFrame,
    ReasoningDelta,
    StopReason,
    StreamError,
    TextDelta,
    ToolArgsDelta,
    ToolCallStart,
    Transcript,
)

FINGERPRINT = "fp_sim0000000"
FINISH_REASONS: Mapping[StopReason, str] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
}
STREAM_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"
STREAM_ERROR = {
    "error": {
        "message": STREAM_ERROR_MESSAGE,
        "type": "server_error",
        "param": None,
        "code": "server_error",
    }
}
DONE = b"data: [DONE]\n\n"


def usage(exchange: Exchange, transcript: Transcript) -> dict[str, Any]:
    return {
        "prompt_tokens": exchange.input_tokens,
        "completion_tokens": transcript.tokens,
        "total_tokens": exchange.input_tokens + transcript.tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": transcript.reasoning_tokens},
    }


class ChatStream:
    """``chat.completion.chunk`` frames, shaped like the recorded OpenAI streams.

    The first chunk carries the role (``content: ""`` before text, ``null`` before a tool
    call); tool calls open with id, type and name and then send argument fragments by index;
    ``finish_reason`` comes in a chunk with an empty delta; the usage chunk (``choices: []``)
    only when ``stream_options.include_usage`` is true; then ``data: [DONE]``. Reasoning goes
    in ``delta.reasoning_content``, the convention of vLLM and DeepSeek.
    """

    def __init__(self, exchange: Exchange, transcript: Transcript, *, include_usage: bool) -> None:
        self._exchange = exchange
        self._transcript = transcript
        self._include_usage = include_usage
        self._started = False
        head = dumps(
            {
                "id": f"chatcmpl-{exchange.uid}",
                "object": "chat.completion.chunk",
                "created": exchange.created,
                "model": exchange.model,
                "system_fingerprint": FINGERPRINT,
            }
        )
        # Every chunk shares this prefix; only the choices differ.
        self._head = b"data: " + head[:-1] + b',"choices":'

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._head + dumps([choice]) + b"}\n\n"

    def _role(self, event: Event) -> bytes:
        if isinstance(event, ToolCallStart):
            return self._chunk({"role": "assistant", "content": None})
        return self._chunk({"role": "assistant", "content": "", "refusal": None})

    def encode(self, event: Event) -> bytes:
        opening = b""
        if not self._started:
            self._started = True
            opening = self._role(event)
        return opening + self._frame(event)

    def _frame(self, event: Event) -> bytes:
        match event:
            case TextDelta(text):
                return self._chunk({"content": text})
            case ReasoningDelta(text):
                return self._chunk({"reasoning_content": text})
            case ToolCallStart(index, name):
                call = {
                    "index": index,
                    "id": self._exchange.tool_call_id("call_", index),
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
                return self._chunk({"tool_calls": [call]})
            case ToolArgsDelta(index, fragment):
                return self._chunk(
                    {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}
                )
            case Finish(reason):
                frames = self._chunk({}, FINISH_REASONS[reason])
                if self._include_usage:
                    frames += (
                        self._head
                        + b'[],"usage":'
                        + dumps(usage(self._exchange, self._transcript))
                        + b"}\n\n"
                    )
                return frames + DONE
            case MalformedFrame():
                # A chunk cut off inside a string: the data line is not JSON.
                return self._head + b'[{"index":0,"delta":{"content":"\n\n'
            case StreamError():
                return b"data: " + dumps(STREAM_ERROR) + b"\n\n"
            case ConnectionReset():
                return b""


class ChatFormat:
    name = "openai-chat"
    request_id_header = "x-request-id"
    stream_error: tuple[ErrorKind, str] = ("server_error", STREAM_ERROR_MESSAGE)

    def prompt(self, body: Mapping[str, Any]) -> str:
        return "\n".join(collect_text(body.get("messages", [])))

    def max_tokens(self, body: Mapping[str, Any]) -> int | None:
        return positive_int(body, "max_completion_tokens", "max_tokens")

    def conversation(self, body: Mapping[str, Any]) -> Conversation:
        """``tools[].function``, ``tool_choice``, and the messages: ``user`` text, ``assistant``
        text and ``tool_calls``, ``tool`` results tied to their call by ``tool_call_id``."""
        tools = []
        for entry in map(as_mapping, as_list(body.get("tools"))):
            function = as_mapping(entry.get("function"))
            tool = DeclaredTool.of(
                function.get("name"), function.get("description"), function.get("parameters")
            )
            if entry.get("type", "function") == "function" and tool is not None:
                tools.append(tool)
        names = CallNames()
        turns: list[Turn] = []
        for at, message in enumerate(map(as_mapping, as_list(body.get("messages")))):
            content = message.get("content")
            match message.get("role"):
                case "user":
                    turns.append(Turn("user", text_of(content)))
                case "assistant":
                    calls = tuple(
                        names.add(call.get("id"), as_mapping(call.get("function")).get("name"))
                        for call in map(as_mapping, as_list(message.get("tool_calls")))
                    )
                    turns.append(Turn("assistant", text_of(content), calls=calls))
                case "tool":
                    name = names.name(message.get("tool_call_id"), f"messages[{at}]")
                    turns.append(Turn("user", results=(ToolResult(name, text_of(content)),)))
        return Conversation(tuple(tools), openai_choice(body.get("tool_choice")), tuple(turns))

    def stream(self, exchange: Exchange, transcript: Transcript) -> ChatStream:
        options = exchange.body.get("stream_options")
        include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
        return ChatStream(exchange, transcript, include_usage=include_usage)

    def render(self, exchange: Exchange, transcript: Transcript) -> bytes:
        text = transcript.text
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text if text or not transcript.tool_calls else None,
            "refusal": None,
            "annotations": [],
        }
        if transcript.reasoning_parts:
            message["reasoning_content"] = transcript.reasoning
        if transcript.tool_calls:
            message["tool_calls"] = [
                {
                    "id": exchange.tool_call_id("call_", call.index),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in transcript.tool_calls
            ]
        reason = transcript.finish_reason or "stop"
        body = {
            "id": f"chatcmpl-{exchange.uid}",
            "object": "chat.completion",
            "created": exchange.created,
            "model": exchange.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": FINISH_REASONS[reason],
                }
            ],
            "usage": usage(exchange, transcript),
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
        }
        return dumps(body)

    def error(self, kind: ErrorKind, message: str) -> ErrorReply:
        return openai_error(kind, message)
