"""Anthropic Messages (``POST /v1/messages``): typed SSE events, message bodies and errors."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any, Literal

import orjson

from sluice.sim.conversation import (
    CallNames,
    ChoiceMode,
    Conversation,
    DeclaredTool,
    ToolChoice,
    ToolResult,
    Turn,
    as_list,
    as_mapping,
    text_of,
)
from sluice.sim.formats.base import (
    ErrorKind,
    ErrorReply,
    Exchange,
    collect_text,
    dumps,
    positive_int,
    sse,
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

BlockKind = Literal["text", "thinking", "tool_use"]

STOP_REASONS: Mapping[StopReason, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
}
# The real API writes this one frame with a space after the colon.
PING = b'event: ping\ndata: {"type": "ping"}\n\n'
STREAM_ERROR = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

_ERRORS: Mapping[ErrorKind, tuple[int, str]] = {
    "rate_limit": (429, "rate_limit_error"),
    "overloaded": (529, "overloaded_error"),
    "model_not_found": (404, "not_found_error"),
    "invalid_request": (400, "invalid_request_error"),
    "request_too_large": (413, "request_too_large"),
    "server_error": (500, "api_error"),
    "authentication": (401, "authentication_error"),
}


def _frame(payload: dict[str, Any]) -> bytes:
    return sse(payload["type"], dumps(payload))


def signature(exchange: Exchange) -> str:
    """A stand-in for the opaque signature that closes a thinking block."""
    return base64.b64encode(hashlib.sha512(exchange.uid.encode()).digest()).decode()


def message_id(exchange: Exchange) -> str:
    return f"msg_01{exchange.uid[:24]}"


class MessagesStream:
    """``message_start``, content blocks by index, ``message_delta``, ``message_stop``.

    A ``ping`` follows the first ``content_block_start`` as in the real API. A thinking block
    ends with a ``signature_delta``. A tool block opens with ``partial_json: ""``, except a
    tool called with no arguments, which sends no ``input_json_delta`` at all. A turn cut by
    ``max_tokens`` inside a tool block leaves that block without ``content_block_stop``, as
    in the recorded stream ``anthropic-tool-args-cut-by-max-tokens.sse``.
    """

    def __init__(self, exchange: Exchange, transcript: Transcript) -> None:
        self._exchange = exchange
        self._transcript = transcript
        self._started = False
        self._pinged = False
        self._index = -1
        self._open: BlockKind | None = None
        self._silent_tools: set[int] = set()

    def encode(self, event: Event) -> bytes:
        frames: list[bytes] = []
        if not self._started:
            self._started = True
            frames.append(self._message_start())
        match event:
            case TextDelta(text):
                self._ensure("text", {"type": "text", "text": ""}, frames)
                frames.append(self._delta({"type": "text_delta", "text": text}))
            case ReasoningDelta(text):
                thinking = {"type": "thinking", "thinking": "", "signature": ""}
                self._ensure("thinking", thinking, frames)
                frames.append(self._delta({"type": "thinking_delta", "thinking": text}))
            case ToolCallStart(index, name, has_arguments):
                block = {
                    "type": "tool_use",
                    "id": self._exchange.tool_call_id("toolu_01", index),
                    "name": name,
                    "input": {},
                }
                self._start("tool_use", block, frames)
                if has_arguments:
                    frames.append(self._delta({"type": "input_json_delta", "partial_json": ""}))
                else:
                    self._silent_tools.add(index)
            case ToolArgsDelta(index, fragment):
                if index not in self._silent_tools:
                    delta = {"type": "input_json_delta", "partial_json": fragment}
                    frames.append(self._delta(delta))
            case Finish(reason):
                if not (reason == "length" and self._open == "tool_use"):
                    self._stop(frames)
                frames.append(
                    _frame(
                        {
                            "type": "message_delta",
                            "delta": {"stop_reason": STOP_REASONS[reason], "stop_sequence": None},
                            "usage": {"output_tokens": self._transcript.tokens},
                        }
                    )
                )
                frames.append(_frame({"type": "message_stop"}))
            case MalformedFrame():
                # A delta cut off inside a string: the data line is not JSON.
                frames.append(
                    b"event: content_block_delta\ndata: "
                    + b'{"type":"content_block_delta","index":%d,"delta":{"type":"' % self._index
                    + b"\n\n"
                )
            case StreamError():
                frames.append(_frame(STREAM_ERROR))
            case ConnectionReset():
                pass
        return b"".join(frames)

    def _message_start(self) -> bytes:
        message: dict[str, Any] = {
            "id": message_id(self._exchange),
            "type": "message",
            "role": "assistant",
            "model": self._exchange.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self._exchange.input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
                "service_tier": "standard",
            },
        }
        return _frame({"type": "message_start", "message": message})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _frame({"type": "content_block_delta", "index": self._index, "delta": delta})

    def _ensure(self, kind: BlockKind, block: dict[str, Any], frames: list[bytes]) -> None:
        if self._open != kind:
            self._start(kind, block, frames)

    def _start(self, kind: BlockKind, block: dict[str, Any], frames: list[bytes]) -> None:
        self._stop(frames)
        self._index += 1
        self._open = kind
        frames.append(
            _frame({"type": "content_block_start", "index": self._index, "content_block": block})
        )
        if not self._pinged:
            self._pinged = True
            frames.append(PING)

    def _stop(self, frames: list[bytes]) -> None:
        if self._open is None:
            return
        if self._open == "thinking":
            frames.append(
                self._delta({"type": "signature_delta", "signature": signature(self._exchange)})
            )
        frames.append(_frame({"type": "content_block_stop", "index": self._index}))
        self._open = None


class MessagesFormat:
    name = "anthropic-messages"
    request_id_header = "request-id"
    stream_error: tuple[ErrorKind, str] = ("overloaded", "Overloaded")

    def prompt(self, body: Mapping[str, Any]) -> str:
        parts = [*collect_text(body.get("system", [])), *collect_text(body.get("messages", []))]
        return "\n".join(parts)

    def max_tokens(self, body: Mapping[str, Any]) -> int | None:
        # The real API requires it; a gateway that forgets it should hear about it here.
        if "max_tokens" not in body:
            raise ValueError("max_tokens: Field required")
        return positive_int(body, "max_tokens")

    def conversation(self, body: Mapping[str, Any]) -> Conversation:
        """Client ``tools`` (``input_schema``; server tools are the provider's to run, and
        left out), ``tool_choice``, and the messages: text blocks, ``tool_use`` blocks, and
        ``tool_result`` blocks tied to their call by ``tool_use_id``, ``is_error`` kept."""
        tools = []
        for entry in map(as_mapping, as_list(body.get("tools"))):
            tool = DeclaredTool.of(
                entry.get("name"), entry.get("description"), entry.get("input_schema")
            )
            if entry.get("type", "custom") == "custom" and tool is not None:
                tools.append(tool)
        names = CallNames()
        turns: list[Turn] = []
        for at, message in enumerate(map(as_mapping, as_list(body.get("messages")))):
            content = message.get("content")
            blocks = [as_mapping(block) for block in as_list(content)]
            match message.get("role"):
                case "user":
                    results = tuple(
                        ToolResult(
                            names.name(block.get("tool_use_id"), f"messages[{at}]"),
                            text_of(block.get("content")),
                            block.get("is_error") is True,
                        )
                        for block in blocks
                        if block.get("type") == "tool_result"
                    )
                    turns.append(Turn("user", text_of(content), results))
                case "assistant":
                    calls = tuple(
                        names.add(block.get("id"), block.get("name"))
                        for block in blocks
                        if block.get("type") == "tool_use"
                    )
                    turns.append(Turn("assistant", text_of(content), calls=calls))
        return Conversation(tuple(tools), _choice(body.get("tool_choice")), tuple(turns))

    def stream(self, exchange: Exchange, transcript: Transcript) -> MessagesStream:
        return MessagesStream(exchange, transcript)

    def render(self, exchange: Exchange, transcript: Transcript) -> bytes:
        content: list[dict[str, Any]] = []
        if transcript.reasoning_parts:
            content.append(
                {
                    "type": "thinking",
                    "thinking": transcript.reasoning,
                    "signature": signature(exchange),
                }
            )
        if transcript.text_parts:
            content.append({"type": "text", "text": transcript.text})
        for call in transcript.tool_calls:
            content.append(
                {
                    "type": "tool_use",
                    "id": exchange.tool_call_id("toolu_01", call.index),
                    "name": call.name,
                    "input": _arguments(call.arguments),
                }
            )
        reason = transcript.finish_reason or "stop"
        body = {
            "id": message_id(exchange),
            "type": "message",
            "role": "assistant",
            "model": exchange.model,
            "content": content,
            "stop_reason": STOP_REASONS[reason],
            "stop_sequence": None,
            "usage": {
                "input_tokens": exchange.input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": transcript.tokens,
                "service_tier": "standard",
            },
        }
        return dumps(body)

    def error(self, kind: ErrorKind, message: str) -> ErrorReply:
        status, type_ = _ERRORS[kind]
        return ErrorReply(
            status, dumps({"type": "error", "error": {"type": type_, "message": message}})
        )


_CHOICE_MODES: Mapping[Any, ChoiceMode] = {"none": "none", "any": "required", "tool": "required"}


def _choice(value: Any) -> ToolChoice:
    """``tool_choice``: ``{"type": "auto" | "any" | "none"}`` or ``{"type": "tool", "name"}``."""
    choice = as_mapping(value)
    mode = _CHOICE_MODES.get(choice.get("type"), "auto")
    name = choice.get("name")
    if choice.get("type") == "tool" and isinstance(name, str):
        return ToolChoice(mode, frozenset({name}))
    return ToolChoice(mode)


def _arguments(text: str) -> Any:
    """Tool input as an object; arguments cut short by ``max_tokens`` become ``{}``."""
    try:
        return orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {}
