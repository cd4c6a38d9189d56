"""What a simulated model does, before any wire format: output events, paced steps, and their fold.

A scenario is played as a sequence of ``Step``s: wait ``delay`` seconds, then emit ``events``
(usually one token, several in a burst, none for a stall). The wire encoders turn events into
bytes; the ``Transcript`` folds them into what was said so far. No I/O.

A *token* is one ``TextDelta``, ``ReasoningDelta`` or ``ToolArgsDelta``: usage counts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

StopReason = Literal["stop", "length", "tool_calls"]
Ending = Literal["finished", "error", "reset", "cut"]


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    """A tool call begins. ``has_arguments`` is false for a tool called with ``{}``."""

    index: int
    name: str
    has_arguments: bool = True


@dataclass(frozen=True, slots=True)
class ToolArgsDelta:
    index: int
    fragment: str


@dataclass(frozen=True, slots=True)
class Finish:
    """The turn ends normally; encoders close open blocks and write the terminator."""

    reason: StopReason


@dataclass(frozen=True, slots=True)
class MalformedFrame:
    """One frame of invalid JSON (injected fault); the stream goes on after it."""


@dataclass(frozen=True, slots=True)
class StreamError:
    """An in-stream error frame (injected fault); the body ends after it."""


@dataclass(frozen=True, slots=True)
class ConnectionReset:
    """The connection breaks here (injected fault)."""


Event = (
    TextDelta
    | ReasoningDelta
    | ToolCallStart
    | ToolArgsDelta
    | Finish
    | MalformedFrame
    | StreamError
    | ConnectionReset
)
TOKEN_EVENTS = (TextDelta, ReasoningDelta, ToolArgsDelta)


@dataclass(frozen=True, slots=True)
class Step:
    delay: float
    events: tuple[Event, ...]


@dataclass(slots=True)
class ToolCall:
    index: int
    name: str
    arguments: str = ""


@dataclass(slots=True)
class Transcript:
    """The fold of a script's events: everything said so far, and how it ended."""

    text_parts: list[str] = field(default_factory=list)
    reasoning_parts: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    tokens: int = 0
    reasoning_tokens: int = 0
    malformed_frames: int = 0
    finish_reason: StopReason | None = None
    ending: Ending | None = None

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def reasoning(self) -> str:
        return "".join(self.reasoning_parts)

    def observe(self, event: Event) -> None:
        match event:
            case TextDelta(text):
                self.text_parts.append(text)
                self.tokens += 1
            case ReasoningDelta(text):
                self.reasoning_parts.append(text)
                self.tokens += 1
                self.reasoning_tokens += 1
            case ToolCallStart(index, name):
                self.tool_calls.append(ToolCall(index, name))
            case ToolArgsDelta(index, fragment):
                self._tool(index).arguments += fragment
                self.tokens += 1
            case Finish(reason):
                self.finish_reason = reason
                self.ending = "finished"
            case MalformedFrame():
                self.malformed_frames += 1
            case StreamError():
                self.ending = "error"
            case ConnectionReset():
                self.ending = "reset"

    def _tool(self, index: int) -> ToolCall:
        for call in reversed(self.tool_calls):
            if call.index == index:
                return call
        raise ValueError(f"tool call {index} has not started")
