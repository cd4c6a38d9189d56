"""What the agent front ends' formats (AG-UI, the AI SDK's UI message stream) do alike: read a
message's text from its parts, and say what their own vocabulary has no word for: a run's
status, a tool's progress, a retry. Each of those is the value of a custom event (AG-UI's
``CUSTOM``, a transient ``data-*`` part): camelCase keys, and an optional field left out rather
than sent as null, as both formats' clients expect. No I/O."""

from __future__ import annotations

from typing import Any

from sluice import events as ev
from sluice.errors import BadRequest


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
