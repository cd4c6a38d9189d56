"""What the agent front ends' formats (AG-UI, the AI SDK's UI message stream) say alike of a
run beyond their own vocabulary: its status, a tool's progress, a retry. Each is the value of
a custom event (AG-UI's ``CUSTOM``, a transient ``data-*`` part): camelCase keys, and an
optional field left out rather than sent as null, as both formats' clients expect. No I/O."""

from __future__ import annotations

from typing import Any

from sluice import events as ev


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
