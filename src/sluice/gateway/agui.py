"""AG-UI: an agent run's event log as the AG-UI protocol's events, and its ``RunAgentInput``
as the run's messages. No I/O.

Each event is ``data: <json>\\n\\n`` (LF only: the TypeScript client splits on ``\\n\\n``), keys
camelCase, optional keys left out rather than null, and the order obeys the client's
``verify`` rules: ``RUN_STARTED`` first; every ``*_START`` closed by its ``*_END`` and every
step finished before ``RUN_FINISHED``; nothing after ``RUN_ERROR``. The log maps as
docs/agents.md ("AG-UI") tabulates: a step to ``STEP_STARTED``/``STEP_FINISHED``, the model's
text to one assistant message per step, its reasoning to reasoning messages, its tool calls
to ``TOOL_CALL_*`` under that message, the gateway's tool results to ``TOOL_CALL_RESULT``,
progress and retries to ``CUSTOM`` events, and the run's end to ``RUN_FINISHED`` (once the
record is final: ``follows_finalization``) or ``RUN_ERROR``.
"""

from __future__ import annotations

from typing import Any

import orjson

from sluice import events as ev
from sluice.errors import BadRequest
from sluice.gateway import runnotes

#: the ``CUSTOM`` events' names
STATUS = "sluice.status"
TOOL_PROGRESS = "sluice.tool_progress"
RETRY = "sluice.retry"


def frame(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


class AGUIPresenter(runnotes.RunPresenter):
    """The log of the run ``session_id`` as the AG-UI run ``run_id`` of ``thread_id``.

    Ids are made from the session's id and counters, so the same log always gives the same
    events: ``<session>-m<n>`` the assistant message of the n-th model turn (its text, and the
    parent of its tool calls), ``<session>-r<n>`` a reasoning message, ``<session>-t<n>`` a tool
    result's message."""

    __slots__ = (
        "_base",
        "_calls",
        "_finish_reason",
        "_message",
        "_model",
        "_reasoning",
        "_reasoning_prefix",
        "_reasonings",
        "_results",
        "_run_id",
        "_step",
        "_thread_id",
        "_turns",
        "_usage",
    )
    follows_finalization = True

    def __init__(self, thread_id: str, run_id: str, session_id: str) -> None:
        super().__init__()
        self._thread_id = thread_id
        self._run_id = run_id
        self._base = session_id
        #: assistant messages (one per model turn), reasoning messages and tool results made
        self._turns = 0
        self._reasonings = 0
        self._results = 0
        #: the open step's name
        self._step: str | None = None
        #: the current turn's assistant message id (None before its first text or call)
        self._message: str | None = None
        # (``_text_prefix``: the open text message's CONTENT frame up to its delta)
        #: the open reasoning message's id and CONTENT prefix
        self._reasoning: str | None = None
        self._reasoning_prefix = b""
        #: the model's open tool calls: index -> (call id, ARGS frame prefix)
        self._calls: dict[int, tuple[str, bytes]] = {}
        self._finish_reason: str | None = None
        self._model: str | None = None
        #: the run's usage, summed over its steps (None: no step told any)
        self._usage: dict[str, int] | None = None
        self._handlers = {
            ev.StepStart: self._step_start,
            ev.StepEnd: self._step_end,
            ev.Status: self._status,
            ev.Start: self._start,
            ev.TextDelta: self._text,
            ev.ReasoningDelta: self._reasoning_delta,
            ev.ToolCallStart: self._call_start,
            ev.ToolCallDelta: self._call_delta,
            ev.ToolCallDone: self._call_done,
            ev.Finish: self._finish,
            ev.ToolProgress: self._tool_progress,
            ev.ToolEnd: self._tool_end,
            ev.Retry: self._retry,
            ev.Error: self._error,
        }

    # -- the Presenter protocol ---------------------------------------------------------------

    def close(self) -> bytes:
        """``RUN_FINISHED``, once the run ended without an error (and its record is final)."""
        if self.finished:
            return b""
        self.finished = True
        out = b"" if self._started else self._begin()
        out += self._close_turn() + self._close_step()
        finished: dict[str, Any] = {
            "type": "RUN_FINISHED",
            "threadId": self._thread_id,
            "runId": self._run_id,
            "outcome": {"type": "success"},
        }
        if self._finish_reason is not None:
            finished["result"] = {"finishReason": self._finish_reason}
        if self._usage is not None:
            usage: dict[str, Any] = {} if self._model is None else {"model": self._model}
            finished["usage"] = [usage | self._usage]
        return out + frame(finished)

    # -- the run and its steps ----------------------------------------------------------------

    def _begin(self) -> bytes:
        self._started = True
        return frame(
            {
                "type": "RUN_STARTED",
                "threadId": self._thread_id,
                "runId": self._run_id,
                "metadata": {"sessionId": self._base},
            }
        )

    def _step_start(self, event: ev.StepStart) -> bytes:
        out = self._close_turn() + self._close_step()
        self._message = None
        self._step = name = f"step {event.step}"
        return out + frame({"type": "STEP_STARTED", "stepName": name})

    def _step_end(self, event: ev.StepEnd) -> bytes:
        usage = event.usage
        if usage:
            self._add_usage(usage)
        return self._close_turn() + self._close_step()

    def _close_step(self) -> bytes:
        name, self._step = self._step, None
        return b"" if name is None else frame({"type": "STEP_FINISHED", "stepName": name})

    def _add_usage(self, usage: dict[str, Any]) -> None:
        total = self._usage if self._usage is not None else {}
        inputs, outputs = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
        parts = {
            "inputTokens": inputs,
            "outputTokens": outputs,
            "totalTokens": inputs + outputs,
            "reasoningTokens": int(usage.get("reasoning_tokens") or 0),
            "cachedInputTokens": int(usage.get("cache_read_tokens") or 0),
            "cacheWriteInputTokens": int(usage.get("cache_write_tokens") or 0),
        }
        for key, value in parts.items():
            if value or key in total or key in ("inputTokens", "outputTokens", "totalTokens"):
                total[key] = total.get(key, 0) + value
        self._usage = total

    # -- the model's turn ---------------------------------------------------------------------

    def _start(self, event: ev.Start) -> bytes:
        """A model turn begins: its text and calls go to a new assistant message."""
        self._model = event.model or self._model
        self._message = None
        return self._close_turn()

    def _turn_message(self) -> str:
        if self._message is None:
            self._turns += 1
            self._message = f"{self._base}-m{self._turns}"
        return self._message

    def _text(self, event: ev.TextDelta) -> bytes:
        # (an open text message takes the fast path in ``render``)
        if not event.text:
            return b""
        out = self._close_reasoning()
        message = self._turn_message()
        out += frame({"type": "TEXT_MESSAGE_START", "messageId": message, "role": "assistant"})
        self._text_prefix = runnotes.delta_prefix("TEXT_MESSAGE_CONTENT", "messageId", message)
        return out + self._text_prefix + orjson.dumps(event.text) + b"}\n\n"

    def _close_text(self) -> bytes:
        if self._text_prefix is None:
            return b""
        self._text_prefix = None
        return frame({"type": "TEXT_MESSAGE_END", "messageId": self._message})

    def _reasoning_delta(self, event: ev.ReasoningDelta) -> bytes:
        if not event.text:
            return b""
        out = b""
        if self._reasoning is None:
            out = self._close_text()
            self._reasonings += 1
            self._reasoning = rid = f"{self._base}-r{self._reasonings}"
            out += frame({"type": "REASONING_START", "messageId": rid})
            out += frame({"type": "REASONING_MESSAGE_START", "messageId": rid, "role": "reasoning"})
            self._reasoning_prefix = runnotes.delta_prefix(
                "REASONING_MESSAGE_CONTENT", "messageId", rid
            )
        return out + self._reasoning_prefix + orjson.dumps(event.text) + b"}\n\n"

    def _close_reasoning(self) -> bytes:
        rid, self._reasoning = self._reasoning, None
        if rid is None:
            return b""
        return frame({"type": "REASONING_MESSAGE_END", "messageId": rid}) + frame(
            {"type": "REASONING_END", "messageId": rid}
        )

    def _call_start(self, event: ev.ToolCallStart) -> bytes:
        out = self._close_text() + self._close_reasoning()
        out += self._close_call(event.index)  # (an index reused while open: the old one ends)
        return out + self._open_call(event.index, event.call_id, event.name)

    def _open_call(self, index: int, call_id: str, name: str) -> bytes:
        self._calls[index] = (
            call_id,
            runnotes.delta_prefix("TOOL_CALL_ARGS", "toolCallId", call_id),
        )
        return frame(
            {
                "type": "TOOL_CALL_START",
                "toolCallId": call_id,
                "toolCallName": name,
                "parentMessageId": self._turn_message(),
            }
        )

    def _call_delta(self, event: ev.ToolCallDelta) -> bytes:
        call = self._calls.get(event.index)
        if call is None or not event.fragment:
            return b""
        return call[1] + orjson.dumps(event.fragment) + b"}\n\n"

    def _call_done(self, event: ev.ToolCallDone) -> bytes:
        out = b""
        if event.index not in self._calls:  # a call told whole, with no start or fragments
            out = self._close_text() + self._close_reasoning()
            out += self._open_call(event.index, event.call_id, event.name)
            if event.raw:
                out += self._call_delta(ev.ToolCallDelta(event.index, event.raw))
        return out + self._close_call(event.index)

    def _close_call(self, index: int) -> bytes:
        call = self._calls.pop(index, None)
        return b"" if call is None else frame({"type": "TOOL_CALL_END", "toolCallId": call[0]})

    def _finish(self, event: ev.Finish) -> bytes:
        self._finish_reason = event.reason
        return self._close_turn()

    def _close_turn(self) -> bytes:
        out = self._close_text() + self._close_reasoning()
        for index in list(self._calls):
            out += self._close_call(index)
        return out

    # -- the gateway's tools, status, retry, errors -------------------------------------------

    def _tool_end(self, event: ev.ToolEnd) -> bytes:
        self._results += 1
        result: dict[str, Any] = {
            "type": "TOOL_CALL_RESULT",
            "messageId": f"{self._base}-t{self._results}",
            "toolCallId": event.call_id,
            "content": event.result,
            "role": "tool",
        }
        if event.is_error:
            metadata: dict[str, Any] = {"isError": True}
            if event.error is not None:
                metadata["error"] = event.error
            result["metadata"] = metadata
        return self._close_turn() + frame(result)

    def _tool_progress(self, event: ev.ToolProgress) -> bytes:
        return frame(
            {"type": "CUSTOM", "name": TOOL_PROGRESS, "value": runnotes.tool_progress(event)}
        )

    def _status(self, event: ev.Status) -> bytes:
        return frame({"type": "CUSTOM", "name": STATUS, "value": runnotes.status(event)})

    def _retry(self, event: ev.Retry) -> bytes:
        """The run starts again from its first message: what is open closes, a ``CUSTOM``
        event says so, and the new attempt's steps follow in the same run."""
        out = self._close_turn() + self._close_step()
        return out + frame({"type": "CUSTOM", "name": RETRY, "value": runnotes.retry(event)})

    def _error(self, event: ev.Error) -> bytes:
        self.finished = True
        out = self._close_turn() + self._close_step()
        return out + frame({"type": "RUN_ERROR", "message": event.message, "code": event.type})


# -- the request ------------------------------------------------------------------------------


def run_input(body: dict[str, Any]) -> tuple[str, str, list[dict[str, str]]]:
    """A ``RunAgentInput``'s thread id, run id and the run's messages (Chat's shape, text only).

    The client's messages are the whole conversation: system and developer messages become
    the system prompt's, user and assistant messages their text (a user message's text parts
    joined; other parts left out), and tool messages and assistant tool calls are left out
    (the tools they record ran in earlier runs). ``context`` entries are told to the model in
    a system message; ``tools``, ``state`` and ``forwardedProps`` are not used."""
    thread_id = body.get("threadId")
    run_id = body.get("runId")
    if not isinstance(thread_id, str) or not thread_id:
        raise BadRequest("'threadId' must be a non-empty string")
    if not isinstance(run_id, str) or not run_id:
        raise BadRequest("'runId' must be a non-empty string")
    raw = body.get("messages")
    if not isinstance(raw, list):
        raise BadRequest("'messages' must be a list")
    messages: list[dict[str, str]] = []
    context = body.get("context")
    if context is not None:
        if not isinstance(context, list):
            raise BadRequest("'context' must be a list")
        lines = []
        for i, entry in enumerate(context):
            if not isinstance(entry, dict) or not all(
                isinstance(entry.get(k), str) for k in ("description", "value")
            ):
                raise BadRequest(f"context[{i}] must be {{description, value}}, both strings")
            lines.append(f"{entry['description']}: {entry['value']}")
        if lines:
            messages.append({"role": "system", "content": "\n".join(lines)})
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise BadRequest(f"{where} must be an object")
        role = message.get("role")
        if role in ("tool", "activity", "reasoning"):
            continue
        if role not in ("system", "developer", "user", "assistant"):
            raise BadRequest(f"{where}: unknown role {role!r}")
        text = _text(message.get("content"), where)
        if text:
            messages.append({"role": "system" if role == "developer" else role, "content": text})
    if not any(m["role"] == "user" for m in messages):
        raise BadRequest("'messages' holds no user message with text")
    return thread_id, run_id, messages


def _text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest(f"{where}: 'content' must be a string or a list of parts")
    return runnotes.text_of_parts(content, f"{where}.content")
