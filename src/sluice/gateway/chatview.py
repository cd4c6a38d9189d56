"""The chat page's view of one session: a fold of its events, and the updates a page receives.

``ChatView.apply(kind, data)`` folds the native events (the same names and fields as the
native API and the store) into what the page shows: the answer's text, the reasoning, the
status while no text flows, tool calls and the ending; and for an agent's run, its steps
(``RunSteps``): a step whose tools ran keeps what the model said before them, and the answer
is what the run's last step says. ``ChatUpdates`` turns successive views
into page updates: the answer as sanitised HTML blocks, sending only the blocks from the first
one that changed. Both are deterministic and do no I/O, so folding a log to sequence number N
always gives the page state that was sent with event id N: that is what makes resuming exact.
"""

from __future__ import annotations

from typing import Any

from sluice.gateway.markdown import render_tail
from sluice.session.steps import RunSteps, step_ran

STREAMING, COMPLETE, ERRORED, CANCELLED = "streaming", "complete", "errored", "cancelled"

#: the events of an agent run's steps and of the gateway's tool calls
_RUN_EVENTS = frozenset({"step.start", "step.end", "tool.start", "tool.progress", "tool.end"})


class ChatView:
    """What the page shows of a session, folded from its events."""

    __slots__ = (
        "_calls",
        "_progress",
        "attempt",
        "error",
        "finish_reason",
        "reasoning",
        "run",
        "state",
        "status",
        "text",
        "tools",
        "urgent",
    )

    def __init__(self) -> None:
        self._reset(1)

    def _reset(self, attempt: int) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        #: ``{"phase": "waiting" | "thinking" | "tool", "detail": name}`` until text flows;
        #: while an agent's tools run, ``detail`` names those running and ``progress`` is the
        #: last progress one of them told (``{"tool", "progress", "total", "message"}``)
        self.status: dict[str, Any] | None = None
        #: an agent run's steps (none for a plain session)
        self.run = RunSteps()
        #: the id of the running tool that told its progress last
        self._progress: str | None = None
        self.tools: list[dict[str, Any]] = []
        #: the running tool calls by index: a provider may interleave parallel calls' fragments
        self._calls: dict[int, dict[str, Any]] = {}
        self.state = STREAMING
        self.error: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.attempt = attempt
        #: set when something happened that the page should see at once (not coalesced)
        self.urgent = False

    def apply(self, kind: str, data: dict[str, Any]) -> None:
        if kind in _RUN_EVENTS:
            self._run_event(kind, data)
            return
        match kind:
            case "text":
                if not self.text:
                    self.urgent = True
                    self.status = None
                self.text.append(data["text"])
            case "reasoning":
                self.reasoning.append(data["text"])
            case "status":
                self.status = {"phase": data["phase"], "detail": data.get("detail")}
                self.urgent = True
            case "tool_call.start" | "tool_call.delta" | "tool_call.done" if (
                self.run.current is not None
            ):
                # an agent's step: the call is the step's
                self.run.apply(kind, data)
                if kind == "tool_call.start" and not self.text:
                    self.status = {"phase": "tool", "detail": data["name"]}
                self.urgent = self.urgent or kind != "tool_call.delta"
            case "tool_call.start":
                started = {"name": data["name"], "arguments": "", "status": "running"}
                self.tools.append(started)
                self._calls[data["index"]] = started
                if not self.text:
                    self.status = {"phase": "tool", "detail": data["name"]}
                self.urgent = True
            case "tool_call.delta":
                running = self._calls.get(data["index"])
                if running is not None:
                    running["arguments"] += data["fragment"]
            case "tool_call.done":
                ended = self._calls.pop(data["index"], None)
                if ended is not None:
                    ended["arguments"] = data.get("raw_arguments") or ended["arguments"]
                    ended["status"] = data.get("status") or "ok"
                self.urgent = True
            case "finish" if self.run.current is not None:
                # An agent's step: a turn that calls tools leaves the run going (the tools
                # run next), or ends it (``step.end``: there was nothing to run).
                self.finish_reason = data.get("reason")
                if self.finish_reason != "tool_calls":
                    self.state = COMPLETE
                    self.status = None
                self.urgent = True
            case "finish":
                self.state = COMPLETE
                self.finish_reason = data.get("reason")
                self.status = None
                self.urgent = True
            case "error":
                cancelled = data.get("type") == "cancelled"
                self.state = CANCELLED if cancelled else ERRORED
                self.error = None if cancelled else _error(data)
                self.status = None
                self.run.end(cancelled)
                self.urgent = True
            case "retry":
                self._reset(data["attempt"])
                self.urgent = True

    def _run_event(self, kind: str, data: dict[str, Any]) -> None:
        run = self.run
        step = run.current
        if kind == "tool.start" and step is not None and not step_ran(step):
            # The step's tools begin: what it said goes with the step, and the answer starts
            # afresh with the next step.
            run.set_text(self.answer)
            self.text = []
        run.apply(kind, data)
        if kind == "tool.progress":
            # (coalesced: a tool may tell its progress far more often than a page redraws)
            self._progress = data.get("id")
        else:
            self.urgent = True
            if kind == "step.start":
                self._progress, self.finish_reason = None, None
            elif (
                kind == "step.end"
                and data.get("finish_reason") == "tool_calls"
                and step is not None
                and not step_ran(step)
            ):
                # calls that nothing ran: the run ends with them (or with max_steps)
                self.state, self.status = COMPLETE, None
            if kind != "tool.end":
                return
        if self.status is None or self.status["phase"] != "tool":
            return
        step = run.current
        running = [] if step is None else [c for c in step["calls"] if c["state"] == "running"]
        if not running:  # (the names of the last ones stay, until the next step's status)
            self.status = {"phase": "tool", "detail": self.status["detail"]}
            return
        status: dict[str, Any] = {
            "phase": "tool",
            "detail": ", ".join(dict.fromkeys(call["name"] for call in running)),
        }
        told = next((c for c in running if c["id"] == self._progress), None)
        if told is not None and told["progress"] is not None:
            status["progress"] = {"tool": told["name"], **told["progress"]}
        self.status = status

    @property
    def answer(self) -> str:
        return "".join(self.text)


def _error(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": data.get("type"),
        "message": data.get("message"),
        "retryable": bool(data.get("retryable")),
    }


class ChatUpdates:
    """Page updates from successive views: only what changed since the last one sent.

    ``blocks`` are the answer's top-level blocks as sanitised HTML: the page keeps its first
    ``base`` blocks and replaces the rest with these. ``reasoning`` is plain text appended
    after the first ``reasoning_from`` characters (the page renders it as text, never HTML).
    ``steps`` (an agent run's, ``RunSteps.steps``) comes only when they changed: the page keeps
    the last it was sent.

    Blocks that no later text can change are kept rendered (``render_tail``): each update
    parses only the answer's open tail, so its cost does not grow with the answer.
    """

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.reasoning_chars = 0
        #: the version of the run's steps the page holds (-1: none yet)
        self._steps_version = -1
        self._text_chars = -1
        self._attempt = 1
        self._final: list[str] = []
        self._final_chars = 0

    def _render(self, text: str) -> list[str]:
        if len(text) < self._final_chars:
            self._final, self._final_chars = [], 0
        blocks, final, offset = render_tail(text[self._final_chars :])
        rendered = self._final + blocks
        self._final = self._final + blocks[:final]
        self._final_chars += offset
        return rendered

    def assume_sent(self, view: ChatView) -> None:
        """The page already holds ``view`` (it resumed after the event that showed it)."""
        self.blocks = self._render(view.answer)
        self._text_chars = sum(map(len, view.text))
        self.reasoning_chars = sum(map(len, view.reasoning))
        self._attempt = view.attempt
        self._steps_version = view.run.version

    def update(self, view: ChatView, seq: int) -> dict[str, Any]:
        text_chars = sum(map(len, view.text))
        if view.attempt != self._attempt:  # a new attempt: the answer starts afresh
            self._text_chars, self.reasoning_chars, self._attempt = -1, 0, view.attempt
            self._final, self._final_chars = [], 0
            self._steps_version = -1
        if text_chars != self._text_chars:
            blocks = self._render(view.answer)
            base = _common_prefix(self.blocks, blocks)
            self.blocks, self._text_chars = blocks, text_chars
            changed = blocks[base:]
        else:
            base, changed = len(self.blocks), []
        reasoning = "".join(view.reasoning)
        reasoning_from = min(self.reasoning_chars, len(reasoning))
        self.reasoning_chars = len(reasoning)
        view.urgent = False
        update = {
            "seq": seq,
            "state": view.state,
            "attempt": view.attempt,
            "base": base,
            "blocks": changed,
            "answering": bool(view.text),
            "reasoning_from": reasoning_from,
            "reasoning": reasoning[reasoning_from:],
            "status": view.status,
            "tools": view.tools,
            "finish_reason": view.finish_reason,
            "error": view.error,
        }
        if view.run.version != self._steps_version:
            update["steps"] = view.run.steps
            self._steps_version = view.run.version
        return update


def _common_prefix(old: list[str], new: list[str]) -> int:
    index = 0
    for a, b in zip(old, new, strict=False):
        if a != b:
            break
        index += 1
    return index
