"""One conversational turn, independent of any wire format: the request and its accumulated result.

``TurnRequest`` is what every client format is parsed into and every upstream format is built
from. ``TurnAccumulator`` is the fold over normalised events that yields a ``TurnResult``:
final text, reasoning, tool calls, usage, finish reason or error.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sluice import events as ev


@dataclass(slots=True)
class ToolSpec:
    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object"})


@dataclass(slots=True)
class TextPart:
    text: str


@dataclass(slots=True)
class ToolCallPart:
    call_id: str
    name: str
    arguments: dict[str, Any]


@dataclass(slots=True)
class ToolResultPart:
    call_id: str
    content: str
    is_error: bool = False


@dataclass(slots=True)
class ThinkingPart:
    """An assistant turn's reasoning as its provider must see it again to continue the turn
    (Anthropic requires a turn with thinking and tools to come back with its thinking blocks
    unchanged): the text and its opaque ``signature``; ``redacted``: only the opaque data.
    Only a builder for the provider that made it sends it; the others leave it out."""

    text: str
    signature: str
    redacted: bool = False


Part = TextPart | ToolCallPart | ToolResultPart | ThinkingPart


@dataclass(slots=True)
class ReasoningSpec:
    """What the client asked of the model's thinking, in no format's words.

    ``budget_tokens`` is a token budget (0: no thinking; None: the model decides), ``effort``
    a level (``minimal``, ``low``, ``medium``, ``high``), ``include`` whether the client wants
    the thinking's text (or its summary) in the answer.
    """

    budget_tokens: int | None = None
    effort: str | None = None
    include: bool = False


@dataclass(slots=True)
class Message:
    role: str  # "user" | "assistant"
    parts: list[Part]


@dataclass(slots=True)
class TurnRequest:
    """A client's request in normalised form.

    ``tool_choice`` is ``"auto"``, ``"none"``, ``"required"`` or a tool name.
    ``include_usage`` records whether the client asked for usage in its stream.
    """

    model: str
    messages: list[Message]
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: str | None = None
    stream: bool = False
    include_usage: bool = False
    user: str | None = None
    #: what the client asked of the model's thinking (None: nothing said)
    reasoning: ReasoningSpec | None = None

    def prompt_text(self) -> str:
        """The prompt: the text of the last user message (its first text part), whole."""
        for message in reversed(self.messages):
            if message.role == "user":
                for part in message.parts:
                    if isinstance(part, TextPart):
                        return part.text
        return ""

    def prompt_preview(self, limit: int = 200) -> str:
        return self.prompt_text()[:limit]


@dataclass(slots=True)
class ToolCallResult:
    call_id: str
    name: str
    raw: str
    arguments: dict[str, Any] | None
    status: str
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.call_id,
            "name": self.name,
            "arguments": self.arguments,
            "raw_arguments": self.raw,
            "status": self.status,
            "error": self.error,
        }


@dataclass(slots=True)
class TurnResult:
    response_id: str = ""
    model: str = ""
    text: str = ""
    reasoning: str = ""
    #: the reasoning by block, each with its signature, as a continued turn sends it back
    thinking: list[ThinkingPart] = field(default_factory=list)
    tool_calls: list[ToolCallResult] = field(default_factory=list)
    usage: ev.Usage | None = None
    finish_reason: str | None = None
    finish_raw: str | None = None
    error: ev.Error | None = None


class TurnAccumulator:
    """Folds normalised events into a ``TurnResult``. Text is kept as a list of pieces and
    joined on demand, so accumulation stays linear in the length of the stream."""

    __slots__ = (
        "_blocks",
        "_reasoning",
        "_text",
        "error",
        "finish_raw",
        "finish_reason",
        "model",
        "output_deltas",
        "response_id",
        "signatures",
        "tool_calls",
        "usage",
    )

    def __init__(self) -> None:
        self._text: list[str] = []
        self._reasoning: list[str] = []
        #: where each reasoning block starts in ``_reasoning``: (its index, position)
        self._blocks: list[tuple[int, int]] = []
        #: the reasoning's opaque tokens, in order (never shown; sent back to continue a turn)
        self.signatures: list[ev.Signature] = []
        self.response_id = ""
        self.model = ""
        self.tool_calls: list[ToolCallResult] = []
        self.usage: ev.Usage | None = None
        self.finish_reason: str | None = None
        self.finish_raw: str | None = None
        self.error: ev.Error | None = None
        #: content deltas seen (text, reasoning, tool fragments): the estimate of output
        #: tokens when the provider reports no usage.
        self.output_deltas = 0

    def apply(self, event: ev.Event) -> None:
        if type(event) is ev.TextDelta:  # most events: a type test costs less than a match
            self._text.append(event.text)
            self.output_deltas += 1
            return
        match event:
            case ev.ReasoningDelta(text=text, index=index):
                if not self._blocks or self._blocks[-1][0] != index:
                    self._blocks.append((index, len(self._reasoning)))
                self._reasoning.append(text)
                self.output_deltas += 1
            case ev.Signature():
                self.signatures.append(event)
            case ev.ToolCallDelta():
                self.output_deltas += 1
            case ev.ToolCallDone():
                self.tool_calls.append(
                    ToolCallResult(
                        call_id=event.call_id,
                        name=event.name,
                        raw=event.raw,
                        arguments=event.arguments,
                        status=event.status,
                        error=event.error,
                    )
                )
            case ev.Usage():
                self.usage = event
            case ev.Start(response_id=rid, model=model):
                self.response_id = rid
                self.model = model
            case ev.Finish(reason=reason, raw=raw):
                self.finish_reason = reason
                self.finish_raw = raw
            case ev.Error():
                self.error = event

    @property
    def text(self) -> str:
        if len(self._text) > 1:
            self._text[:] = ["".join(self._text)]
        return self._text[0] if self._text else ""

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning)

    def thinking(self) -> list[ThinkingPart]:
        """The reasoning by block (a block is a run of one index), each with the signature
        of its index; a redacted block where its token came; in the order they began."""
        pieces, blocks = self._reasoning, self._blocks
        found: list[tuple[int, ThinkingPart]] = []
        for number, (index, start) in enumerate(blocks):
            end = blocks[number + 1][1] if number + 1 < len(blocks) else len(pieces)
            found.append((index, ThinkingPart("".join(pieces[start:end]), "")))
        for signature in self.signatures:
            if signature.redacted:
                found.append((signature.index, ThinkingPart("", signature.signature, True)))
                continue
            for index, part in reversed(found):
                if index == signature.index and not part.redacted:
                    part.signature = signature.signature
                    break
            else:  # a signature on a block without text (its reasoning was left out)
                found.append((signature.index, ThinkingPart("", signature.signature)))
        found.sort(key=lambda item: item[0])  # (stable: by index, then as they came)
        return [part for _, part in found]

    def result(self) -> TurnResult:
        return TurnResult(
            response_id=self.response_id,
            model=self.model,
            text=self.text,
            reasoning=self.reasoning,
            thinking=self.thinking(),
            tool_calls=list(self.tool_calls),
            usage=self.usage,
            finish_reason=self.finish_reason,
            finish_raw=self.finish_raw,
            error=self.error,
        )


def answer_of(events: Iterable[ev.Event | None]) -> TurnAccumulator:
    """The answer a stored log holds: its events folded, afresh after each whole-turn retry
    (``None`` for an entry that made no event)."""
    acc = TurnAccumulator()
    for event in events:
        if type(event) is ev.Retry:
            acc = TurnAccumulator()
        elif event is not None:
            acc.apply(event)
    return acc
