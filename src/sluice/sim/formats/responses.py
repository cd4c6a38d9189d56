"""OpenAI Responses (``POST /v1/responses``): numbered typed events, response objects and errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

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
    sse,
)
from sluice.sim.script import (
    ConnectionReset,
    Event,
    Finish,
    MalformedFrame,
    ReasoningDelta,
    StreamError,
    TextDelta,
    ToolArgsDelta,
    ToolCallStart,
    Transcript,
)

ItemKind = Literal["message", "reasoning", "function_call"]
STREAM_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"


def usage(exchange: Exchange, transcript: Transcript) -> dict[str, Any]:
    return {
        "input_tokens": exchange.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": transcript.tokens,
        "output_tokens_details": {"reasoning_tokens": transcript.reasoning_tokens},
        "total_tokens": exchange.input_tokens + transcript.tokens,
    }


def response_object(
    exchange: Exchange,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    incomplete: bool = False,
) -> dict[str, Any]:
    """The ``response`` object; request fields the real API echoes are echoed."""
    body = exchange.body
    return {
        "id": f"resp_{exchange.uid}",
        "object": "response",
        "created_at": exchange.created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": exchange.model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def summary_text(text: str) -> dict[str, Any]:
    return {"type": "summary_text", "text": text}


@dataclass(slots=True)
class _Item:
    """An output item being streamed."""

    kind: ItemKind
    id: str
    output_index: int
    call_id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)

    def done(self, status: str) -> dict[str, Any]:
        text = "".join(self.parts)
        match self.kind:
            case "message":
                return {
                    "id": self.id,
                    "type": "message",
                    "status": status,
                    "content": [output_text(text)],
                    "role": "assistant",
                }
            case "reasoning":
                return {"id": self.id, "type": "reasoning", "summary": [summary_text(text)]}
            case "function_call":
                return {
                    "id": self.id,
                    "type": "function_call",
                    "status": status,
                    "arguments": text,
                    "call_id": self.call_id,
                    "name": self.name,
                }


class ResponsesStream:
    """``response.created``, ``response.in_progress``, output items, ``response.completed``.

    Every frame has an ``event:`` line and a ``sequence_number`` one higher than the last
    (an injected malformed frame takes none). A turn cut by ``max_output_tokens`` ends with
    ``response.incomplete`` and its open item marked ``incomplete``.
    """

    def __init__(self, exchange: Exchange, transcript: Transcript) -> None:
        self._exchange = exchange
        self._transcript = transcript
        self._sequence = 0
        self._started = False
        self._open: _Item | None = None
        self._done: list[dict[str, Any]] = []
        self._tool_items: dict[int, _Item] = {}

    def _frame(self, type_: str, **fields: Any) -> bytes:
        payload = {"type": type_, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return sse(type_, dumps(payload))

    def encode(self, event: Event) -> bytes:
        frames: list[bytes] = []
        if not self._started:
            self._started = True
            created = response_object(self._exchange, status="in_progress", output=[])
            frames.append(self._frame("response.created", response=created))
            frames.append(self._frame("response.in_progress", response=created))
        match event:
            case TextDelta(text):
                item = self._ensure("message", frames)
                item.parts.append(text)
                frames.append(
                    self._frame(
                        "response.output_text.delta",
                        item_id=item.id,
                        output_index=item.output_index,
                        content_index=0,
                        delta=text,
                        logprobs=[],
                    )
                )
            case ReasoningDelta(text):
                item = self._ensure("reasoning", frames)
                item.parts.append(text)
                frames.append(
                    self._frame(
                        "response.reasoning_summary_text.delta",
                        item_id=item.id,
                        output_index=item.output_index,
                        summary_index=0,
                        delta=text,
                    )
                )
            case ToolCallStart(index, name):
                item = self._start("function_call", frames, tool=(index, name))
                self._tool_items[index] = item
            case ToolArgsDelta(index, fragment):
                item = self._tool_items[index]
                item.parts.append(fragment)
                frames.append(
                    self._frame(
                        "response.function_call_arguments.delta",
                        item_id=item.id,
                        output_index=item.output_index,
                        delta=fragment,
                    )
                )
            case Finish(reason):
                incomplete = reason == "length"
                self._close(frames, status="incomplete" if incomplete else "completed")
                final = response_object(
                    self._exchange,
                    status="incomplete" if incomplete else "completed",
                    output=self._done,
                    usage=usage(self._exchange, self._transcript),
                    incomplete=incomplete,
                )
                type_ = "response.incomplete" if incomplete else "response.completed"
                frames.append(self._frame(type_, response=final))
            case MalformedFrame():
                # A delta cut off inside a string: the data line is not JSON.
                frames.append(
                    b"event: response.output_text.delta\ndata: "
                    + b'{"type":"response.output_text.delta","sequence_number":%d,"item_id":"'
                    % self._sequence
                    + b"\n\n"
                )
            case StreamError():
                frames.append(
                    self._frame(
                        "error", code="server_error", message=STREAM_ERROR_MESSAGE, param=None
                    )
                )
            case ConnectionReset():
                pass
        return b"".join(frames)

    def _ensure(self, kind: ItemKind, frames: list[bytes]) -> _Item:
        if self._open is not None and self._open.kind == kind:
            return self._open
        return self._start(kind, frames)

    def _start(
        self, kind: ItemKind, frames: list[bytes], tool: tuple[int, str] | None = None
    ) -> _Item:
        self._close(frames, status="completed")
        output_index = len(self._done)
        prefix = {"message": "msg_", "reasoning": "rs_", "function_call": "fc_"}[kind]
        item = _Item(kind, f"{prefix}{self._exchange.uid}{output_index:02d}", output_index)
        if tool is not None:
            item.call_id = self._exchange.tool_call_id("call_", tool[0])
            item.name = tool[1]
        added: dict[str, Any]
        match kind:
            case "message":
                added = {
                    "id": item.id,
                    "type": "message",
                    "status": "in_progress",
                    "content": [],
                    "role": "assistant",
                }
            case "reasoning":
                added = {"id": item.id, "type": "reasoning", "summary": []}
            case "function_call":
                added = {
                    "id": item.id,
                    "type": "function_call",
                    "status": "in_progress",
                    "arguments": "",
                    "call_id": item.call_id,
                    "name": item.name,
                }
        frames.append(
            self._frame("response.output_item.added", output_index=output_index, item=added)
        )
        where = {"item_id": item.id, "output_index": output_index}
        if kind == "message":
            frames.append(
                self._frame(
                    "response.content_part.added", **where, content_index=0, part=output_text("")
                )
            )
        elif kind == "reasoning":
            frames.append(
                self._frame(
                    "response.reasoning_summary_part.added",
                    **where,
                    summary_index=0,
                    part=summary_text(""),
                )
            )
        self._open = item
        return item

    def _close(self, frames: list[bytes], *, status: str) -> None:
        item = self._open
        if item is None:
            return
        self._open = None
        text = "".join(item.parts)
        where = {"item_id": item.id, "output_index": item.output_index}
        match item.kind:
            case "message":
                frames.append(
                    self._frame(
                        "response.output_text.done",
                        **where,
                        content_index=0,
                        text=text,
                        logprobs=[],
                    )
                )
                frames.append(
                    self._frame(
                        "response.content_part.done",
                        **where,
                        content_index=0,
                        part=output_text(text),
                    )
                )
            case "reasoning":
                frames.append(
                    self._frame(
                        "response.reasoning_summary_text.done", **where, summary_index=0, text=text
                    )
                )
                frames.append(
                    self._frame(
                        "response.reasoning_summary_part.done",
                        **where,
                        summary_index=0,
                        part=summary_text(text),
                    )
                )
            case "function_call":
                frames.append(
                    self._frame("response.function_call_arguments.done", **where, arguments=text)
                )
        done = item.done(status)
        self._done.append(done)
        frames.append(
            self._frame("response.output_item.done", output_index=item.output_index, item=done)
        )


class ResponsesFormat:
    name = "openai-responses"
    request_id_header = "x-request-id"
    stream_error: tuple[ErrorKind, str] = ("server_error", STREAM_ERROR_MESSAGE)

    def prompt(self, body: Mapping[str, Any]) -> str:
        parts = [*collect_text(body.get("instructions", [])), *collect_text(body.get("input", []))]
        return "\n".join(parts)

    def max_tokens(self, body: Mapping[str, Any]) -> int | None:
        return positive_int(body, "max_output_tokens")

    def conversation(self, body: Mapping[str, Any]) -> Conversation:
        """Function ``tools``, ``tool_choice``, and the ``input``: a string (one question) or
        items: ``user`` and ``assistant`` messages, ``function_call`` items, and
        ``function_call_output`` items tied to their call by ``call_id``. A request that
        continues a stored response (``previous_response_id``) may answer calls the input does
        not hold: such a result is named by its ``call_id``."""
        tools = []
        for entry in map(as_mapping, as_list(body.get("tools"))):
            tool = DeclaredTool.of(
                entry.get("name"), entry.get("description"), entry.get("parameters")
            )
            if entry.get("type") == "function" and tool is not None:
                tools.append(tool)
        names = CallNames()
        stored = body.get("previous_response_id") is not None
        turns: list[Turn] = []
        given = body.get("input")
        if isinstance(given, str):
            turns.append(Turn("user", given))
        for at, item in enumerate(map(as_mapping, as_list(given))):
            match item.get("type", "message"):
                case "message" if item.get("role") in ("user", "assistant"):
                    turns.append(Turn(item["role"], text_of(item.get("content"))))
                case "function_call":
                    name = names.add(item.get("call_id"), item.get("name"))
                    turns.append(Turn("assistant", calls=(name,)))
                case "function_call_output":
                    call_id = item.get("call_id")
                    if stored and not names.known(call_id):
                        name = str(call_id)
                    else:
                        name = names.name(call_id, f"input[{at}]")
                    result = ToolResult(name, text_of(item.get("output")))
                    turns.append(Turn("user", results=(result,)))
        return Conversation(tuple(tools), openai_choice(body.get("tool_choice")), tuple(turns))

    def stream(self, exchange: Exchange, transcript: Transcript) -> ResponsesStream:
        return ResponsesStream(exchange, transcript)

    def render(self, exchange: Exchange, transcript: Transcript) -> bytes:
        items: list[_Item] = []
        uid = exchange.uid
        if transcript.reasoning_parts:
            items.append(_Item("reasoning", f"rs_{uid}00", 0, parts=[transcript.reasoning]))
        if transcript.text_parts:
            at = len(items)
            items.append(_Item("message", f"msg_{uid}{at:02d}", at, parts=[transcript.text]))
        for call in transcript.tool_calls:
            at = len(items)
            call_id = exchange.tool_call_id("call_", call.index)
            items.append(
                _Item(
                    "function_call",
                    f"fc_{uid}{at:02d}",
                    at,
                    call_id=call_id,
                    name=call.name,
                    parts=[call.arguments],
                )
            )
        incomplete = transcript.finish_reason == "length"
        # Only the item the cap cut short is incomplete.
        output = [
            item.done("incomplete" if incomplete and item is items[-1] else "completed")
            for item in items
        ]
        status = "incomplete" if incomplete else "completed"
        body = response_object(
            exchange,
            status=status,
            output=output,
            usage=usage(exchange, transcript),
            incomplete=incomplete,
        )
        return dumps(body)

    def error(self, kind: ErrorKind, message: str) -> ErrorReply:
        return openai_error(kind, message)
