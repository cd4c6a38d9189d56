"""Anthropic Messages streaming: the adapter (frames -> events) and the encoder (events -> frames).

Wire facts (the provider's published streaming format): ``message_start``, then per content
block ``content_block_start`` / ``content_block_delta``* / ``content_block_stop``, then
``message_delta`` (stop reason and CUMULATIVE usage) and ``message_stop``; ``ping`` anywhere;
an ``error`` frame may end a stream that began with HTTP 200. Frames are dispatched on the
JSON ``type`` (what the SDK does), falling back to the SSE ``event`` name.

Only ``tool_use`` blocks become tool calls: ``server_tool_use`` and other server-side tool
blocks are run by Anthropic, not by the client, and are ignored like unknown block types.

A thinking block's ``signature_delta`` becomes a ``Signature`` event, and a
``redacted_thinking`` block (reasoning withheld: only its encrypted ``data``) a ``Signature``
with ``redacted`` set: a client continuing a turn with thinking and tools must send both back
unchanged, so they are kept through translation, in the record and in non-streamed answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from msgspec.structs import replace

from sluice.events import (
    FINISH_CONTENT_FILTER,
    FINISH_LENGTH,
    FINISH_PAUSE,
    FINISH_REFUSAL,
    FINISH_STOP,
    FINISH_TOOL_CALLS,
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

from ._fold import MAX_COUNT, WireFold, count, maybe_count, messages_shortcut, sub, text
from ._toolargs import ToolArgs, whole_text

__all__ = ["MessagesStreamAdapter", "MessagesStreamEncoder"]

#: stop_reason -> normalised reason; any other word finishes as ``stop`` (raw kept).
_FINISH = {
    "end_turn": FINISH_STOP,
    "stop_sequence": FINISH_STOP,
    "max_tokens": FINISH_LENGTH,
    "model_context_window_exceeded": FINISH_LENGTH,
    "tool_use": FINISH_TOOL_CALLS,
    "pause_turn": FINISH_PAUSE,
    "refusal": FINISH_REFUSAL,
}

#: error.type -> (Error.type, retryable); any other ``x_error`` is ``x``, not retryable.
_ERRORS = {
    "overloaded_error": ("overloaded", True),
    "rate_limit_error": ("rate_limited", True),
    "api_error": ("upstream_error", True),
    "timeout_error": ("timeout", True),  # HTTP 504 in Anthropic's table: worth a retry
}


def _error(frame: dict[str, Any]) -> Error:
    error = sub(frame, "error")
    word = text(error, "type")
    kind, retryable = _ERRORS.get(word, (word.removesuffix("_error") or "upstream_error", False))
    return Error(
        type=kind,
        message=text(error, "message") or word or "the upstream reported an error",
        retryable=retryable,
        detail=dict(error),
    )


class MessagesStreamAdapter(WireFold):
    """A fold from Anthropic Messages frames to normalised events.

    Usage: ``message_start`` gives a non-final snapshot; each ``message_delta`` gives a final
    one, its counts replacing (never adding to) the earlier ones, and input-side counts from
    ``message_start`` kept unless the delta carries its own. A tool block still open when the
    message stops (``max_tokens``) is reported ``incomplete`` with its text so far.
    """

    __slots__ = ("_stop_reason", "_usage")

    FORMAT = "Anthropic Messages"
    SHORTCUT = messages_shortcut

    def __init__(self) -> None:
        super().__init__()
        self._stop_reason: str | None = None
        self._usage: Usage | None = None

    def feed(self, event: str, data: str) -> list[Event]:
        if event == "ping" or not data:
            return []  # the SDK skips these before parsing, too
        return WireFold.feed(self, event, data)  # (no super object per frame)

    def _frame(self, event: str, frame: dict[str, Any]) -> list[Event]:
        kind = frame.get("type")
        if not isinstance(kind, str):
            kind = event
        match kind:
            case "content_block_delta":
                return self._delta(maybe_count(frame, "index"), sub(frame, "delta"))
            case "content_block_start":
                return self._block_start(maybe_count(frame, "index"), sub(frame, "content_block"))
            case "content_block_stop":
                return self._block_stop(maybe_count(frame, "index"))
            case "message_start":
                return self._message_start(sub(frame, "message"))
            case "message_delta":
                return self._message_delta(sub(frame, "delta"), sub(frame, "usage"))
            case "message_stop":
                raw = self._stop_reason
                finish = Finish(reason=_FINISH.get(raw or "", FINISH_STOP), raw=raw)
                return self._terminate([], finish)
            case "error":
                return self._terminate([], _error(frame))
        return []  # ping, and event types this adapter does not know

    def _message_start(self, message: Mapping[str, Any]) -> list[Event]:
        if self._started:
            return []  # one message per stream: a repeated start says nothing new
        self._started = True
        usage = sub(message, "usage")
        self._usage = Usage(
            input_tokens=count(usage, "input_tokens"),
            output_tokens=count(usage, "output_tokens"),
            cache_read_tokens=count(usage, "cache_read_input_tokens"),
            cache_write_tokens=count(usage, "cache_creation_input_tokens"),
        )
        start = Start(response_id=text(message, "id"), model=text(message, "model"))
        return [start, _normalised(self._usage)]

    def _block_start(self, index: int | None, block: Mapping[str, Any]) -> list[Event]:
        if index is None:
            return []
        match block.get("type"):
            case "text":
                initial = text(block, "text")
                return [TextDelta(initial, index)] if initial else []
            case "thinking":
                out: list[Event] = []
                initial = text(block, "thinking")
                if initial:
                    out.append(ReasoningDelta(initial, index))
                signature = text(block, "signature")
                if signature:  # (streamed, it comes as a signature_delta before the stop)
                    out.append(Signature(signature, index))
                return out
            case "redacted_thinking":
                data = text(block, "data")
                return [Signature(data, index, redacted=True)] if data else []
            case "tool_use" if index not in self._calls:
                given = sub(block, "input")
                whole = dict(given) if given else None
                call = ToolArgs(index, text(block, "id"), text(block, "name"), whole)
                self._calls[index] = call
                return [ToolCallStart(index=index, call_id=call.call_id, name=call.name)]
        return []

    def _block_stop(self, index: int | None) -> list[Event]:
        call = self._calls.pop(index, None) if index is not None else None
        return [call.finish()] if call is not None else []

    def _delta(self, index: int | None, delta: Mapping[str, Any]) -> list[Event]:
        if index is None:
            return []
        match delta.get("type"):
            case "text_delta":
                chunk = text(delta, "text")
                return [TextDelta(chunk, index)] if chunk else []
            case "input_json_delta":
                call = self._calls.get(index)
                if call is None:
                    return []
                fragment = text(delta, "partial_json")
                call.append(fragment)  # an empty fragment still counts as "arguments started"
                return [ToolCallDelta(index=index, fragment=fragment)] if fragment else []
            case "thinking_delta":
                chunk = text(delta, "thinking")
                return [ReasoningDelta(chunk, index)] if chunk else []
            case "signature_delta":
                signature = text(delta, "signature")
                return [Signature(signature, index)] if signature else []
        return []  # citations_delta, and delta types not known here

    def _message_delta(self, delta: Mapping[str, Any], usage: Mapping[str, Any]) -> list[Event]:
        reason = delta.get("stop_reason")
        if isinstance(reason, str):
            self._stop_reason = reason
        out: list[Event] = []
        if reason == "max_tokens":
            self._incomplete_calls(out)  # the blocks will never stop
        base = self._usage or Usage()
        snapshot = Usage(
            input_tokens=_replace(usage, "input_tokens", base.input_tokens),
            output_tokens=_replace(usage, "output_tokens", base.output_tokens),
            cache_read_tokens=_replace(usage, "cache_read_input_tokens", base.cache_read_tokens),
            cache_write_tokens=_replace(
                usage, "cache_creation_input_tokens", base.cache_write_tokens
            ),
            reasoning_tokens=base.reasoning_tokens,
            final=True,
        )
        self._usage = snapshot
        out.append(_normalised(snapshot))
        return out


def _replace(usage: Mapping[str, Any], key: str, previous: int) -> int:
    """A cumulative count: the new value replaces the old one when present."""
    value = maybe_count(usage, key)
    return previous if value is None or not 0 <= value <= MAX_COUNT else value


#: normalised finish reason -> the stop_reason an Anthropic client understands.
_STOP_OUT = {
    FINISH_STOP: "end_turn",
    FINISH_LENGTH: "max_tokens",
    FINISH_TOOL_CALLS: "tool_use",
    FINISH_CONTENT_FILTER: "refusal",
    FINISH_PAUSE: "pause_turn",
    FINISH_REFUSAL: "refusal",
}

#: Error.type -> Anthropic error type; anything else is ``api_error``.
_ERRORS_OUT = {
    "overloaded": "overloaded_error",
    "rate_limited": "rate_limit_error",
    "timeout": "timeout_error",
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "request_too_large": "request_too_large",
    "billing": "billing_error",
}

_DELTA_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_TEXT_DELTA = b',"delta":{"type":"text_delta","text":'
_THINKING_DELTA = b',"delta":{"type":"thinking_delta","thinking":'
_JSON_DELTA = b',"delta":{"type":"input_json_delta","partial_json":'
_SIGNATURE_DELTA = b',"delta":{"type":"signature_delta","signature":'
_BLOCK_STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":'
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
_TEXT_BLOCK = {"type": "text", "text": ""}
_THINKING_BLOCK = {"type": "thinking", "thinking": "", "signature": ""}


def _frame(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class MessagesStreamEncoder:
    """Renders normalised events as Anthropic Messages frames (``event: x`` / ``data: {...}``).

    ``message_start`` waits for the first ``Usage`` or content after ``Start``, so that its
    ``input_tokens`` is known when the upstream reports it up front (0 otherwise). Blocks are
    numbered 0, 1, 2… and opened one at a time: text and thinking blocks close when another
    block opens; a tool_use block closes at its ``ToolCallDone`` or when another block opens.
    Nothing is ever written into a block after its ``content_block_stop``: the encoder is fed
    one tool call at a time (``ToolCallSequencer`` in front of it), and a fragment for a tool
    block no longer open is dropped. A thinking block opens with an empty ``signature``; a
    ``Signature`` event for it is written as its ``signature_delta`` before it stops (a
    non-Anthropic upstream has none to give), and a redacted one as a ``redacted_thinking``
    block of its own.
    ``message_delta`` (stop reason, cumulative usage) and ``message_stop`` are written at
    ``Finish``; ``close()`` writes nothing.

    Ids are the client format's own: the message id starts ``msg_`` (the prefix is added to
    one given without it); a tool call keeps the upstream's id, unchanged (``toolu_…`` made up
    only when the upstream gave none).
    """

    __slots__ = (
        "_args_sent",
        "_closed",
        "_message_id",
        "_model",
        "_next_block",
        "_open",
        "_open_head",
        "_open_kind",
        "_open_source",
        "_pending_start",
        "_started",
        "_tools",
        "_usage",
    )

    def __init__(self, message_id: str, model: str) -> None:
        self._message_id = message_id = anthropic_id("msg_", message_id)
        self._model = model
        self._pending_start = False  # Start seen, message_start not yet written
        self._started = False
        self._closed = False
        self._usage: Usage | None = None
        self._next_block = 0
        self._open: int | None = None  # the open block's number
        self._open_head = b""  # its content_block_delta frame up to the delta's value
        self._open_kind = ""  # "text", "thinking" or "tool_use"
        self._open_source = -1  # the open text/thinking block's source index
        self._tools: dict[int, tuple[int, bytes]] = {}  # source index -> block number, head
        self._args_sent: set[int] = set()  # tool blocks that got a fragment

    def encode(self, event: Event) -> bytes:
        if self._closed:
            return b""
        match event:
            case TextDelta(text=chunk, index=source):
                out = self._block("text", source)
                return out + self._open_head + orjson.dumps(chunk) + b"}}\n\n"
            case ReasoningDelta(text=chunk, index=source):
                out = self._block("thinking", source)
                return out + self._open_head + orjson.dumps(chunk) + b"}}\n\n"
            case ToolCallStart():
                return self._tool_start(event)
            case ToolCallDelta(index=source, fragment=fragment):
                tool = self._tools.get(source)
                if tool is None or not fragment or tool[0] != self._open:
                    return b""  # never after the block's stop (the sequencer sees to it)
                self._args_sent.add(tool[0])
                return tool[1] + orjson.dumps(fragment) + b"}}\n\n"
            case ToolCallDone():
                return self._tool_done(event)
            case Signature(signature=signature, index=source, redacted=redacted):
                if redacted:
                    block = {"type": "redacted_thinking", "data": signature}
                    return self._open_block("redacted_thinking", block, b"") + self._close_block()
                return self._signature(signature, source)
            case Usage():
                self._usage = event
                return self._message_start() if self._pending_start else b""
            case Finish(reason=reason):
                return self._finish(reason)
            case Error():
                self._closed = True
                kind = _ERRORS_OUT.get(event.type, "api_error")
                error = {"type": kind, "message": event.message}
                return _frame("error", {"type": "error", "error": error})
            case Start():
                self._pending_start = not self._started
        return b""

    def close(self) -> bytes:
        self._closed = True
        return b""

    def _message_start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        self._pending_start = False
        usage = self._usage or Usage()
        message: dict[str, Any] = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": uncached_input(usage),
                "cache_creation_input_tokens": usage.cache_write_tokens,
                "cache_read_input_tokens": usage.cache_read_tokens,
                "output_tokens": 1,
            },
        }
        return _frame("message_start", {"type": "message_start", "message": message})

    def _open_block(self, kind: str, block: dict[str, Any], delta: bytes) -> bytes:
        """Close the open block, then start a new one (``message_start`` first if due)."""
        out = self._message_start() + self._close_block()
        number = self._next_block
        self._next_block += 1
        self._open = number
        self._open_kind = kind
        self._open_head = _DELTA_HEAD + str(number).encode() + delta
        start = {"type": "content_block_start", "index": number, "content_block": block}
        return out + _frame("content_block_start", start)

    def _close_block(self) -> bytes:
        number = self._open
        if number is None:
            return b""
        self._open = None
        return _BLOCK_STOP + str(number).encode() + b"}\n\n"

    def _block(self, kind: str, source: int) -> bytes:
        """The text or thinking block for ``source``: the open one, or a new one."""
        if self._open is not None and self._open_kind == kind and self._open_source == source:
            return b""
        self._open_source = source
        if kind == "text":
            return self._open_block(kind, _TEXT_BLOCK, _TEXT_DELTA)
        return self._open_block(kind, _THINKING_BLOCK, _THINKING_DELTA)

    def _tool_start(self, event: ToolCallStart) -> bytes:
        tool = self._tools.get(event.index)
        if tool is not None and tool[0] == self._open:
            return b""  # repeated while open: nothing new (used again later: a new call)
        # The upstream's id, unchanged: the client sends it back with the tool's result, and
        # the same upstream must know it again (docs/translation.md). One is made up only
        # where the upstream gave none (Anthropic requires one).
        call_id = event.call_id or f"toolu_{self._message_id[4:]}_{self._next_block}"
        block = {"type": "tool_use", "id": call_id, "name": event.name, "input": {}}
        out = self._open_block("tool_use", block, _JSON_DELTA)
        self._tools[event.index] = (self._next_block - 1, self._open_head)
        return out

    def _tool_done(self, event: ToolCallDone) -> bytes:
        tool = self._tools.get(event.index)
        if tool is None or tool[0] != self._open:
            return b""
        number, head = tool
        out = b""
        whole = "" if number in self._args_sent else whole_text(event)
        if whole and whole != "{}":  # the block began with ``input: {}`` already
            # The arguments never came as fragments (they were given whole): send them as one.
            self._args_sent.add(number)
            out = head + orjson.dumps(whole) + b"}}\n\n"
        return out + self._close_block()

    def _signature(self, signature: str, source: int) -> bytes:
        """A thinking block's signature, as the API sends it: a ``signature_delta`` just before
        the block stops. Only into the open thinking block it belongs to; a signature for any
        other block (another provider's token on a text part) has no place in this format."""
        if self._open is None or self._open_kind != "thinking" or self._open_source != source:
            return b""
        head = _DELTA_HEAD + str(self._open).encode() + _SIGNATURE_DELTA
        return head + orjson.dumps(signature) + b"}}\n\n"

    def _finish(self, reason: str) -> bytes:
        self._closed = True
        usage = self._usage or Usage()
        delta = {"stop_reason": _STOP_OUT.get(reason, "end_turn"), "stop_sequence": None}
        counts = {
            "input_tokens": uncached_input(usage),
            "cache_creation_input_tokens": usage.cache_write_tokens,
            "cache_read_input_tokens": usage.cache_read_tokens,
            "output_tokens": usage.output_tokens,
        }
        payload = {"type": "message_delta", "delta": delta, "usage": counts}
        return (
            self._message_start()
            + self._close_block()
            + _frame("message_delta", payload)
            + _MESSAGE_STOP
        )


def _normalised(usage: Usage) -> Usage:
    """Anthropic's ``input_tokens`` leaves out cache reads and writes; the event model's counts
    every input token (OpenAI's meaning), with the cached ones as parts of it."""
    return replace(
        usage, input_tokens=usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    )


def anthropic_id(prefix: str, value: str) -> str:
    """``value`` as an id of this format: it starts with ``prefix`` (``msg_``)."""
    return value if value.startswith(prefix) else prefix + value


def uncached_input(usage: Usage) -> int:
    """The event model's input count in Anthropic's meaning (cache reads and writes left out)."""
    return max(0, usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens)
