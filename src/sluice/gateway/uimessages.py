"""The AI SDK's UI message stream: an agent run's event log as the chunks ``useChat`` reads, and
the chat transport's request as the run's messages. No I/O.

Each chunk is ``data: <json>\\n\\n``; the stream ends with ``data: [DONE]\\n\\n``. The run is
one assistant message whose id is the session's: ``start``, then per step ``start-step`` …
``finish-step`` around its text, reasoning and tool parts, then ``finish`` with the reason of
the run's last model turn (written once the record is final: ``follows_finalization``), or
``error`` and ``finish`` on a failure, ``abort`` on a Stop. The order obeys the client's
rules: a ``*-delta`` or ``*-end`` only for an open ``*-start`` of that id, a tool's output only
for a call it was told of. docs/agents.md ("AI SDK UI message stream") has the table.
"""

from __future__ import annotations

from typing import Any

import orjson

from sluice import events as ev
from sluice.errors import BadRequest
from sluice.gateway import runnotes

#: the response header the AI SDK's documentation asks for
STREAM_HEADER = (b"x-vercel-ai-ui-message-stream", b"v1")
DONE = b"data: [DONE]\n\n"

#: the run's finish reasons in the AI SDK's words (anything else: ``other``)
FINISH_REASONS = {
    ev.FINISH_STOP: "stop",
    ev.FINISH_LENGTH: "length",
    ev.FINISH_CONTENT_FILTER: "content-filter",
    ev.FINISH_REFUSAL: "content-filter",
    ev.FINISH_TOOL_CALLS: "tool-calls",
}


def frame(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


class UIMessagePresenter(runnotes.RunPresenter):
    """The log of the run ``session_id`` as one assistant UI message with that id.

    The gateway's tools are ``dynamic`` (the front end does not know them in advance: they
    are ``dynamic-tool`` parts) and ``providerExecuted`` (the front end does not run them: its
    ``onToolCall`` is not called). Part ids are made from the session's id and counters, so
    the same log gives the same chunks: ``<session>-t<n>`` a text part, ``<session>-r<n>`` a
    reasoning part."""

    __slots__ = (
        "_base",
        "_calls",
        "_finish_reason",
        "_known",
        "_parts",
        "_reasoning",
        "_reasoning_prefix",
        "_step",
        "_text",
    )
    follows_finalization = True

    def __init__(self, session_id: str) -> None:
        super().__init__()
        self._base = session_id
        self._step = False
        #: text and reasoning parts made (for their ids)
        self._parts = 0
        #: the open text part's id (and ``_text_prefix``, its delta chunk's prefix; None: none open)
        self._text: str | None = None
        self._reasoning: str | None = None
        self._reasoning_prefix = b""
        #: the model's open tool calls: index -> (call id, name, delta chunk's prefix)
        self._calls: dict[int, tuple[str, str, bytes]] = {}
        #: the calls the client was told of (a tool's output for another would be refused)
        self._known: set[str] = set()
        self._finish_reason: str | None = None
        self._handlers = {
            ev.StepStart: self._step_start,
            ev.StepEnd: self._step_end,
            ev.Status: self._status,
            ev.TextDelta: self._text_delta,
            ev.ReasoningDelta: self._reasoning_delta,
            ev.ToolCallStart: self._call_start,
            ev.ToolCallDelta: self._call_delta,
            ev.ToolCallDone: self._call_done,
            ev.Finish: self._finish,
            ev.ToolStart: self._tool_start,
            ev.ToolProgress: self._tool_progress,
            ev.ToolEnd: self._tool_end,
            ev.Retry: self._retry,
            ev.Error: self._error,
        }

    # -- the Presenter protocol ---------------------------------------------------------------

    def close(self) -> bytes:
        """``finish`` (once the run ended well and its record is final: an error or a Stop
        wrote its own end), then ``[DONE]``."""
        if self.finished:
            return DONE
        self.finished = True
        out = b"" if self._started else self._begin()
        out += self._close_turn() + self._close_step()
        reason = FINISH_REASONS.get(self._finish_reason or ev.FINISH_STOP, "other")
        return out + frame({"type": "finish", "finishReason": reason}) + DONE

    # -- the message and its steps ------------------------------------------------------------

    def _begin(self) -> bytes:
        self._started = True
        return frame({"type": "start", "messageId": self._base})

    def _step_start(self, event: ev.StepStart) -> bytes:
        out = self._close_turn() + self._close_step()
        self._step = True
        return out + b'data: {"type":"start-step"}\n\n'

    def _step_end(self, event: ev.StepEnd) -> bytes:
        return self._close_turn() + self._close_step()

    def _close_step(self) -> bytes:
        if not self._step:
            return b""
        self._step = False
        return b'data: {"type":"finish-step"}\n\n'

    # -- the model's turn ---------------------------------------------------------------------

    def _next_id(self, kind: str) -> str:
        self._parts += 1
        return f"{self._base}-{kind}{self._parts}"

    def _text_delta(self, event: ev.TextDelta) -> bytes:
        # (an open text part takes the fast path in ``render``)
        if not event.text:
            return b""
        out = self._close_reasoning()
        self._text = part = self._next_id("t")
        prefix = runnotes.delta_prefix("text-delta", "id", part)
        self._text_prefix = prefix
        out += frame({"type": "text-start", "id": part})
        return out + prefix + orjson.dumps(event.text) + b"}\n\n"

    def _close_text(self) -> bytes:
        part, self._text, self._text_prefix = self._text, None, None
        return b"" if part is None else frame({"type": "text-end", "id": part})

    def _reasoning_delta(self, event: ev.ReasoningDelta) -> bytes:
        if not event.text:
            return b""
        out = b""
        if self._reasoning is None:
            out = self._close_text()
            self._reasoning = part = self._next_id("r")
            self._reasoning_prefix = runnotes.delta_prefix("reasoning-delta", "id", part)
            out += frame({"type": "reasoning-start", "id": part})
        return out + self._reasoning_prefix + orjson.dumps(event.text) + b"}\n\n"

    def _close_reasoning(self) -> bytes:
        part, self._reasoning = self._reasoning, None
        return b"" if part is None else frame({"type": "reasoning-end", "id": part})

    def _call_start(self, event: ev.ToolCallStart) -> bytes:
        out = self._close_text() + self._close_reasoning()
        return out + self._open_call(event.index, event.call_id, event.name)

    def _open_call(self, index: int, call_id: str, name: str) -> bytes:
        self._calls[index] = (
            call_id,
            name,
            runnotes.delta_prefix("tool-input-delta", "toolCallId", call_id, "inputTextDelta"),
        )
        self._known.add(call_id)
        return frame(
            {
                "type": "tool-input-start",
                "toolCallId": call_id,
                "toolName": name,
                "dynamic": True,
                "providerExecuted": True,
            }
        )

    def _call_delta(self, event: ev.ToolCallDelta) -> bytes:
        call = self._calls.get(event.index)
        if call is None or not event.fragment:
            return b""
        return call[2] + orjson.dumps(event.fragment) + b"}\n\n"

    def _call_done(self, event: ev.ToolCallDone) -> bytes:
        out = self._close_text() + self._close_reasoning()
        call = self._calls.pop(event.index, None)
        call_id, name = (event.call_id, event.name) if call is None else call[:2]
        self._known.add(call_id)
        if event.status == ev.TOOL_OK and event.arguments is not None:
            return out + self._input_available(call_id, name, event.arguments)
        error = event.error or f"the arguments are not a JSON object ({event.status})"
        return out + frame(
            {
                "type": "tool-input-error",
                "toolCallId": call_id,
                "toolName": name,
                "input": event.raw,
                "errorText": error,
                "dynamic": True,
                "providerExecuted": True,
            }
        )

    def _input_available(self, call_id: str, name: str, arguments: dict[str, Any]) -> bytes:
        return frame(
            {
                "type": "tool-input-available",
                "toolCallId": call_id,
                "toolName": name,
                "input": arguments,
                "dynamic": True,
                "providerExecuted": True,
            }
        )

    def _finish(self, event: ev.Finish) -> bytes:
        self._finish_reason = event.reason
        return self._close_turn()

    def _close_turn(self) -> bytes:
        """Text and reasoning parts end; a call still open (its end never came) fails."""
        out = self._close_text() + self._close_reasoning()
        for call_id, name, _ in self._calls.values():
            out += frame(
                {
                    "type": "tool-input-error",
                    "toolCallId": call_id,
                    "toolName": name,
                    "input": None,
                    "errorText": "the call ended before its arguments did",
                    "dynamic": True,
                    "providerExecuted": True,
                }
            )
        self._calls.clear()
        return out

    # -- the gateway's tools, status, retry, errors -------------------------------------------

    def _tool_start(self, event: ev.ToolStart) -> bytes:
        if event.call_id in self._known:
            return b""
        self._known.add(event.call_id)  # a call the model's stream did not show
        return self._input_available(event.call_id, event.name, event.arguments)

    def _tool_end(self, event: ev.ToolEnd) -> bytes:
        out = self._close_turn()
        if event.call_id not in self._known:
            out += self._input_available(event.call_id, event.name, {})
            self._known.add(event.call_id)
        if event.is_error:
            chunk: dict[str, Any] = {
                "type": "tool-output-error",
                "toolCallId": event.call_id,
                "errorText": event.result,
            }
        else:
            chunk = {
                "type": "tool-output-available",
                "toolCallId": event.call_id,
                "output": event.result,
            }
        chunk["dynamic"] = True
        chunk["providerExecuted"] = True
        return out + frame(chunk)

    def _tool_progress(self, event: ev.ToolProgress) -> bytes:
        data = runnotes.tool_progress(event)
        return frame({"type": "data-tool-progress", "data": data, "transient": True})

    def _status(self, event: ev.Status) -> bytes:
        return frame({"type": "data-status", "data": runnotes.status(event), "transient": True})

    def _retry(self, event: ev.Retry) -> bytes:
        """The run starts again from its first message: what is open ends, a transient
        ``data-retry`` says so, and the new attempt's steps follow in the same message."""
        out = self._close_turn() + self._close_step()
        return out + frame({"type": "data-retry", "data": runnotes.retry(event), "transient": True})

    def _error(self, event: ev.Error) -> bytes:
        """A Stop is an ``abort``; any other error an ``error`` and ``finish``."""
        self.finished = True
        out = self._close_turn() + self._close_step()
        if event.type == "cancelled":
            return out + frame({"type": "abort", "reason": event.message})
        out += frame({"type": "error", "errorText": f"{event.type}: {event.message}"})
        return out + frame({"type": "finish", "finishReason": "error"})


# -- the request ------------------------------------------------------------------------------


def chat_request(body: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    """The chat's id and the run's messages (Chat's shape, text only) of a ``useChat``
    request (``{id, messages: UIMessage[], trigger, messageId?}``).

    The messages are the whole conversation: each one's text parts joined; reasoning, tool,
    file, source and data parts left out (the tools ran in earlier runs)."""
    chat_id = body.get("id")
    if not isinstance(chat_id, str) or not chat_id:
        raise BadRequest("'id' (the chat's id) must be a non-empty string")
    raw = body.get("messages")
    if not isinstance(raw, list):
        raise BadRequest("'messages' must be a list of UI messages")
    messages: list[dict[str, str]] = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise BadRequest(f"{where} must be an object")
        role = message.get("role")
        if role not in ("system", "user", "assistant"):
            raise BadRequest(f"{where}: 'role' must be 'system', 'user' or 'assistant'")
        parts = message.get("parts")
        if not isinstance(parts, list):
            raise BadRequest(f"{where}: 'parts' must be a list")
        if text := runnotes.text_of_parts(parts, f"{where}.parts"):
            messages.append({"role": role, "content": text})
    if not any(m["role"] == "user" for m in messages):
        raise BadRequest("'messages' holds no user message with text")
    return chat_id, messages
