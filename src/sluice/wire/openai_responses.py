"""OpenAI Responses streaming: the adapter (frames -> events) and the encoder (events -> frames).

Wire facts (the provider's published streaming format): every frame has ``event: <type>``
and JSON ``data`` with the same ``type`` and a rising ``sequence_number``; no ``[DONE]``: the
stream ends with ``response.completed``, ``response.incomplete`` or ``response.failed``
(or an ``error`` frame). Output items (``message``, ``function_call``, ``reasoning``) are
addressed by ``output_index``. Frames are dispatched on the JSON ``type``, falling back to the
SSE ``event`` name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from sluice.events import (
    FINISH_CONTENT_FILTER,
    FINISH_LENGTH,
    FINISH_STOP,
    FINISH_TOOL_CALLS,
    TOOL_INCOMPLETE,
    Error,
    Event,
    Finish,
    ReasoningDelta,
    Start,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallStart,
    Usage,
)

from ._fold import (
    WireFold,
    count,
    maybe_count,
    openai_error,
    responses_shortcut,
    sub,
    text,
)
from ._toolargs import ToolArgs, whole_text

__all__ = ["ResponsesStreamAdapter", "ResponsesStreamEncoder"]

#: response.incomplete's incomplete_details.reason -> normalised finish reason.
_INCOMPLETE = {"max_output_tokens": FINISH_LENGTH, "content_filter": FINISH_CONTENT_FILTER}


def _usage(response: Mapping[str, Any]) -> Usage | None:
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return None
    input_details = sub(usage, "input_tokens_details")
    return Usage(
        input_tokens=count(usage, "input_tokens"),
        output_tokens=count(usage, "output_tokens"),
        cache_read_tokens=count(input_details, "cached_tokens"),
        cache_write_tokens=count(input_details, "cache_write_tokens"),
        reasoning_tokens=count(sub(usage, "output_tokens_details"), "reasoning_tokens"),
        final=True,
    )


class ResponsesStreamAdapter(WireFold):
    """A fold from Responses frames to normalised events.

    A function call's arguments are parsed once, at ``response.function_call_arguments.done``
    (its ``arguments`` field wins over the fragments when present), or at the call's
    ``response.output_item.done`` if no ``.done`` frame came. ``Finish`` is ``tool_calls``
    when the response produced a function call, else ``stop``.
    """

    __slots__ = ("_made_calls",)

    FORMAT = "OpenAI Responses"
    SHORTCUT = responses_shortcut

    def __init__(self) -> None:
        super().__init__()
        self._made_calls = False

    def _frame(self, event: str, frame: dict[str, Any]) -> list[Event]:
        kind = frame.get("type")
        if not isinstance(kind, str):
            kind = event
        match kind:  # the deltas first: they are nearly every frame
            case "response.output_text.delta":
                chunk = text(frame, "delta")
                return [TextDelta(chunk, count(frame, "output_index"))] if chunk else []
            case "response.function_call_arguments.delta":
                return self._arguments_delta(frame)
            case "response.reasoning_summary_text.delta" | "response.reasoning_text.delta":
                chunk = text(frame, "delta")
                return [ReasoningDelta(chunk, count(frame, "output_index"))] if chunk else []
            case "response.created" | "response.queued" | "response.in_progress":
                if self._started:
                    return []
                self._started = True
                response = sub(frame, "response")
                return [Start(response_id=text(response, "id"), model=text(response, "model"))]
            case "response.output_item.added":
                return self._item_added(maybe_count(frame, "output_index"), sub(frame, "item"))
            case "response.function_call_arguments.done":
                arguments = frame.get("arguments")
                index = maybe_count(frame, "output_index")
                return self._call_done(index, arguments if isinstance(arguments, str) else None)
            case "response.output_item.done":
                item = sub(frame, "item")
                if item.get("type") != "function_call":
                    return []
                arguments = item.get("arguments")
                index = maybe_count(frame, "output_index")
                return self._call_done(index, arguments if isinstance(arguments, str) else None)
            case "response.completed":
                return self._completed(sub(frame, "response"))
            case "response.incomplete":
                return self._incomplete(sub(frame, "response"))
            case "response.failed":
                return self._terminate([], openai_error(sub(frame, "response").get("error")))
            case "error":
                return self._terminate([], openai_error(frame))
        return []

    def _item_added(self, index: int | None, item: Mapping[str, Any]) -> list[Event]:
        if index is None or item.get("type") != "function_call" or index in self._calls:
            return []
        call = ToolArgs(index, text(item, "call_id"), text(item, "name"))
        self._calls[index] = call
        self._made_calls = True
        return [ToolCallStart(index=index, call_id=call.call_id, name=call.name)]

    def _arguments_delta(self, frame: dict[str, Any]) -> list[Event]:
        index = maybe_count(frame, "output_index")
        call = self._calls.get(index) if index is not None else None
        if call is None:
            return []
        fragment = text(frame, "delta")
        call.append(fragment)
        return [ToolCallDelta(index=call.index, fragment=fragment)] if fragment else []

    def _call_done(self, index: int | None, arguments: str | None) -> list[Event]:
        call = self._calls.pop(index, None) if index is not None else None
        return [call.finish(arguments)] if call is not None else []

    def _completed(self, response: Mapping[str, Any]) -> list[Event]:
        out: list[Event] = []
        self._finish_calls(out)  # a call without its .done frame: the response says it ended
        usage = _usage(response)
        if usage is not None:
            out.append(usage)
        reason = FINISH_TOOL_CALLS if self._made_calls else FINISH_STOP
        status = text(response, "status") or "completed"
        return self._terminate(out, Finish(reason=reason, raw=status))

    def _incomplete(self, response: Mapping[str, Any]) -> list[Event]:
        out: list[Event] = []
        self._incomplete_calls(out)
        usage = _usage(response)
        if usage is not None:
            out.append(usage)
        why = text(sub(response, "incomplete_details"), "reason")
        return self._terminate(
            out, Finish(reason=_INCOMPLETE.get(why, FINISH_STOP), raw=why or None)
        )


#: normalised finish reason -> incomplete_details.reason (others complete the response).
_INCOMPLETE_OUT = {FINISH_LENGTH: "max_output_tokens", FINISH_CONTENT_FILTER: "content_filter"}

#: Error.type -> the Responses error code (the codes are a closed list; most map to server_error).
_ERROR_CODES = {"rate_limited": "rate_limit_exceeded"}


class _Item:
    """One output item being written: its place, id, and the text it accumulates."""

    __slots__ = ("call_id", "delta_head", "id", "kind", "name", "output_index", "parts", "source")

    def __init__(self, kind: str, output_index: int, item_id: str, source: int) -> None:
        self.kind = kind  # "message", "reasoning" or "function_call"
        self.output_index = output_index
        self.id = item_id
        self.source = source  # the normalised event's index
        self.parts: list[str] = []  # text or argument fragments, joined once at the end
        self.call_id = ""
        self.name = ""
        self.delta_head = b""  # the item's constant delta-frame prefix


class ResponsesStreamEncoder:
    """Renders normalised events as Responses frames, with a rising ``sequence_number``.

    Output items are written one at a time, as OpenAI does: a ``message`` item (one
    ``output_text`` part) for text, a ``reasoning`` item (one summary part) for reasoning, a
    ``function_call`` item per tool call; starting an item finishes the previous one with its
    ``.done`` frames. A call that got no argument fragment is given its whole argument text (or
    ``{}``) as one fragment when it ends. ``Finish`` writes ``response.completed`` (or
    ``response.incomplete`` for ``length`` / ``content_filter``) carrying the whole response:
    every output item and the usage. An ``Error`` writes an ``error`` frame and
    ``response.failed``. ``close()`` writes nothing. The encoder is fed one tool call at a time
    (``ToolCallSequencer`` in front of it): a fragment for a call whose item already ended is
    dropped, never written after its ``.done`` frames. ``Signature`` events are not written:
    the format's ``encrypted_content`` is OpenAI's own, and another provider's token means
    nothing there.

    The encoder keeps each item's text until the item ends, and the finished items until the
    response ends: the format's final frames repeat the whole output.
    """

    __slots__ = (
        "_closed",
        "_created_at",
        "_model",
        "_open",
        "_output",
        "_response_id",
        "_sequence",
        "_started",
        "_tools",
        "_usage",
    )

    def __init__(self, response_id: str, model: str, *, created_at: int = 0) -> None:
        # the format's own prefix, added to an id given without it
        self._response_id = (
            response_id if response_id.startswith("resp_") else "resp_" + response_id
        )
        self._model = model
        self._created_at = created_at
        self._sequence = 0
        self._started = False
        self._closed = False
        self._open: _Item | None = None
        self._output: list[dict[str, Any]] = []  # finished items, by output_index
        self._tools: dict[int, _Item] = {}  # source index -> function_call item
        self._usage: Usage | None = None

    def encode(self, event: Event) -> bytes:
        if self._closed:
            return b""
        match event:
            case TextDelta(text=chunk, index=source):
                return self._item("message", source) + self._delta(self._open, chunk)
            case ReasoningDelta(text=chunk, index=source):
                return self._item("reasoning", source) + self._delta(self._open, chunk)
            case ToolCallStart():
                return self._tool_start(event)
            case ToolCallDelta(index=source, fragment=fragment):
                call = self._tools.get(source)
                if call is None or not fragment or call is not self._open:
                    return b""  # never after the item's .done (the sequencer sees to it)
                call.parts.append(fragment)
                return self._delta(call, fragment)
            case ToolCallDone():
                return self._tool_done(event)
            case Usage():
                self._usage = event
            case Finish(reason=reason):
                return self._finish(reason)
            case Error():
                return self._fail(event)
            case Start():
                return self._start()
        return b""

    def close(self) -> bytes:
        self._closed = True
        return b""

    # -- framing --------------------------------------------------------------------------

    def _frame(self, kind: str, fields: dict[str, Any]) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence} | fields
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def _delta(self, item: _Item | None, chunk: str) -> bytes:
        if item is None:
            return b""
        sequence = self._sequence
        self._sequence += 1
        if item.kind != "function_call":
            item.parts.append(chunk)
        tail = b',"sequence_number":' + str(sequence).encode() + b"}\n\n"
        return item.delta_head + orjson.dumps(chunk) + tail

    def _response(self, status: str, **fields: Any) -> dict[str, Any]:
        response = {
            "id": self._response_id,
            "object": "response",
            "created_at": self._created_at,
            "status": status,
            "model": self._model,
            "output": self._output if status != "in_progress" else [],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "error": None,
            "incomplete_details": None,
            "usage": None,
        }
        response.update(fields)
        return response

    # -- lifecycle ------------------------------------------------------------------------

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return self._frame(
            "response.created", {"response": self._response("in_progress")}
        ) + self._frame("response.in_progress", {"response": self._response("in_progress")})

    def _finish(self, reason: str) -> bytes:
        why = _INCOMPLETE_OUT.get(reason)
        out = self._start() + self._end_item("completed" if why is None else "incomplete")
        self._closed = True
        usage = self._usage
        fields: dict[str, Any] = {}
        if usage is not None:
            fields["usage"] = {
                "input_tokens": usage.input_tokens,
                "input_tokens_details": {"cached_tokens": usage.cache_read_tokens},
                "output_tokens": usage.output_tokens,
                "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
                "total_tokens": usage.input_tokens + usage.output_tokens,
            }
        if why is None:
            response = self._response("completed", **fields)
            return out + self._frame("response.completed", {"response": response})
        response = self._response("incomplete", incomplete_details={"reason": why}, **fields)
        return out + self._frame("response.incomplete", {"response": response})

    def _fail(self, error: Error) -> bytes:
        self._closed = True
        code = _ERROR_CODES.get(error.type, "server_error")
        frame = self._frame("error", {"code": code, "message": error.message, "param": None})
        failure = {"code": code, "message": error.message}
        finished = [item for item in self._output if item]  # not the item cut short
        response = self._response("failed", error=failure, output=finished)
        return frame + self._frame("response.failed", {"response": response})

    # -- output items ---------------------------------------------------------------------

    def _item(self, kind: str, source: int) -> bytes:
        """The message or reasoning item for ``source``: the open one, or a new one."""
        item = self._open
        if item is not None and item.kind == kind and item.source == source:
            return b""
        if kind == "message":
            item, out = self._new_item(kind, "msg", source)
            added: dict[str, Any] = {"id": item.id, "type": "message", "status": "in_progress"}
            added |= {"role": "assistant", "content": []}
            part_added = self._where(item) | {"content_index": 0, "part": _EMPTY_TEXT_PART}
            return (
                out
                + self._added(item, added)
                + self._frame("response.content_part.added", part_added)
            )
        item, out = self._new_item(kind, "rs", source)
        added = {"id": item.id, "type": "reasoning", "summary": []}
        part_added = self._where(item) | {"summary_index": 0, "part": _EMPTY_SUMMARY_PART}
        return (
            out
            + self._added(item, added)
            + self._frame("response.reasoning_summary_part.added", part_added)
        )

    def _tool_start(self, event: ToolCallStart) -> bytes:
        item = self._tools.get(event.index)
        if item is not None and item is self._open:
            return b""  # repeated while open: nothing new (used again later: a new call)
        item, out = self._new_item("function_call", "fc", event.index)
        item.call_id = event.call_id
        item.name = event.name
        self._tools[event.index] = item
        return out + self._added(item, self._call(item, "in_progress", ""))

    def _tool_done(self, event: ToolCallDone) -> bytes:
        item = self._tools.get(event.index)
        if item is None or item is not self._open:
            return b""
        out = b""
        if not item.parts:  # no fragment went out: the call's whole text (or ``{}``) as one
            whole = whole_text(event)
            if whole:
                item.parts.append(whole)
                out = self._delta(item, whole)
        status = "incomplete" if event.status == TOOL_INCOMPLETE else "completed"
        return out + self._end_item(status)

    def _new_item(self, kind: str, prefix: str, source: int) -> tuple[_Item, bytes]:
        """Finish the open item, then place one of ``kind`` (``response.created`` first if due)."""
        out = self._start() + self._end_item()
        index = len(self._output)
        item = _Item(kind, index, f"{prefix}_{self._response_id}_{index}", source)
        self._output.append({})  # its place, filled when it ends
        self._open = item
        delta_type = _DELTA_TYPES[kind]
        item.delta_head = (
            b"event: "
            + delta_type
            + b'\ndata: {"type":"'
            + delta_type
            + b'","item_id":'
            + orjson.dumps(item.id)
            + b',"output_index":'
            + str(index).encode()
            + _DELTA_FIELDS[kind]
        )
        return item, out

    def _added(self, item: _Item, added: dict[str, Any]) -> bytes:
        payload = {"output_index": item.output_index, "item": added}
        return self._frame("response.output_item.added", payload)

    def _end_item(self, status: str = "completed") -> bytes:
        """Write the open item's ``.done`` frames and keep its final form for the response."""
        item = self._open
        if item is None:
            return b""
        self._open = None
        where = self._where(item)
        out = b""
        final: dict[str, Any]
        if item.kind == "function_call":
            if not item.parts:  # ended by the next item before any fragment: no arguments
                item.parts.append("{}")
                out = self._delta(item, "{}")
            arguments = "".join(item.parts)
            final = self._call(item, status, arguments)
            done = where | {"arguments": arguments}
            out += self._frame("response.function_call_arguments.done", done)
        elif item.kind == "message":
            content = "".join(item.parts)
            part = {"type": "output_text", "text": content, "annotations": [], "logprobs": []}
            final = {"id": item.id, "type": "message", "status": status, "role": "assistant"}
            final["content"] = [part]
            done = where | {"content_index": 0, "text": content, "logprobs": []}
            out += self._frame("response.output_text.done", done)
            done = where | {"content_index": 0, "part": part}
            out += self._frame("response.content_part.done", done)
        else:
            content = "".join(item.parts)
            summary = {"type": "summary_text", "text": content}
            final = {"id": item.id, "type": "reasoning", "summary": [summary]}
            done = where | {"summary_index": 0, "text": content}
            out += self._frame("response.reasoning_summary_text.done", done)
            done = where | {"summary_index": 0, "part": summary}
            out += self._frame("response.reasoning_summary_part.done", done)
        self._output[item.output_index] = final
        payload = {"output_index": item.output_index, "item": final}
        return out + self._frame("response.output_item.done", payload)

    @staticmethod
    def _where(item: _Item) -> dict[str, Any]:
        return {"item_id": item.id, "output_index": item.output_index}

    @staticmethod
    def _call(item: _Item, status: str, arguments: str) -> dict[str, Any]:
        return {
            "id": item.id,
            "type": "function_call",
            "status": status,
            "call_id": item.call_id,
            "name": item.name,
            "arguments": arguments,
        }


_EMPTY_TEXT_PART = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
_EMPTY_SUMMARY_PART = {"type": "summary_text", "text": ""}
_DELTA_TYPES = {
    "message": b"response.output_text.delta",
    "reasoning": b"response.reasoning_summary_text.delta",
    "function_call": b"response.function_call_arguments.delta",
}
_DELTA_FIELDS = {
    "message": b',"content_index":0,"logprobs":[],"delta":',
    "reasoning": b',"summary_index":0,"delta":',
    "function_call": b',"delta":',
}
