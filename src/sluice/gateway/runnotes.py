"""What the agent front ends' formats (AG-UI, the AI SDK's UI message stream) do alike: read a
message's text from its parts, and say what their own vocabulary has no word for: a run's
status, a tool's progress, a retry. Each of those is the value of a custom event (AG-UI's
``CUSTOM``, a transient ``data-*`` part): camelCase keys, and an optional field left out rather
than sent as null, as both formats' clients expect. No I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from sluice import events as ev
from sluice.errors import BadRequest


def delta_prefix(kind: str, key: str, ident: str, delta: str = "delta") -> bytes:
    """An SSE frame of ``{"type": kind, key: ident, delta: …}`` up to its delta: a text,
    reasoning or tool-argument delta's frame is this, the delta as JSON, and ``}\n\n``."""
    fields = (kind.encode(), key.encode(), orjson.dumps(ident), delta.encode())
    return b'data: {"type":"%s","%s":%s,"%s":' % fields


class RunPresenter:
    """What the two formats' presenters share: the dispatch of a logged event to the
    subclass's handler for its type (``_handlers``), after the stream's opening frames
    (``_begin``, once), nothing after the stream ``finished``, and a text delta of an open text
    part as one frame: ``_text_prefix`` (the frame up to its delta, None while no text part is
    open), the delta, and the frame's end."""

    __slots__ = ("_handlers", "_started", "_text_prefix", "finished")

    def __init__(self) -> None:
        self.finished = False
        self._started = False
        self._text_prefix: bytes | None = None
        self._handlers: dict[type, Callable[[Any], bytes]] = {}

    def _begin(self) -> bytes:
        raise NotImplementedError

    def render(self, seq: int, event: ev.Event | None, raw: bytes) -> bytes:
        if self.finished:
            return b""
        if type(event) is ev.TextDelta and self._text_prefix is not None:
            text = event.text
            return self._text_prefix + orjson.dumps(text) + b"}\n\n" if text else b""
        head = b"" if self._started else self._begin()
        if event is None:
            return head
        handler = self._handlers.get(type(event))
        return head if handler is None else head + handler(event)


def text_of_parts(parts: list[Any], where: str) -> str:
    """The ``text`` parts of a message joined; parts of other types are left out."""
    texts = []
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            raise BadRequest(f"{where}[{j}] must be an object")
        if part.get("type") == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise BadRequest(f"{where}[{j}]: 'text' must be a string")
            texts.append(text)
    return "".join(texts)


def status(event: ev.Status) -> dict[str, Any]:
    value: dict[str, Any] = {"phase": event.phase}
    if event.detail is not None:
        value["detail"] = event.detail
    return value


def tool_progress(event: ev.ToolProgress) -> dict[str, Any]:
    value: dict[str, Any] = {"toolCallId": event.call_id, "progress": event.progress}
    if event.total is not None:
        value["total"] = event.total
    if event.message is not None:
        value["message"] = event.message
    return value


def retry(event: ev.Retry) -> dict[str, Any]:
    return {"attempt": event.attempt, "reason": event.reason, "delay": event.delay}
