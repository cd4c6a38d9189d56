"""Google Gemini streaming: the adapter (chunks -> events) and the encoder (events -> chunks).

Wire facts (``POST …/models/{model}:streamGenerateContent?alt=sse``, and the recorded streams
in ``tests/fixtures/recorded/gemini-*.sse``): ``data:`` frames only (CRLF line ends, no
``event:`` line, no ``[DONE]``: the stream ends with the body), each a whole
``GenerateContentResponse``: ``candidates[0].content.parts[]``, ``usageMetadata`` (on every
chunk, cumulative: the last one holds), ``modelVersion``, ``responseId``. A part is one of
``text``, ``text`` with ``thought: true`` (a thought summary, when the request set
``thinkingConfig.includeThoughts``) or ``functionCall {name, args, id?}`` (arguments whole,
an object, never fragments); any part may carry a ``thoughtSignature`` beside its content,
an empty text part included. ``candidates[0].finishReason`` comes on the last chunk; there is
no finish reason of its own for tool calls (``STOP``). An error inside a stream that began
with HTTP 200 is a frame ``{"error": {"code", "message", "status"}}``, the shape of Google's
error bodies.

Scope: only the candidate of ``index`` 0 (or without an index: 2.0 models leave it out)
produces events; parts other than text and function calls (``inlineData``,
``executableCode``…) are ignored.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from sluice.errors import BadRequest, UnknownEndpoint
from sluice.events import (
    FINISH_CONTENT_FILTER,
    FINISH_LENGTH,
    FINISH_PAUSE,
    FINISH_REFUSAL,
    FINISH_STOP,
    FINISH_TOOL_CALLS,
    TOOL_INVALID_JSON,
    TOOL_OK,
    Error,
    Event,
    Finish,
    ReasoningDelta,
    Signature,
    Start,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallStart,
    Usage,
)
from sluice.turn import (
    Message,
    Part,
    ReasoningSpec,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    TurnRequest,
    TurnResult,
)

from ._fold import WireFold, count, sub, text, truncated
from ._toolargs import _JSON_KINDS
from .base import ProviderKind, WireFormat

__all__ = [
    "GEMINI",
    "GeminiStreamAdapter",
    "GeminiStreamEncoder",
    "build_gemini_request",
    "gemini_error_body",
    "google_error",
    "parse_gemini_request",
    "render_gemini_response",
    "usage_metadata",
]

#: finishReason -> normalised reason; any other word finishes as ``stop`` (raw kept).
#: ``STOP`` is ``tool_calls`` when the turn made a call (Gemini has no word of its own).
_FINISH = {
    "STOP": FINISH_STOP,
    "MAX_TOKENS": FINISH_LENGTH,
    "SAFETY": FINISH_CONTENT_FILTER,
    "RECITATION": FINISH_CONTENT_FILTER,
    "BLOCKLIST": FINISH_CONTENT_FILTER,
    "PROHIBITED_CONTENT": FINISH_CONTENT_FILTER,
    "SPII": FINISH_CONTENT_FILTER,
    "IMAGE_SAFETY": FINISH_CONTENT_FILTER,
    "IMAGE_PROHIBITED_CONTENT": FINISH_CONTENT_FILTER,
}

#: finishReasons that say the model's tool call could not be used: the turn has no answer
#: to give, so it ends in an error (retryable: the next sample may well be fine).
_FAILED_CALLS = frozenset(
    {"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"}
)

#: Google's error ``status`` (or HTTP code) -> (Error.type, retryable).
_ERRORS: Mapping[str | int, tuple[str, bool]] = {
    "RESOURCE_EXHAUSTED": ("rate_limited", True),
    429: ("rate_limited", True),
    "UNAVAILABLE": ("overloaded", True),
    503: ("overloaded", True),
    "DEADLINE_EXCEEDED": ("timeout", True),
    504: ("timeout", True),
    "INTERNAL": ("upstream_error", True),
    500: ("upstream_error", True),
    "UNAUTHENTICATED": ("upstream_auth", False),
    401: ("upstream_auth", False),
    "PERMISSION_DENIED": ("upstream_auth", False),
    403: ("upstream_auth", False),
    "NOT_FOUND": ("unknown_model", False),
    404: ("unknown_model", False),
}


def google_error(error: Any) -> Error:
    """A Google error object (``{code, message, status}``) as a typed :class:`Error`."""
    if not isinstance(error, dict):
        message = error if isinstance(error, str) else ""
        return Error(type="upstream_error", message=message or "the upstream reported an error")
    code = error.get("code")
    status = code if type(code) is int and 100 <= code < 600 else None
    word = text(error, "status")
    kind, retryable = _ERRORS.get(word) or _ERRORS.get(status or 0) or ("upstream_error", False)
    if status is not None and status >= 500 and kind == "upstream_error":
        retryable = True
    return Error(
        type=kind,
        message=text(error, "message") or word or "the upstream reported an error",
        retryable=retryable,
        status=status,
        detail=dict(error),
    )


def _usage(metadata: Mapping[str, Any], final: bool) -> Usage:
    """``usageMetadata`` in the event model's meaning. Gemini counts thoughts apart from the
    answer (``candidatesTokenCount`` leaves them out, ``thoughtsTokenCount`` holds them);
    the event model's ``output_tokens`` includes reasoning (OpenAI's meaning), so it is their
    sum, and ``reasoning_tokens`` the thoughts. ``promptTokenCount`` already includes the
    cached tokens (``cachedContentTokenCount``, a part of it); the prompt of a built-in tool
    (``toolUsePromptTokenCount``) is input too."""
    thoughts = count(metadata, "thoughtsTokenCount")
    return Usage(
        input_tokens=count(metadata, "promptTokenCount")
        + count(metadata, "toolUsePromptTokenCount"),
        output_tokens=count(metadata, "candidatesTokenCount") + thoughts,
        cache_read_tokens=count(metadata, "cachedContentTokenCount"),
        reasoning_tokens=thoughts,
        final=final,
    )


def _candidate(frame: Mapping[str, Any]) -> Mapping[str, Any] | None:
    candidates = frame.get("candidates")
    if isinstance(candidates, list):
        for candidate in candidates:
            if isinstance(candidate, dict) and candidate.get("index", 0) == 0:
                return candidate
    return None


class GeminiStreamAdapter(WireFold):
    """A fold from Gemini ``GenerateContentResponse`` chunks to normalised events.

    The end of a turn: Gemini sends no terminator, so the clean end is the chunk whose
    candidate carries a ``finishReason`` (the last one, with the final ``usageMetadata``); it
    makes the ``Finish`` at once, and anything after it is ignored. A body that ends without
    one was truncated. A response whose prompt was blocked (``promptFeedback.blockReason``,
    no candidate) finishes ``content_filter``.

    A ``functionCall`` part is a whole call: ``ToolCallStart``, one ``ToolCallDelta`` with
    the arguments' JSON text and ``ToolCallDone``, together; tool calls are numbered 0, 1,
    2… in the order they come. A call without an ``id`` (the Gemini API gives none) gets one
    made from the response id, its number and its content, so that replaying a stream gives
    the same ids. A ``thoughtSignature`` becomes a ``Signature`` before the part it rides on
    (it closes the thinking that came before), or after a thought part's text.

    Usage: each chunk's ``usageMetadata`` gives a snapshot when its counts differ from the
    last one given (``final`` on the finishing chunk).

    No ``quick`` shortcut: every chunk carries ``usageMetadata``, so no piece is one text
    delta and nothing else; every piece takes the general path (one ``orjson.loads``).
    """

    __slots__ = ("_last_counts", "_made_calls", "_next_call", "_response_id")

    FORMAT = "Gemini"

    def __init__(self) -> None:
        super().__init__()
        self._next_call = 0
        self._made_calls = False
        self._response_id = ""
        self._last_counts: tuple[int, ...] = ()

    def _frame(self, event: str, frame: dict[str, Any]) -> list[Event]:
        error = frame.get("error")
        if error:
            return self._terminate([], google_error(error))
        out: list[Event] = []
        if not self._started:
            self._started = True
            self._response_id = text(frame, "responseId")
            out.append(Start(response_id=self._response_id, model=text(frame, "modelVersion")))
        candidate = _candidate(frame)
        reason = ""
        if candidate is not None:
            parts = sub(candidate, "content").get("parts")
            if isinstance(parts, list):
                for part in parts:
                    if isinstance(part, dict):
                        self._part(part, out)
            reason = text(candidate, "finishReason")
            if reason == "FINISH_REASON_UNSPECIFIED":
                reason = ""
        elif not frame.get("candidates"):
            reason = text(sub(frame, "promptFeedback"), "blockReason")
        metadata = frame.get("usageMetadata")
        if isinstance(metadata, dict):
            usage = _usage(metadata, final=bool(reason))
            counts = (
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read_tokens,
                usage.reasoning_tokens,
            )
            if reason or counts != self._last_counts:
                self._last_counts = counts
                out.append(usage)
        if reason:
            return self._terminate(out, self._finish(reason, candidate))
        return out

    def _part(self, part: dict[str, Any], out: list[Event]) -> None:
        signature = part.get("thoughtSignature")
        if not (signature and isinstance(signature, str)):
            signature = None
        call = part.get("functionCall")
        if isinstance(call, dict):
            if signature is not None:
                out.append(Signature(signature))
            self._call(call, out)
            return
        chunk = text(part, "text")
        if part.get("thought") is True:
            if chunk:
                out.append(ReasoningDelta(chunk))
            if signature is not None:
                out.append(Signature(signature))
            return
        if signature is not None:
            out.append(Signature(signature))
        if chunk:
            out.append(TextDelta(chunk))

    def _call(self, call: Mapping[str, Any], out: list[Event]) -> None:
        index = self._next_call
        self._next_call += 1
        self._made_calls = True
        name = text(call, "name")
        args = call.get("args")
        if args is None:
            args = {}
        raw = orjson.dumps(args).decode()
        call_id = text(call, "id") or self._call_id(index, name, raw)
        out.append(ToolCallStart(index=index, call_id=call_id, name=name))
        out.append(ToolCallDelta(index=index, fragment=raw))
        if isinstance(args, dict):
            out.append(ToolCallDone(index, call_id, name, raw, args, TOOL_OK))
        else:
            kind = _JSON_KINDS.get(type(args), "value")
            error = f"arguments are a JSON {kind}, not an object"
            out.append(ToolCallDone(index, call_id, name, raw, None, TOOL_INVALID_JSON, error))

    def _call_id(self, index: int, name: str, raw: str) -> str:
        seed = f"{self._response_id}\0{index}\0{name}\0{raw}".encode()
        return "call_" + hashlib.blake2b(seed, digest_size=12).hexdigest()

    def _finish(self, reason: str, candidate: Mapping[str, Any] | None) -> Event:
        if reason in _FAILED_CALLS:
            message = (candidate and text(candidate, "finishMessage")) or (
                f"the model's tool call could not be used ({reason})"
            )
            return Error(
                type="upstream_tool_call",
                message=message,
                retryable=True,
                detail={"reason": reason},
            )
        normalised = _FINISH.get(reason, FINISH_STOP)
        if normalised == FINISH_STOP and self._made_calls and reason == "STOP":
            normalised = FINISH_TOOL_CALLS
        return Finish(reason=normalised, raw=reason)

    def _end(self) -> list[Event]:
        return self._terminate([], truncated("the stream ended without a finishReason"))


# ---------------------------------------------------------------------------------------------
# The encoder: events -> Gemini chunks, for a Gemini client


#: normalised finish reason -> the finishReason a Gemini client understands.
_FINISH_OUT = {
    FINISH_STOP: "STOP",
    FINISH_TOOL_CALLS: "STOP",
    FINISH_LENGTH: "MAX_TOKENS",
    FINISH_CONTENT_FILTER: "SAFETY",
    FINISH_REFUSAL: "SAFETY",
    FINISH_PAUSE: "STOP",
}

#: Error.type -> (HTTP code, Google status) in an error frame; anything else is a 500.
ERROR_STATUS: Mapping[str, tuple[int, str]] = {
    "rate_limited": (429, "RESOURCE_EXHAUSTED"),
    "overloaded": (503, "UNAVAILABLE"),
    "timeout": (504, "DEADLINE_EXCEEDED"),
    "invalid_request": (400, "INVALID_ARGUMENT"),
    "unknown_model": (404, "NOT_FOUND"),
    "authentication": (401, "UNAUTHENTICATED"),
    "upstream_auth": (401, "UNAUTHENTICATED"),
    "permission": (403, "PERMISSION_DENIED"),
    "cancelled": (499, "CANCELLED"),
}

#: HTTP status -> Google's status word, for error bodies.
STATUS_WORDS: Mapping[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}


def error_object(status: int, message: str) -> dict[str, Any]:
    """Google's error object for an HTTP status: ``{code, message, status}``."""
    word = STATUS_WORDS.get(status) or ("INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    return {"code": status, "message": message, "status": word}


def usage_metadata(usage: Usage) -> dict[str, Any]:
    """A usage snapshot as Gemini's ``usageMetadata``: the answer's count without the
    thoughts (``candidatesTokenCount``), the thoughts apart, the total of all three."""
    metadata: dict[str, Any] = {
        "promptTokenCount": usage.input_tokens,
        "candidatesTokenCount": max(0, usage.output_tokens - usage.reasoning_tokens),
        "totalTokenCount": usage.input_tokens + usage.output_tokens,
    }
    if usage.reasoning_tokens:
        metadata["thoughtsTokenCount"] = usage.reasoning_tokens
    if usage.cache_read_tokens:
        metadata["cachedContentTokenCount"] = usage.cache_read_tokens
    return metadata


def _base64(value: str) -> bool:
    """Whether ``value`` is base64, as a ``thoughtSignature`` must be (it is ``bytes`` in
    Google's schema: the SDK refuses a chunk whose signature does not decode)."""
    try:
        binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        return False
    return True


#: what the ids Sluice gives a Gemini client's answers start with (Google's own are opaque)
ID_PREFIX = "gemini-"

_TEXT_HEAD = b'data: {"candidates":[{"content":{"parts":[{"text":'
_TEXT_TAIL = b'}],"role":"model"},"index":0}]'


class GeminiStreamEncoder:
    """Renders normalised events as Gemini chunks (``data: {...}`` frames; LF line ends, as
    every encoder here writes them: Google writes CRLF, and SSE readers take both).

    Each text or thought delta is one chunk with one part; a tool call is one chunk with a
    whole ``functionCall`` part (its ``id`` the call's id) once its ``ToolCallDone`` came,
    fragments being no part of Gemini's format. A call whose arguments did not parse cannot
    be said as a ``functionCall``: it is left out, and the turn's ``finishReason`` is
    ``MALFORMED_FUNCTION_CALL``. A ``Signature`` rides on the next part written, as Gemini
    sends it; at the finish, on an empty text part. Every chunk carries the latest usage (once
    one is known), ``modelVersion`` and ``responseId``; the last one carries the
    ``finishReason``. An ``Error`` is a ``{"error": {code, message, status}}`` frame, after
    which nothing is written. ``close()`` writes nothing: the stream ends with the body.
    A signature that is not base64 (Google's schema makes it bytes) is left out: the SDK
    would refuse the chunk that carried it.
    """

    __slots__ = ("_closed", "_malformed", "_signature", "_tail", "_usage")

    def __init__(self, response_id: str, model: str) -> None:
        if not response_id.startswith(ID_PREFIX):  # the gateway's id, in this format's style
            response_id = ID_PREFIX + response_id
        self._tail = b',"modelVersion":' + orjson.dumps(model) + b',"responseId":'
        self._tail += orjson.dumps(response_id) + b"}\n\n"
        self._usage = b""  # ``,"usageMetadata":{…}`` once known
        self._signature: str | None = None
        self._malformed = False
        self._closed = False

    def encode(self, event: Event) -> bytes:
        if self._closed:
            return b""
        match event:
            case TextDelta(text=chunk):
                if not chunk:
                    return b""
                if self._signature is None:  # the usual chunk: no dict to build
                    return _TEXT_HEAD + orjson.dumps(chunk) + _TEXT_TAIL + self._usage + self._tail
                return self._chunk({"text": chunk})
            case ReasoningDelta(text=chunk):
                return self._chunk({"text": chunk, "thought": True}) if chunk else b""
            case Signature(signature=signature):
                if _base64(signature):
                    self._signature = signature
                return b""
            case ToolCallDone():
                return self._call(event)
            case Usage():
                self._usage = b',"usageMetadata":' + orjson.dumps(usage_metadata(event))
                return b""
            case Finish(reason=reason):
                self._closed = True
                word = "MALFORMED_FUNCTION_CALL" if self._malformed else _FINISH_OUT.get(reason)
                part: dict[str, Any] = {"text": ""}
                candidate = self._candidate(part)
                candidate["finishReason"] = word or "STOP"
                return self._frame(candidate)
            case Error():
                self._closed = True
                code, word = ERROR_STATUS.get(event.type, (500, "INTERNAL"))
                error = {"code": code, "message": event.message, "status": word}
                return b"data: " + orjson.dumps({"error": error}) + b"\n\n"
        return b""  # Start, ToolCallStart, ToolCallDelta, Status, Retry

    def close(self) -> bytes:
        self._closed = True
        return b""

    def _call(self, done: ToolCallDone) -> bytes:
        if done.status != TOOL_OK or done.arguments is None:
            self._malformed = True
            return b""
        call = {"name": done.name, "args": done.arguments}
        if done.call_id:
            call["id"] = done.call_id
        return self._chunk({"functionCall": call})

    def _candidate(self, part: dict[str, Any]) -> dict[str, Any]:
        if self._signature is not None:
            part["thoughtSignature"] = self._signature
            self._signature = None
        return {"content": {"parts": [part], "role": "model"}, "index": 0}

    def _chunk(self, part: dict[str, Any]) -> bytes:
        return self._frame(self._candidate(part))

    def _frame(self, candidate: dict[str, Any]) -> bytes:
        head = b'data: {"candidates":[' + orjson.dumps(candidate) + b"]"
        return head + self._usage + self._tail


# ---------------------------------------------------------------------------------------------
# Requests, whole responses and error bodies


#: The thoughtSignature Google documents for a function call in a history that a Gemini
#: model did not write (or whose signature was lost on the way): Gemini 3 models refuse a
#: model turn's first function call without a signature.
SKIP_SIGNATURE = "skip_thought_signature_validator"

#: functionCallingConfig.mode -> TurnRequest.tool_choice, and back.
_MODES = {"AUTO": "auto", "ANY": "required", "NONE": "none", "VALIDATED": "auto"}
_MODES_OUT = {"auto": "AUTO", "required": "ANY", "none": "NONE"}

#: thinkingConfig.thinkingLevel words (the effort levels of ``ReasoningSpec``).
_LEVELS = ("minimal", "low", "medium", "high")


def _get(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    """A field by its JSON name or its proto name: Google's endpoints take both
    (``systemInstruction`` / ``system_instruction``); the SDK writes the first."""
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _object(obj: Mapping[str, Any], camel: str, snake: str, where: str) -> Mapping[str, Any]:
    value = _get(obj, camel, snake)
    if value is None:
        return EMPTY_OBJECT
    if not isinstance(value, dict):
        raise BadRequest(f"'{where}' must be an object")
    return value


EMPTY_OBJECT: Mapping[str, Any] = {}


def parse_gemini_request(body: dict[str, Any], model: str, stream: bool) -> TurnRequest:
    """A ``generateContent`` / ``streamGenerateContent`` body (the model and the streaming
    come from the URL) as a ``TurnRequest``. Parts Sluice cannot translate (``inlineData``,
    ``fileData``…) are refused, as the other formats refuse images; thought parts of the
    history are left out (no other format reads them). Built-in tools (``googleSearch``,
    ``codeExecution``…) reach a Gemini upstream in the body relayed as it is, and no other."""
    contents = _get(body, "contents", "contents")
    if contents is None:
        raise BadRequest("'contents' is required")
    if not isinstance(contents, list):
        raise BadRequest("'contents' must be a list of contents")
    if not contents:
        raise BadRequest("'contents' must not be empty")
    messages: list[Message] = []
    pending: list[ToolCallPart] = []  # the last model turn's calls, answered in order
    for i, content in enumerate(contents):
        where = f"contents[{i}]"
        if not isinstance(content, dict):
            raise BadRequest(f"{where} must be an object")
        role = content.get("role") or "user"
        if role not in ("user", "model", "function", "tool"):
            raise BadRequest(f"{where}: 'role' must be 'user' or 'model'")
        parts = _parts(content, where)
        out: list[Part] = []
        if role == "model":
            pending = []
        for j, part in enumerate(parts):
            parsed = _part_of(part, f"{where}.parts[{j}]", i, j, pending)
            if parsed is None:
                continue
            if isinstance(parsed, ToolCallPart):
                if role != "model":
                    raise BadRequest(f"{where}.parts[{j}]: a functionCall belongs to a model turn")
                pending.append(parsed)
            out.append(parsed)
        _append(messages, "assistant" if role == "model" else "user", out)
    if not messages:
        raise BadRequest("'contents' holds no part Sluice can relay")
    system = _get(body, "systemInstruction", "system_instruction")
    tools, choice = _tools(body)
    config = _object(body, "generationConfig", "generation_config", "generationConfig")
    stop = _get(config, "stopSequences", "stop_sequences")
    return TurnRequest(
        model=model,
        messages=messages,
        system=_system_text(system) if system is not None else None,
        max_tokens=_positive(config, "maxOutputTokens", "max_output_tokens"),
        temperature=_number(config, "temperature", "temperature"),
        top_p=_number(config, "topP", "top_p"),
        stop=_stop_list(stop, "generationConfig.stopSequences"),
        tools=tools,
        tool_choice=choice,
        stream=stream,
        include_usage=True,
        reasoning=_thinking(config),
    )


def _parts(content: Mapping[str, Any], where: str) -> list[Any]:
    parts = content.get("parts")
    if parts is None:
        return []
    if not isinstance(parts, list):
        raise BadRequest(f"{where}: 'parts' must be a list of parts")
    return parts


def _part_of(part: Any, where: str, i: int, j: int, pending: list[ToolCallPart]) -> Part | None:
    if not isinstance(part, dict):
        raise BadRequest(f"{where} must be an object")
    if part.get("thought") is True:
        return None  # a thought summary: for the reader, not the model
    value = part.get("text")
    if value is not None:
        if not isinstance(value, str):
            raise BadRequest(f"{where}: 'text' must be a string")
        return TextPart(value) if value else None
    call = _get(part, "functionCall", "function_call")
    if call is not None:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise BadRequest(f"{where}: 'functionCall' needs a 'name'")
        args = call.get("args")
        if args is not None and not isinstance(args, dict):
            raise BadRequest(f"{where}: 'functionCall.args' must be an object")
        call_id = call.get("id")
        return ToolCallPart(
            call_id if isinstance(call_id, str) and call_id else f"call_{i}_{j}",
            call["name"],
            args or {},
        )
    response = _get(part, "functionResponse", "function_response")
    if response is not None:
        if not isinstance(response, dict) or not isinstance(response.get("name"), str):
            raise BadRequest(f"{where}: 'functionResponse' needs a 'name'")
        return _tool_result(response, pending, f"call_{i}_{j}")
    kinds = [key for key in part if key not in ("thoughtSignature", "thought_signature")]
    kind = kinds[0] if kinds else "empty"
    if kind == "empty":
        return None  # a part that holds only a signature (or nothing)
    raise BadRequest(
        f"{where}: a part of kind {kind!r} cannot be translated between provider formats; "
        "send text, functionCall and functionResponse parts"
    )


def _tool_result(
    response: Mapping[str, Any], pending: list[ToolCallPart], fallback: str
) -> ToolResultPart:
    """A ``functionResponse``, tied to its call: by ``id`` when it has one, else to the
    earliest unanswered call of the same name (Gemini pairs them by order)."""
    name = response["name"]
    call_id = response.get("id")
    if isinstance(call_id, str) and call_id:
        for index, call in enumerate(pending):
            if call.call_id == call_id:
                del pending[index]
                break
    else:
        call_id = fallback
        for index, call in enumerate(pending):
            if call.name == name:
                call_id = call.call_id
                del pending[index]
                break
    value = response.get("response")
    if isinstance(value, dict) and len(value) == 1:
        # ``{"output": text}`` or ``{"error": text}``, as Google asks results to be given
        ((key, text_value),) = value.items()
        if key in ("output", "error") and isinstance(text_value, str):
            return ToolResultPart(call_id, text_value, key == "error")
    error = isinstance(value, dict) and "error" in value and "output" not in value
    return ToolResultPart(call_id, orjson.dumps(value if value is not None else {}).decode(), error)


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    if not isinstance(system, dict):
        raise BadRequest("'systemInstruction' must be a content object")
    pieces = []
    for j, part in enumerate(_parts(system, "systemInstruction")):
        value = part.get("text") if isinstance(part, dict) else None
        if not isinstance(value, str):
            raise BadRequest(f"systemInstruction.parts[{j}] must be a text part")
        pieces.append(value)
    return "\n".join(pieces)


def _tools(body: Mapping[str, Any]) -> tuple[list[ToolSpec], str | None]:
    raw = body.get("tools")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise BadRequest("'tools' must be a list")
    specs: list[ToolSpec] = []
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict):
            raise BadRequest(f"tools[{i}] must be an object")
        declarations = _get(tool, "functionDeclarations", "function_declarations")
        if declarations is None:
            continue  # a built-in tool: relayed to a Gemini upstream only
        if not isinstance(declarations, list):
            raise BadRequest(f"tools[{i}].functionDeclarations must be a list")
        for j, declaration in enumerate(declarations):
            if not isinstance(declaration, dict) or not isinstance(declaration.get("name"), str):
                raise BadRequest(f"tools[{i}].functionDeclarations[{j}] needs a 'name'")
            schema = _get(declaration, "parametersJsonSchema", "parameters_json_schema")
            if schema is None:
                schema = declaration.get("parameters")
            description = declaration.get("description")
            specs.append(
                ToolSpec(
                    declaration["name"],
                    description if isinstance(description, str) else None,
                    schema if isinstance(schema, dict) else {"type": "object"},
                )
            )
    tool_config = _object(body, "toolConfig", "tool_config", "toolConfig")
    calling = _object(
        tool_config, "functionCallingConfig", "function_calling_config", "functionCallingConfig"
    )
    mode = calling.get("mode")
    choice = _MODES.get(mode.upper()) if isinstance(mode, str) else None
    allowed = _get(calling, "allowedFunctionNames", "allowed_function_names")
    if (
        choice == "required"
        and isinstance(allowed, list)
        and len(allowed) == 1
        and isinstance(allowed[0], str)
    ):
        choice = allowed[0]
    return specs, choice


def _thinking(config: Mapping[str, Any]) -> ReasoningSpec | None:
    thinking = _object(
        config, "thinkingConfig", "thinking_config", "generationConfig.thinkingConfig"
    )
    if not thinking:
        return None
    budget = _get(thinking, "thinkingBudget", "thinking_budget")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)):
        raise BadRequest("'thinkingConfig.thinkingBudget' must be an integer")
    level = _get(thinking, "thinkingLevel", "thinking_level")
    effort = level.lower() if isinstance(level, str) and level.lower() in _LEVELS else None
    include = _get(thinking, "includeThoughts", "include_thoughts") is True
    return ReasoningSpec(
        budget_tokens=budget if budget is not None and budget >= 0 else None,
        effort=effort,
        include=include,
    )


def _positive(config: Mapping[str, Any], camel: str, snake: str) -> int | None:
    value = _get(config, camel, snake)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(f"'generationConfig.{camel}' must be a positive integer")
    return value


def _number(config: Mapping[str, Any], camel: str, snake: str) -> float | None:
    value = _get(config, camel, snake)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"'generationConfig.{camel}' must be a number")
    return float(value)


def _stop_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise BadRequest(f"'{where}' must be a list of strings")


def _append(messages: list[Message], role: str, parts: list[Part]) -> None:
    if not parts:
        return
    if messages and messages[-1].role == role:
        messages[-1].parts.extend(parts)
    else:
        messages.append(Message(role, parts))


def build_gemini_request(turn: TurnRequest, model: str) -> dict[str, Any]:
    """A ``streamGenerateContent`` body for ``turn`` (the model goes in the URL). Tool
    results name their call's function, found in the history by the call's id. A model
    turn's first function call carries Google's documented stand-in signature, since its
    own (if it had one) did not come through another format."""
    names = {
        part.call_id: part.name
        for message in turn.messages
        for part in message.parts
        if isinstance(part, ToolCallPart)
    }
    contents: list[dict[str, Any]] = []
    for message in turn.messages:
        parts: list[dict[str, Any]] = []
        signed = False
        for part in message.parts:
            if isinstance(part, TextPart):
                if part.text:
                    parts.append({"text": part.text})
            elif isinstance(part, ToolCallPart):
                call = {"name": part.name, "args": part.arguments, "id": part.call_id}
                entry: dict[str, Any] = {"functionCall": call}
                if not signed:
                    entry["thoughtSignature"] = SKIP_SIGNATURE
                    signed = True
                parts.append(entry)
            elif isinstance(part, ThinkingPart):
                continue  # another provider's reasoning: only it can check the signature
            else:
                value = _result_value(part)
                name = names.get(part.call_id, part.call_id)
                response = {"name": name, "response": value, "id": part.call_id}
                parts.append({"functionResponse": response})
        if parts:
            role = "model" if message.role == "assistant" else "user"
            contents.append({"role": role, "parts": parts})
    body: dict[str, Any] = {"contents": contents}
    if turn.system:
        body["systemInstruction"] = {"parts": [{"text": turn.system}]}
    if turn.tools:
        body["tools"] = [
            {
                "functionDeclarations": [
                    _declaration(tool.name, tool.description, tool.parameters)
                    for tool in turn.tools
                ]
            }
        ]
        choice = turn.tool_choice
        mode: dict[str, Any] | None = None
        if choice in _MODES_OUT:
            mode = {"mode": _MODES_OUT[choice]}
        elif choice:
            mode = {"mode": "ANY", "allowedFunctionNames": [choice]}
        if mode is not None:
            body["toolConfig"] = {"functionCallingConfig": mode}
    config: dict[str, Any] = {}
    if turn.max_tokens is not None:
        config["maxOutputTokens"] = turn.max_tokens
    if turn.temperature is not None:
        config["temperature"] = turn.temperature
    if turn.top_p is not None:
        config["topP"] = turn.top_p
    if turn.stop:
        config["stopSequences"] = turn.stop
    reasoning = turn.reasoning
    if reasoning is not None:
        thinking: dict[str, Any] = {"includeThoughts": reasoning.include}
        if reasoning.budget_tokens is not None:
            thinking["thinkingBudget"] = reasoning.budget_tokens
        elif reasoning.effort is not None:
            thinking["thinkingLevel"] = reasoning.effort.upper()
        config["thinkingConfig"] = thinking
    if config:
        body["generationConfig"] = config
    return body


def _declaration(name: str, description: str | None, parameters: dict[str, Any]) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": name, "parametersJsonSchema": parameters}
    if description:
        declaration["description"] = description
    return declaration


def _result_value(part: ToolResultPart) -> dict[str, Any]:
    """A tool result as ``functionResponse.response`` (an object): the content itself when it
    is a JSON object, else under ``output`` (``error`` for a failed call), as Google asks."""
    if not part.is_error and part.content.startswith("{"):
        try:
            value = orjson.loads(part.content)
        except orjson.JSONDecodeError:
            pass
        else:
            if isinstance(value, dict):
                return value
    return {"error" if part.is_error else "output": part.content}


def render_gemini_response(result: TurnResult, model: str) -> dict[str, Any]:
    """The ``generateContent`` body of a finished turn: thoughts (when there were any), text,
    then one ``functionCall`` part per call that parsed; the turn's first signature on the
    first call, else on the text."""
    parts: list[dict[str, Any]] = []
    if result.reasoning:
        parts.append({"text": result.reasoning, "thought": True})
    if result.text:
        parts.append({"text": result.text})
    answer = len(parts) - 1 if result.text else None
    malformed = False
    first_call = None
    for call in result.tool_calls:
        if call.arguments is None:
            malformed = True
            continue
        function = {"name": call.name, "args": call.arguments}
        if call.call_id:
            function["id"] = call.call_id
        if first_call is None:
            first_call = len(parts)
        parts.append({"functionCall": function})
    if not parts:
        parts.append({"text": ""})
    # The turn's signature rides where Gemini puts it: on the first function call, else on
    # the answer's text (a whole response has one part of each kind).
    signature = next(
        (p.signature for p in result.thinking if not p.redacted and _base64(p.signature)), None
    )
    if signature is not None:
        where = first_call if first_call is not None else answer
        parts[len(parts) - 1 if where is None else where]["thoughtSignature"] = signature
    reason = result.finish_reason or FINISH_STOP
    word = "MALFORMED_FUNCTION_CALL" if malformed else _FINISH_OUT.get(reason, "STOP")
    candidate = {"content": {"parts": parts, "role": "model"}, "finishReason": word, "index": 0}
    body: dict[str, Any] = {"candidates": [candidate]}
    if result.usage is not None:
        body["usageMetadata"] = usage_metadata(result.usage)
    body["modelVersion"] = result.model or model
    body["responseId"] = result.response_id
    return body


def gemini_error_body(status: int, message: str) -> dict[str, Any]:
    """Google's error body: ``{"error": {"code", "message", "status"}}``."""
    return {"error": error_object(status, message)}


# ---------------------------------------------------------------------------------------------
# URLs and keys


#: the API versions whose client endpoints Sluice serves: the SDK calls ``/v1`` when it is
#: given a base URL (its default version), ``/v1beta`` when told so, as Google's docs do
CLIENT_PREFIXES = ("/v1beta/models/", "/v1/models/")
STREAM_METHOD = "streamGenerateContent"
COMPLETE_METHOD = "generateContent"
#: the methods of Google's model resource: a path naming one is a Gemini client's (the two
#: above are served; the others are answered 404 in Google's shape)
MODEL_METHODS = frozenset(
    (STREAM_METHOD, COMPLETE_METHOD, "countTokens", "embedContent", "batchEmbedContents")
)


def upstream_path(model: str, stream: bool) -> str:
    """The path under a Gemini base URL (``…/v1beta``): the model named in it (escaped; a
    tuned model's ``tunedModels/x`` kept whole), always streamed as server-sent events."""
    if model.startswith("tunedModels/"):
        name = "tunedModels/" + quote(model.removeprefix("tunedModels/"), safe="")
    else:
        name = "models/" + quote(model.removeprefix("models/"), safe="")
    return f"/{name}:{STREAM_METHOD}?alt=sse"


def auth_headers(key: str | None) -> dict[str, str]:
    """Google's: the key in ``x-goog-api-key`` (never in the URL, where logs would keep it)."""
    return {} if key is None else {"x-goog-api-key": key}


def forward_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    """A Gemini client's own body, for a Gemini upstream: as it is, the model and the
    streaming being in the URL (a ``model`` in the body, which the SDK never writes, would
    name the client's ``provider/model``: it is left out)."""
    if "model" not in body:
        return body
    return {key: value for key, value in body.items() if key != "model"}


def claims(path: str) -> bool:
    """Whether a path under the endpoints' prefixes is Gemini's: one that names a method of
    Google's model resource (``…/models/{model}:generateContent``). ``GET /v1/models/{id}``
    (OpenAI's model retrieval) names none, nor does an OpenAI fine-tune's ``ft:…`` id."""
    return path.rpartition(":")[2] in MODEL_METHODS


def client_target(path: str) -> tuple[str, bool]:
    """``(model, stream)`` from a client endpoint's path (``/v1beta/models/{model}:method``,
    the path already unescaped, so ``sim%2Fsupport`` reads ``sim/support``); a leading
    ``models/`` of the model is the resource name's and is dropped. ``UnknownEndpoint``
    (404) for a path that is not one of the two methods."""
    for prefix in CLIENT_PREFIXES:
        if path.startswith(prefix):
            rest = path[len(prefix) :]
            break
    else:
        raise UnknownEndpoint(f"{path!r} is not a Gemini endpoint")
    model, colon, method = rest.rpartition(":")
    model = model.removeprefix("models/")
    if not colon or not model or method not in (STREAM_METHOD, COMPLETE_METHOD):
        raise UnknownEndpoint(
            f"{path!r}: the Gemini endpoints are models/{{model}}:{STREAM_METHOD} and "
            f"models/{{model}}:{COMPLETE_METHOD}"
        )
    return model, method == STREAM_METHOD


# ---------------------------------------------------------------------------------------------
# The format, whole


#: Google's Gemini API (AI Studio): ``kind = "gemini"``, its key in ``GEMINI_API_KEY``
GEMINI_KIND = ProviderKind(
    "gemini", "https://generativelanguage.googleapis.com/v1beta", "GEMINI_API_KEY"
)


def _parse(body: dict[str, Any], path: str) -> TurnRequest:
    model, stream = client_target(path)
    return parse_gemini_request(body, model, stream)


def _encoder(response_id: str, model: str, include_usage: bool) -> GeminiStreamEncoder:
    return GeminiStreamEncoder(response_id, model)


def _error_body(status: int, type_: str, message: str) -> dict[str, Any]:
    return gemini_error_body(status, message)


GEMINI = WireFormat(
    name="gemini",
    kind=GEMINI_KIND,
    adapter=GeminiStreamAdapter,
    build=build_gemini_request,
    forward=forward_request,
    path=upstream_path,
    auth=auth_headers,
    error_body=_error_body,
    endpoints=CLIENT_PREFIXES,
    claims=claims,
    parse=_parse,
    encoder=_encoder,
    render=render_gemini_response,
    id_prefix=ID_PREFIX,
)
