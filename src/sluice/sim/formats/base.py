"""The contract every simulated wire format fulfils, and the helpers the formats share."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from sluice.sim.conversation import Conversation
from sluice.sim.script import Event, Transcript

ErrorKind = Literal[
    "rate_limit",
    "overloaded",
    "model_not_found",
    "invalid_request",
    "request_too_large",
    "server_error",
    "authentication",
]

dumps = orjson.dumps


@dataclass(frozen=True, slots=True)
class Exchange:
    """What an encoder needs to know about the request it answers."""

    request_id: str
    #: 32 hex digits unique to the request; message, item and tool-call ids derive from it.
    uid: str
    model: str
    created: int
    input_tokens: int
    body: Mapping[str, Any]

    def tool_call_id(self, prefix: str, index: int) -> str:
        return f"{prefix}{self.uid[:22]}{index:02d}"


@dataclass(frozen=True, slots=True)
class ErrorReply:
    status: int
    body: bytes


class StreamEncoder(Protocol):
    """Turns script events into this format's SSE bytes. No I/O.

    ``encode`` may return several frames (opening the stream, closing a block) or none.
    The encoder reads usage counts from the transcript, which the caller folds each event
    into *before* encoding it.
    """

    def encode(self, event: Event) -> bytes: ...


class WireFormat(Protocol):
    """One provider API: how to read its request and how to write its answers and errors."""

    #: the record's ``format`` value
    name: str
    #: the response header that carries the provider's request id
    request_id_header: str
    #: the error a non-streaming request gets where a stream would carry an in-stream error
    stream_error: tuple[ErrorKind, str]

    def prompt(self, body: Mapping[str, Any]) -> str:
        """All the text of the request's prompt, for the input-token estimate and the digest."""
        ...

    def max_tokens(self, body: Mapping[str, Any]) -> int | None:
        """The request's output cap; raises ``ValueError`` when it is not a positive integer."""
        ...

    def conversation(self, body: Mapping[str, Any]) -> Conversation:
        """The request's tools, tool choice and messages; raises ``ValueError`` for a tool
        result that answers no earlier call."""
        ...

    def stream(self, exchange: Exchange, transcript: Transcript) -> StreamEncoder: ...

    def render(self, exchange: Exchange, transcript: Transcript) -> bytes:
        """The non-streaming JSON body of a finished turn."""
        ...

    def error(self, kind: ErrorKind, message: str) -> ErrorReply: ...


def sse(event: str | None, data: bytes) -> bytes:
    """One SSE frame: an optional ``event:`` line, one ``data:`` line, a blank line."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def collect_text(value: Any) -> Iterator[str]:
    """Every string in a prompt structure: bare strings, and ``text``/``content`` values."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from collect_text(item)
    elif isinstance(value, Mapping):
        for key in ("text", "content"):
            if key in value:
                yield from collect_text(value[key])


def estimate_tokens(text: str) -> int:
    """The simulator's input-token count: one token per four characters, at least one."""
    return max(1, math.ceil(len(text) / 4))


def positive_int(body: Mapping[str, Any], *names: str) -> int | None:
    """The first of ``names`` present in ``body``, checked to be an integer >= 1."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1")
        return value
    return None


_OPENAI_ERRORS: Mapping[ErrorKind, tuple[int, str, str | None]] = {
    "rate_limit": (429, "requests", "rate_limit_exceeded"),
    "overloaded": (503, "server_error", "overloaded"),
    "model_not_found": (404, "invalid_request_error", "model_not_found"),
    "invalid_request": (400, "invalid_request_error", None),
    "request_too_large": (413, "invalid_request_error", "request_too_large"),
    "server_error": (500, "server_error", "server_error"),
    "authentication": (401, "invalid_request_error", "invalid_api_key"),
}


def openai_error(kind: ErrorKind, message: str) -> ErrorReply:
    """An error in the shape both OpenAI APIs use: ``{"error": {message, type, param, code}}``."""
    status, type_, code = _OPENAI_ERRORS[kind]
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return ErrorReply(status, dumps(body))
