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
    Signature,
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

__all__ = ["ResponsesStreamAdapter", "ResponsesStreamEncoder", "failure_frames", "usage_body"]

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

    An ``error`` frame is followed by ``response.failed``: the error it names is the terminal
    event, given at ``response.failed`` (or when the body ends without it), so the stream is
    read to its last frame and a client that receives it unchanged gets that frame too. What
    comes between the two is ignored.
    """

    __slots__ = ("_failed", "_made_calls")

    FORMAT = "OpenAI Responses"
    SHORTCUT = responses_shortcut

    def __init__(self) -> None:
        super().__init__()
        self._made_calls = False
        #: the error an ``error`` frame named, until ``response.failed`` ends the stream
        self._failed: Error | None = None

    def _frame(self, event: str, frame: dict[str, Any]) -> list[Event]:
        kind = frame.get("type")
        if not isinstance(kind, str):
            kind = event
        if self._failed is not None:
            return self._terminate([], self._failed) if kind == "response.failed" else []
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
            case "error":  # its fields at the top (as documented) or under ``error`` (as sent)
                nested = frame.get("error")
                self._failed = openai_error(nested if isinstance(nested, dict) else frame)
                self._started = False  # the shortcut takes no delta from here on
        return []

    def _end(self) -> list[Event]:
        if self._failed is not None:  # an error frame, and the body ended before its response
            return self._terminate([], self._failed)
        return WireFold._end(self)

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

#: The ``Error`` type a Stop leaves in a session's log: the response ends ``cancelled``.
CANCELLED = "cancelled"

#: The response fields the API requires that a request sets; Sluice writes their defaults.
_REQUEST_DEFAULTS: dict[str, Any] = {"parallel_tool_calls": True, "tool_choice": "auto"}


def failure(error: Error) -> tuple[str, dict[str, Any] | None]:
    """How ``error`` ends a response: its status (``cancelled`` for a Stop, else ``failed``)
    and its ``error`` object (none for a Stop)."""
    if error.type == CANCELLED:
        return "cancelled", None
    return "failed", {
        "code": _ERROR_CODES.get(error.type, "server_error"),
        "message": error.message,
    }


def failure_frames(
    error: Error,
    response: dict[str, Any],
    sequence: int,
    *,
    error_frame: bool = True,
    starting_after: int = -1,
) -> bytes:
    """The frames that end ``response`` (a response object, kept as it is but for its status
    and error) with ``error``, numbered from ``sequence``: an ``error`` frame (unless it is a
    Stop, or ``error_frame`` is false because the stream had its own), then
    ``response.failed``; those numbered up to ``starting_after`` are left out. For a stream
    whose other frames Sluice did not write."""
    status, problem = failure(error)
    response = response | {"status": status, "error": problem}
    out = b""
    if problem is not None and error_frame:
        if sequence > starting_after:
            fields = {"code": problem["code"], "message": error.message, "param": None}
            out = _frame_bytes("error", sequence, fields)
        sequence += 1
    if sequence > starting_after:
        out += _frame_bytes("response.failed", sequence, {"response": response})
    return out


def _frame_bytes(kind: str, sequence: int, fields: dict[str, Any]) -> bytes:
    payload = {"type": kind, "sequence_number": sequence} | fields
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class _Item:
    """One output item: its place, id, the text it accumulates, and its final form once ended."""

    __slots__ = (
        "call_id",
        "delta_head",
        "final",
        "id",
        "kind",
        "name",
        "output_index",
        "parts",
    )

    def __init__(self, kind: str, output_index: int, item_id: str) -> None:
        self.kind = kind  # "message", "reasoning" or "function_call"
        self.output_index = output_index
        self.id = item_id
        self.parts: list[str] = []  # text or argument fragments, joined once at the end
        self.call_id = ""
        self.name = ""
        #: the item as ``response.output_item.done`` carries it; None while it is open
        self.final: dict[str, Any] | None = None
        #: the item's constant delta-frame prefix: a delta is this, its JSON, and its number
        self.delta_head = (
            b"event: "
            + _DELTA_TYPES[kind]
            + b'\ndata: {"type":"'
            + _DELTA_TYPES[kind]
            + b'","item_id":'
            + orjson.dumps(item_id)
            + b',"output_index":'
            + str(output_index).encode()
            + _DELTA_FIELDS[kind]
        )

    def where(self) -> dict[str, Any]:
        return {"item_id": self.id, "output_index": self.output_index}

    def state(self, status: str) -> dict[str, Any]:
        """The item with its text so far, as the output list carries it."""
        content = "".join(self.parts)
        if len(self.parts) > 1:
            self.parts[:] = [content]
        if self.kind == "message":
            part = {"type": "output_text", "text": content, "annotations": [], "logprobs": []}
            return {
                "id": self.id,
                "type": "message",
                "status": status,
                "role": "assistant",
                "content": [part],
            }
        if self.kind == "reasoning":
            return {"id": self.id, "type": "reasoning", "summary": [_summary(content)]}
        return {
            "id": self.id,
            "type": "function_call",
            "status": status,
            "call_id": self.call_id,
            "name": self.name,
            "arguments": content,
        }


class ResponsesStreamEncoder:
    """Renders normalised events as Responses frames, each with the next ``sequence_number``.

    The frames are those the API defines: ``response.created`` and ``response.in_progress``
    (on ``Start``, or before whatever comes first), then per output item
    ``response.output_item.added``, its part's ``added``, its deltas, its ``.done`` frames and
    ``response.output_item.done``, and at the end ``response.completed`` (or
    ``response.incomplete`` for ``length`` / ``content_filter``) carrying the whole response:
    every item and the usage. It is fed one tool call at a time (``ToolCallSequencer`` in
    front of it, in the presenter and in every replay).

    - Text goes to a ``message`` item (one ``output_text`` part), reasoning to a ``reasoning``
      item (one summary part), each tool call to a ``function_call`` item. Consecutive text
      deltas share one message item and consecutive reasoning deltas one reasoning item,
      whatever their source index: the stored log keeps no index for them, and a stream
      rendered again from it (a resume after the session left memory) must be the same, frame
      for frame. A message or reasoning item ends when another item starts.
    - A ``Signature`` ends the open reasoning item (a provider signs a reasoning block as it
      ends it) and is not written: a Responses ``encrypted_content`` is OpenAI's own, and
      another provider's token means nothing there (docs/translation.md).
    - A ``function_call`` item ends with its own ``ToolCallDone``. Items are open one at a
      time, as the API streams them: any item's start ends the open one, and a fragment for a
      call whose item ended is dropped, never written after its ``.done`` frames (the
      sequencer in front sees that none comes). A call that got no fragment is given its
      whole argument text (or ``{}``) as one fragment when it ends; a ``ToolCallDone``
      without a start starts it too; a start for an index whose call ended is another call;
      a call without an id gets ``call_<output_index>``.
    - An ``Error`` writes an ``error`` frame and ``response.failed``, listing the items that
      had ended (not those it cut short); a Stop (``Error`` of type ``cancelled``) ends the
      open items ``incomplete`` and writes ``response.failed`` with status ``cancelled`` and
      no error. ``close()`` writes nothing.

    ``starting_after=N`` renders the same stream but writes only the frames numbered above
    ``N``: a resume (``GET /v1/responses/{id}?stream=true&starting_after=N``) renders the
    session's log again from its start. ``response()`` is the response object as it stands,
    the non-streaming body. The text of each item is kept until the response ends: the final
    frames repeat the whole output.
    """

    __slots__ = (
        "_call",
        "_calls",
        "_closed",
        "_created_at",
        "_error",
        "_id_base",
        "_items",
        "_model",
        "_reasoning",
        "_response_id",
        "_sequence",
        "_skip",
        "_started",
        "_status",
        "_text",
        "_usage",
        "_why",
    )

    def __init__(
        self, response_id: str, model: str, *, created_at: int = 0, starting_after: int = -1
    ) -> None:
        # the format's own prefix, added to an id given without it
        if not response_id.startswith("resp_"):
            response_id = "resp_" + response_id
        self._response_id = response_id
        self._model = model
        self._created_at = created_at
        #: frames numbered up to this one are counted but not written (a resume)
        self._skip = starting_after
        self._sequence = 0
        self._started = False
        self._closed = False
        self._items: list[_Item] = []  # every item, by output_index
        # One item is open at a time, as the API streams them: at most one of these is set.
        self._text: _Item | None = None  # the open message item
        self._reasoning: _Item | None = None  # the open reasoning item
        self._call: _Item | None = None  # the open function_call item
        self._calls: dict[int, _Item] = {}  # function_call items by source index
        self._usage: Usage | None = None
        self._status = "in_progress"
        self._error: dict[str, Any] | None = None
        self._why: str | None = None  # incomplete_details.reason
        self._id_base = response_id.removeprefix("resp_")

    @property
    def frames(self) -> int:
        """How many frames the stream has had so far (the next ``sequence_number``)."""
        return self._sequence

    @property
    def ended(self) -> bool:
        """Whether the response has had its last frame."""
        return self._status != "in_progress"

    def encode(self, event: Event) -> bytes:
        if type(event) is TextDelta:  # nearly every event: a type test costs less than a match
            item = self._text
            if item is not None:
                return self._delta(item, event.text)
            if self._closed:
                return b""
            item, out = self._open("message")
            return out + self._delta(item, event.text)
        if self._closed:
            return b""
        match event:
            case ReasoningDelta(text=chunk):
                item = self._reasoning
                if item is not None:
                    return self._delta(item, chunk)
                item, out = self._open("reasoning")
                return out + self._delta(item, chunk)
            case ToolCallStart():
                return self._tool_start(event.index, event.call_id, event.name)
            case ToolCallDelta(index=source, fragment=fragment):
                call = self._calls.get(source)
                if call is None or call is not self._call or not fragment:
                    return b""  # never after the item's .done (the sequencer sees to it)
                return self._delta(call, fragment)
            case ToolCallDone():
                return self._tool_done(event)
            case Signature():
                return self._end(self._reasoning)
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

    def response(self) -> dict[str, Any]:
        """The response object as it stands: in progress with its items so far, or final."""
        status = self._status
        if status == "failed":  # the items the error cut short are left out, as in the stream
            output = [item.final for item in self._items if item.final is not None]
        else:
            output = [
                item.final if item.final is not None else item.state("in_progress")
                for item in self._items
            ]
        usage = self._usage
        return {
            "id": self._response_id,
            "object": "response",
            "created_at": self._created_at,
            "status": status,
            "model": self._model,
            "output": output,
            **_REQUEST_DEFAULTS,
            "tools": [],
            "error": self._error,
            "incomplete_details": None if self._why is None else {"reason": self._why},
            "usage": None if usage is None or status == "in_progress" else usage_body(usage),
        }

    # -- framing --------------------------------------------------------------------------

    def _frame(self, kind: str, fields: dict[str, Any]) -> bytes:
        sequence = self._sequence
        self._sequence = sequence + 1
        if sequence <= self._skip:
            return b""
        return _frame_bytes(kind, sequence, fields)

    def _delta(self, item: _Item, chunk: str) -> bytes:
        item.parts.append(chunk)
        sequence = self._sequence
        self._sequence = sequence + 1
        if sequence <= self._skip:
            return b""
        return b'%b%b,"sequence_number":%d}\n\n' % (item.delta_head, orjson.dumps(chunk), sequence)

    # -- lifecycle ------------------------------------------------------------------------

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        response = self.response()
        return self._frame("response.created", {"response": response}) + self._frame(
            "response.in_progress", {"response": response}
        )

    def _finish(self, reason: str) -> bytes:
        why = _INCOMPLETE_OUT.get(reason)
        out = self._start() + self._end_all("completed" if why is None else "incomplete")
        self._closed = True
        if why is None:
            self._status = "completed"
            return out + self._frame("response.completed", {"response": self.response()})
        self._status = "incomplete"
        self._why = why
        return out + self._frame("response.incomplete", {"response": self.response()})

    def _fail(self, error: Error) -> bytes:
        status, problem = failure(error)
        out = self._start()
        if problem is None:  # a Stop: what was written so far ends, cut short
            out += self._end_all("incomplete")
        else:
            fields = {"code": problem["code"], "message": error.message, "param": None}
            out += self._frame("error", fields)
        self._closed = True
        self._text = self._reasoning = self._call = None
        self._status = status
        self._error = problem
        return out + self._frame("response.failed", {"response": self.response()})

    # -- output items ---------------------------------------------------------------------

    def _open(self, kind: str) -> tuple[_Item, bytes]:
        """A new message or reasoning item; the open item ends first."""
        out = self._start() + self._end_all("completed")
        item = self._new_item(kind)
        if kind == "message":
            self._text = item
            added: dict[str, Any] = {"id": item.id, "type": "message", "status": "in_progress"}
            added |= {"role": "assistant", "content": []}
            part = item.where() | {"content_index": 0, "part": _EMPTY_TEXT_PART}
            out += self._added(item, added) + self._frame("response.content_part.added", part)
        else:
            self._reasoning = item
            added = {"id": item.id, "type": "reasoning", "summary": []}
            part = item.where() | {"summary_index": 0, "part": _EMPTY_SUMMARY_PART}
            out += self._added(item, added)
            out += self._frame("response.reasoning_summary_part.added", part)
        return item, out

    def _tool_start(self, source: int, call_id: str, name: str) -> bytes:
        known = self._calls.get(source)
        if known is not None and known is self._call:
            return b""  # repeated while open: nothing new (used again later: a new call)
        out = self._start() + self._end_all("completed")
        item = self._new_item("function_call")
        item.call_id = call_id or f"call_{item.output_index}"
        item.name = name
        self._calls[source] = item
        self._call = item
        return out + self._added(item, item.state("in_progress"))

    def _tool_done(self, event: ToolCallDone) -> bytes:
        out = b""
        item = self._calls.get(event.index)
        if item is None:  # given whole, without a start
            out = self._tool_start(event.index, event.call_id, event.name)
            item = self._calls[event.index]
        if item.final is not None:
            return b""  # that call ended already
        if not item.parts:  # no fragment went out: the call's whole text (or ``{}``) as one
            whole = whole_text(event)
            if whole:
                out += self._delta(item, whole)
        return out + self._end(
            item, "incomplete" if event.status == TOOL_INCOMPLETE else "completed"
        )

    def _new_item(self, kind: str) -> _Item:
        index = len(self._items)
        item = _Item(kind, index, f"{_ID_PREFIXES[kind]}_{self._id_base}_{index}")
        self._items.append(item)
        return item

    def _added(self, item: _Item, added: dict[str, Any]) -> bytes:
        payload = {"output_index": item.output_index, "item": added}
        return self._frame("response.output_item.added", payload)

    def _end_all(self, status: str) -> bytes:
        """End every open item, in output order."""
        out = b""
        for item in self._items:
            if item.final is None:
                out += self._end(item, status)
        return out

    def _end(self, item: _Item | None, status: str = "completed") -> bytes:
        """Write an open item's ``.done`` frames and keep its final form for the response."""
        if item is None or item.final is not None:
            return b""
        if item is self._text:
            self._text = None
        elif item is self._reasoning:
            self._reasoning = None
        elif item is self._call:
            self._call = None
        where = item.where()
        out = b""
        if item.kind == "function_call":
            if not item.parts:  # ended before any fragment: no arguments
                out = self._delta(item, "{}")
            final = item.state(status)
            done = where | {"arguments": final["arguments"]}
            out += self._frame("response.function_call_arguments.done", done)
        elif item.kind == "message":
            final = item.state(status)
            part = final["content"][0]
            done = where | {"content_index": 0, "text": part["text"], "logprobs": []}
            out += self._frame("response.output_text.done", done)
            out += self._frame(
                "response.content_part.done", where | {"content_index": 0, "part": part}
            )
        else:
            final = item.state(status)
            summary = final["summary"][0]
            done = where | {"summary_index": 0, "text": summary["text"]}
            out += self._frame("response.reasoning_summary_text.done", done)
            done = where | {"summary_index": 0, "part": summary}
            out += self._frame("response.reasoning_summary_part.done", done)
        item.final = final
        payload = {"output_index": item.output_index, "item": final}
        return out + self._frame("response.output_item.done", payload)


def usage_body(usage: Usage) -> dict[str, Any]:
    """``usage`` as a response object carries it."""
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def _summary(text: str) -> dict[str, Any]:
    return {"type": "summary_text", "text": text}


_EMPTY_TEXT_PART = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
_EMPTY_SUMMARY_PART = _summary("")
_ID_PREFIXES = {"message": "msg", "reasoning": "rs", "function_call": "fc"}
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
