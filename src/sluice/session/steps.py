"""An agent run's steps as the pages show them: a fold of the run's step and tool events.

``RunSteps.apply(kind, data)`` takes the native events (names and fields as the native API and
the store carry them) and keeps, per step, its state, duration, finish reason and usage, and
its tool calls: the model's call as it is written (``tool_call.*``), then the gateway's
execution of it (``tool.start``, ``tool.progress``, ``tool.end``), matched by the call's id.
``RunSteps.from_record`` gives the same shape from a finished run's record. The chat page's
view and the session page's trail fold with it; it does no I/O and is deterministic, so the
chat page's resume stays exact.

A step (JSON-ready, sent to pages as it is)::

    {"step": 1, "state": "running" | "done" | "stopped" | "failed", "duration": s | None,
     "finish_reason": str | None, "usage": {...} | None, "text": str, "calls": [call, ...]}

    call: {"id", "name", "tool": "server.tool" | None, "arguments": text,
           "state": "calling" | "called" | "running" | "ok" | "error" | "stopped",
           "duration": s | None, "result": text | None, "error": type | None,
           "progress": {"progress", "total", "message"} | None}

``text`` is what the model said in a step whose tools then ran (the fold of the answer sets
it, ``set_text``; the run's last step's text is the answer).
"""

from __future__ import annotations

from typing import Any

import orjson

#: shown for what a record does not keep (``[store] keep_content = false``)
NOT_KEPT = "(not kept)"
#: the states of a call that has ended
CALL_ENDED = frozenset({"ok", "error", "stopped"})
#: the states of a call the model is writing or has written, that the gateway has not run
CALL_UNRUN = frozenset({"calling", "called"})


def step_ran(step: dict[str, Any]) -> bool:
    """Whether the gateway began running any of the step's tool calls."""
    return any(call["state"] not in CALL_UNRUN for call in step["calls"])


def arguments_text(arguments: Any) -> str:
    """A tool call's arguments as the pages show them: indented JSON (none: empty)."""
    if arguments is None:
        return ""
    if isinstance(arguments, str):
        return arguments
    return orjson.dumps(arguments, option=orjson.OPT_INDENT_2).decode()


class RunSteps:
    """The steps of one run, folded from its events."""

    __slots__ = ("_calls", "_indexes", "steps", "version")

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []
        #: the calls of the run by id (a tool event names its call by the model's id)
        self._calls: dict[str, dict[str, Any]] = {}
        #: the calls the model is writing in the current step, by their index in its turn
        self._indexes: dict[int, dict[str, Any]] = {}
        #: bumped whenever anything shown changes
        self.version = 0

    @classmethod
    def from_record(cls, steps: list[dict[str, Any]], unfinished: str = "stopped") -> RunSteps:
        """The steps of a finished run as its record keeps them (``AgentRun``'s ``steps``);
        a step the run did not finish is in the state ``unfinished``."""
        folded = cls()
        for kept in steps:
            calls = []
            for call in kept.get("tool_calls") or ():
                error = call.get("error")
                said = call.get("arguments") is not None  # (None: ``keep_content`` off)
                calls.append(
                    {
                        "id": call.get("id") or "",
                        "name": call.get("name") or "",
                        "tool": call.get("tool"),
                        "arguments": arguments_text(call["arguments"]) if said else NOT_KEPT,
                        "state": _ended(error, call.get("is_error")),
                        "duration": call.get("duration"),
                        "result": call.get("result") if said else NOT_KEPT,
                        "error": error,
                        "progress": None,
                    }
                )
            folded.steps.append(
                {
                    "step": kept.get("step"),
                    "state": "done" if "duration" in kept else unfinished,
                    "duration": kept.get("duration"),
                    "finish_reason": kept.get("finish_reason"),
                    "usage": kept.get("usage"),
                    "text": kept.get("text") or "",
                    "calls": calls,
                }
            )
        folded.version = 1 if folded.steps else 0
        return folded

    @property
    def current(self) -> dict[str, Any] | None:
        """The step under way (None between steps, and for a session that is no run)."""
        step = self.steps[-1] if self.steps else None
        return step if step is not None and step["state"] == "running" else None

    def running_tools(self) -> list[str]:
        """The names of the tools running now, in the order they started."""
        step = self.current
        if step is None:
            return []
        return [call["name"] for call in step["calls"] if call["state"] == "running"]

    def apply(self, kind: str, data: dict[str, Any]) -> bool:
        """Fold one event; True when it was a step's or a tool's (the caller's is the rest).

        The model's ``tool_call.*`` events are the step's only while a step is under way: a
        session that is no run keeps its own list of them."""
        match kind:
            case "step.start":
                self._indexes.clear()
                self.steps.append(
                    {
                        "step": data.get("step"),
                        "state": "running",
                        "duration": None,
                        "finish_reason": None,
                        "usage": None,
                        "text": "",
                        "calls": [],
                    }
                )
            case "step.end":
                step = self.current
                if step is None:
                    return True
                step |= {
                    "state": "done",
                    "duration": data.get("duration"),
                    "finish_reason": data.get("finish_reason"),
                    "usage": data.get("usage"),
                }
            case "tool_call.start" | "tool_call.delta" | "tool_call.done":
                step = self.current
                if step is None:
                    return False
                self._model_call(step, kind, data)
            case "tool.start":
                call = self._call(str(data.get("id") or ""), data.get("name") or "")
                if call is None:
                    return True
                call |= {
                    "tool": data.get("tool"),
                    "arguments": arguments_text(data.get("arguments")),
                    "state": "running",
                }
            case "tool.progress":
                call = self._calls.get(str(data.get("id") or ""))
                if call is None:
                    return True
                call["progress"] = {
                    "progress": data.get("progress"),
                    "total": data.get("total"),
                    "message": data.get("message"),
                }
            case "tool.end":
                call = self._call(str(data.get("id") or ""), data.get("name") or "")
                if call is None:
                    return True
                error = data.get("error")
                call |= {
                    "state": _ended(error, data.get("is_error")),
                    "duration": data.get("duration"),
                    "result": data.get("result"),
                    "error": error,
                    "progress": None,
                }
            case _:
                return False
        self.version += 1
        return True

    def set_text(self, text: str) -> None:
        """What the model said in the step under way, before the tools it called."""
        step = self.current
        if step is not None and text != step["text"]:
            step["text"] = text
            self.version += 1

    def end(self, cancelled: bool) -> None:
        """The run ended with an error (a Stop, when ``cancelled``): the step and the calls
        still under way end with it."""
        step = self.current
        if step is None:
            return
        step["state"] = "stopped" if cancelled else "failed"
        for call in step["calls"]:
            if call["state"] not in CALL_ENDED:
                call["state"] = "stopped"
                call["progress"] = None
        self.version += 1

    def _model_call(self, step: dict[str, Any], kind: str, data: dict[str, Any]) -> None:
        index = data.get("index", 0)
        if kind == "tool_call.start":
            call = self._call(str(data.get("id") or ""), data.get("name") or "", step)
            if call is not None:
                self._indexes[index] = call
            return
        call = self._indexes.get(index)
        if call is None or call["state"] != "calling":
            return
        if kind == "tool_call.delta":
            call["arguments"] += data.get("fragment", "")
        else:
            call["arguments"] = data.get("raw_arguments") or call["arguments"]
            call["state"] = "called"

    def _call(
        self, call_id: str, name: str, step: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """The call of that id, added to the step under way when new (None: no step)."""
        call = self._calls.get(call_id) if call_id else None
        if call is not None:
            return call
        owner = step or self.current
        if owner is None:
            return None
        call = {
            "id": call_id,
            "name": name,
            "tool": None,
            "arguments": "",
            "state": "calling",
            "duration": None,
            "result": None,
            "error": None,
            "progress": None,
        }
        owner["calls"].append(call)
        if call_id:
            self._calls[call_id] = call
        return call


def _ended(error: str | None, is_error: Any) -> str:
    """An ended call's state: stopped (by a Stop), error, or ok."""
    if error == "cancelled":
        return "stopped"
    return "error" if is_error else "ok"
