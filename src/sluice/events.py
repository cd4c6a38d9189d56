"""The normalised event model: what every provider stream is folded into.

Provider adapters turn wire frames into these events; sessions, presenters and the
operations center consume only these. They are msgspec structs built without validation
(constructed in C, a fraction of a microsecond each): the hot path never constructs a
pydantic-style model per chunk.

Event kinds, in the order a well-formed turn produces them::

    Start
    (TextDelta | ReasoningDelta Signature? | ToolCallStart ToolCallDelta* ToolCallDone)*
    Usage*          -- a cumulative snapshot; the last one wins
    Finish | Error  -- exactly one terminal event

The session adds ``Status`` (progress before the answer) and ``Retry`` (a whole-turn retry
begins) to its own log; adapters never produce them. An agent run's log holds one such turn per
step, each between ``StepStart`` and ``StepEnd``, with the tools it called executed in between
(``ToolStart`` ``ToolProgress``* ``ToolEnd``, per call)::

    StepStart  <a turn, as above>  (ToolStart ToolProgress* ToolEnd)*  StepEnd
"""

from __future__ import annotations

from typing import Any

import msgspec

#: Normalised finish reasons (the provider's own word is kept in ``Finish.raw``).
FINISH_STOP = "stop"
FINISH_LENGTH = "length"
FINISH_TOOL_CALLS = "tool_calls"
FINISH_CONTENT_FILTER = "content_filter"
FINISH_PAUSE = "pause"
FINISH_REFUSAL = "refusal"

#: ToolCallDone.status values.
TOOL_OK = "ok"
TOOL_INVALID_JSON = "invalid_json"
TOOL_INCOMPLETE = "incomplete"


class _Event(msgspec.Struct, gc=False):
    """The base of every event: a struct built in C (a third of the instructions of a slotted
    dataclass's ``__init__``) that the cyclic collector does not track. Events refer to
    strings, numbers and JSON-like dicts only, never back to anything that holds them, so
    they cannot be part of a reference cycle; untracked, the live logs' deltas cost the young
    collections nothing, and each event 16 bytes less."""


class Start(_Event):
    """The upstream accepted the request and began a response."""

    response_id: str
    model: str


class TextDelta(_Event):
    text: str
    index: int = 0


class ReasoningDelta(_Event):
    """Thinking or a reasoning summary, streamed before (or between) visible text."""

    text: str
    index: int = 0


class Signature(_Event):
    """An opaque token the provider attaches to its reasoning (Anthropic's ``signature_delta``,
    Gemini's ``thoughtSignature``, a Responses reasoning item's ``encrypted_content``). A client
    must send it back, unchanged, to continue the turn; it is never shown. ``index`` is the
    block it belongs to.

    ``redacted``: the reasoning itself was withheld and this is all there is of it (an
    Anthropic ``redacted_thinking`` block, whose ``data`` is the token): a block of its own,
    which a continued turn must send back in its place."""

    signature: str
    index: int = 0
    redacted: bool = False


class ToolCallStart(_Event):
    """A tool call began. ``index`` is the provider's block or call index."""

    index: int
    call_id: str
    name: str


class ToolCallDelta(_Event):
    """A fragment of a tool call's JSON arguments; only the concatenation is JSON."""

    index: int
    fragment: str


class ToolCallDone(_Event):
    """A tool call ended; its arguments were parsed exactly once.

    ``status`` is ``ok`` (``arguments`` holds the parsed object), ``invalid_json`` (the block
    ended but the text is not a JSON object) or ``incomplete`` (the stream ended before the
    block did). ``raw`` always keeps the argument text as it arrived.
    """

    index: int
    call_id: str
    name: str
    raw: str
    arguments: dict[str, Any] | None
    status: str = TOOL_OK
    error: str | None = None
    parse_attempts: int = 1


class Usage(_Event):
    """A cumulative usage snapshot. ``final`` is true once the provider has sent its last one.

    ``input_tokens`` counts every input token, cached ones included (OpenAI's meaning);
    ``cache_read_tokens`` and ``cache_write_tokens`` are parts of it. Adapters of formats that
    count otherwise (Anthropic) convert.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    final: bool = False


class Error(_Event):
    """The upstream reported an error inside the stream (or the stream broke).

    ``type`` is a stable string (``overloaded``, ``rate_limited``, ``upstream_protocol``…)
    that reaches logs, metrics, records and the UI.
    """

    type: str
    message: str
    retryable: bool = False
    status: int | None = None
    detail: dict[str, Any] = msgspec.field(default_factory=dict)


class Finish(_Event):
    """The turn ended normally. ``reason`` is normalised; ``raw`` is the provider's own."""

    reason: str
    raw: str | None = None


class Status(_Event):
    """Progress while no answer text flows, made by the session (never by an adapter).

    ``phase`` is ``waiting`` (nothing from the provider yet), ``thinking`` (reasoning is
    streaming) or ``tool`` (``detail`` names the tool being called).
    """

    phase: str
    detail: str | None = None


class Retry(_Event):
    """A new attempt of the whole turn begins; the answer restarts after this event."""

    attempt: int
    reason: str
    delay: float = 0.0


class StepStart(_Event):
    """An agent run's step begins: one model turn, then the tools it called."""

    step: int


class StepEnd(_Event):
    """A step ended: its model turn's finish reason, its usage (``Usage``'s fields, or None when
    the provider told none) and its length in seconds, tools included."""

    step: int
    finish_reason: str | None
    usage: dict[str, Any] | None
    duration: float


class ToolStart(_Event):
    """The gateway calls a tool the model asked for. ``name`` is the name the model used,
    ``tool`` where it comes from (``server.tool``, or a built-in tool's name)."""

    call_id: str
    name: str
    tool: str
    arguments: dict[str, Any]


class ToolProgress(_Event):
    """A running tool's progress (MCP ``notifications/progress``)."""

    call_id: str
    progress: float
    total: float | None = None
    message: str | None = None


class ToolEnd(_Event):
    """A tool call ended. ``result`` is the text the model is given (bounded); ``error`` the
    stable type of a call that produced no result (``tool_timeout``, ``tool_unavailable``,
    ``cancelled``…), whose ``result`` then says what the model is told; ``is_error`` is set for
    both and for a tool that ran and failed."""

    call_id: str
    name: str
    duration: float
    result: str
    is_error: bool = False
    error: str | None = None


Event = (
    Start
    | TextDelta
    | ReasoningDelta
    | Signature
    | ToolCallStart
    | ToolCallDelta
    | ToolCallDone
    | Usage
    | Error
    | Finish
    | Status
    | Retry
    | StepStart
    | StepEnd
    | ToolStart
    | ToolProgress
    | ToolEnd
)

TERMINAL = (Finish, Error)


def payload(event: Event) -> tuple[str, dict[str, Any]]:
    """The event's type name and JSON-ready fields, as the native API and the store carry them."""
    match event:
        case TextDelta(text=text):
            return "text", {"text": text}
        case ReasoningDelta(text=text):
            return "reasoning", {"text": text}
        case Signature(signature=signature, index=index, redacted=redacted):
            return "signature", {"signature": signature, "index": index, "redacted": redacted}
        case ToolCallDelta(index=index, fragment=fragment):
            return "tool_call.delta", {"index": index, "fragment": fragment}
        case ToolCallStart(index=index, call_id=call_id, name=name):
            return "tool_call.start", {"index": index, "id": call_id, "name": name}
        case ToolCallDone():
            return "tool_call.done", {
                "index": event.index,
                "id": event.call_id,
                "name": event.name,
                "arguments": event.arguments,
                "raw_arguments": event.raw,
                "status": event.status,
                "error": event.error,
            }
        case Usage():
            return "usage", {
                "input_tokens": event.input_tokens,
                "output_tokens": event.output_tokens,
                "cache_read_tokens": event.cache_read_tokens,
                "cache_write_tokens": event.cache_write_tokens,
                "reasoning_tokens": event.reasoning_tokens,
                "final": event.final,
            }
        case Start(response_id=rid, model=model):
            return "start", {"response_id": rid, "model": model}
        case Finish(reason=reason, raw=raw):
            return "finish", {"reason": reason, "raw": raw}
        case Status(phase=phase, detail=detail):
            return "status", {"phase": phase, "detail": detail}
        case Retry(attempt=attempt, reason=reason, delay=delay):
            return "retry", {"attempt": attempt, "reason": reason, "delay": delay}
        case Error():
            return "error", {
                "type": event.type,
                "message": event.message,
                "retryable": event.retryable,
                "status": event.status,
            }
        case StepStart(step=step):
            return "step.start", {"step": step}
        case StepEnd():
            return "step.end", {
                "step": event.step,
                "finish_reason": event.finish_reason,
                "usage": event.usage,
                "duration": event.duration,
            }
        case ToolStart():
            return "tool.start", {
                "id": event.call_id,
                "name": event.name,
                "tool": event.tool,
                "arguments": event.arguments,
            }
        case ToolProgress():
            return "tool.progress", {
                "id": event.call_id,
                "progress": event.progress,
                "total": event.total,
                "message": event.message,
            }
        case ToolEnd():
            return "tool.end", {
                "id": event.call_id,
                "name": event.name,
                "duration": event.duration,
                "result": event.result,
                "is_error": event.is_error,
                "error": event.error,
            }
    raise TypeError(f"not an event: {event!r}")


def from_payload(kind: str, data: dict[str, Any]) -> Event | None:
    """The event that ``payload`` gave ``kind`` and ``data`` for (a stored or shared log read
    back); None for a type or fields it did not write. Never raises."""
    try:
        match kind:
            case "text":
                return TextDelta(data["text"])
            case "reasoning":
                return ReasoningDelta(data["text"])
            case "signature":
                return Signature(data["signature"], data["index"], data.get("redacted", False))
            case "tool_call.delta":
                return ToolCallDelta(data["index"], data["fragment"])
            case "tool_call.start":
                return ToolCallStart(data["index"], data["id"], data["name"])
            case "tool_call.done":
                return ToolCallDone(
                    data["index"],
                    data["id"],
                    data["name"],
                    data["raw_arguments"],
                    data["arguments"],
                    data["status"],
                    data["error"],
                )
            case "usage":
                return Usage(**data)
            case "start":
                return Start(data["response_id"], data["model"])
            case "finish":
                return Finish(data["reason"], data["raw"])
            case "status":
                return Status(data["phase"], data["detail"])
            case "retry":
                return Retry(data["attempt"], data["reason"], data["delay"])
            case "error":
                return Error(data["type"], data["message"], data["retryable"], data["status"])
            case "step.start":
                return StepStart(data["step"])
            case "step.end":
                return StepEnd(data["step"], data["finish_reason"], data["usage"], data["duration"])
            case "tool.start":
                return ToolStart(data["id"], data["name"], data["tool"], data["arguments"])
            case "tool.progress":
                return ToolProgress(data["id"], data["progress"], data["total"], data["message"])
            case "tool.end":
                return ToolEnd(
                    data["id"],
                    data["name"],
                    data["duration"],
                    data["result"],
                    data["is_error"],
                    data["error"],
                )
    except (KeyError, TypeError):
        return None
    return None
