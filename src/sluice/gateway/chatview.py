"""The chat page's view of one session: a fold of its events, and the updates a page receives.

``ChatView.apply(kind, data)`` folds the native events (the same names and fields as the
native API and the store) into what the page shows: the answer's text, the reasoning, the
status while no text flows, tool calls and the ending. ``ChatUpdates`` turns successive views
into page updates: the answer as sanitised HTML blocks, sending only the blocks from the first
one that changed. Both are deterministic and do no I/O, so folding a log to sequence number N
always gives the page state that was sent with event id N: that is what makes resuming exact.
"""

from __future__ import annotations

from typing import Any

from sluice.gateway.markdown import render_tail

STREAMING, COMPLETE, ERRORED, CANCELLED = "streaming", "complete", "errored", "cancelled"


class ChatView:
    """What the page shows of a session, folded from its events."""

    __slots__ = (
        "_calls",
        "attempt",
        "error",
        "finish_reason",
        "reasoning",
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
        #: ``{"phase": "waiting" | "thinking" | "tool", "detail": name}`` until text flows
        self.status: dict[str, Any] | None = None
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
                self.urgent = True
            case "retry":
                self._reset(data["attempt"])
                self.urgent = True

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

    Blocks that no later text can change are kept rendered (``render_tail``): each update
    parses only the answer's open tail, so its cost does not grow with the answer.
    """

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.reasoning_chars = 0
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

    def update(self, view: ChatView, seq: int) -> dict[str, Any]:
        text_chars = sum(map(len, view.text))
        if view.attempt != self._attempt:  # a new attempt: the answer starts afresh
            self._text_chars, self.reasoning_chars, self._attempt = -1, 0, view.attempt
            self._final, self._final_chars = [], 0
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
        return {
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


def _common_prefix(old: list[str], new: list[str]) -> int:
    index = 0
    for a, b in zip(old, new, strict=False):
        if a != b:
            break
        index += 1
    return index
