"""What the three stream adapters share: the fold skeleton, total JSON field readers, and errors.

:class:`WireFold` owns the parts of ``StreamAdapter`` that do not depend on the format: each
frame's JSON is parsed exactly once (``orjson.loads``); data that is not a JSON object ends the
stream with a typed ``upstream_protocol`` error; open tool calls are reported ``incomplete``
before any terminal event that is not a normal finish; after a terminal event ``done`` is set
and later input is ignored. Subclasses implement ``_frame`` (one parsed frame) and may
override ``_end`` (what ``close()`` says when the stream ended without a terminal event).

The field readers never raise: a wrong type reads as absent, so an adapter is total over
arbitrary input (a provider bug becomes a typed event, never an exception in the relay).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import orjson

from sluice.events import Error, Event, ReasoningDelta, TextDelta

from ._toolargs import ToolArgs

#: A format's shortcut for its commonest piece (``_scan.c``): the piece, the text delta's
#: class and the reasoning delta's, the keys its text must not hold; the event, or None for
#: the general path.
Shortcut = Callable[
    [bytes, Callable[..., Event], Callable[..., Event], tuple[bytes, ...]], Event | None
]


def _general_path(piece: bytes, text_cls: Any, reasoning_cls: Any, keys: Any = ()) -> None:
    return None


try:
    from . import _scan
except ImportError:  # installed without a C compiler: every piece takes the general path
    chat_shortcut: Shortcut = _general_path
    messages_shortcut: Shortcut = _general_path
    responses_shortcut: Shortcut = _general_path
else:
    chat_shortcut = _scan.chat_delta
    messages_shortcut = _scan.messages_delta
    responses_shortcut = _scan.responses_delta

EMPTY: Mapping[str, Any] = MappingProxyType({})


def sub(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``obj[key]`` if it is a JSON object, else an empty mapping."""
    value = obj.get(key)
    return value if isinstance(value, dict) else EMPTY


def text(obj: Mapping[str, Any], key: str) -> str:
    """``obj[key]`` if it is a string, else ``""``."""
    value = obj.get(key)
    return value if isinstance(value, str) else ""


#: The largest token count read from a provider (the largest integer every JSON reader holds
#: exactly). A larger or negative "count" reads as absent, so sums of counts stay within the
#: 64-bit integers the JSON encoder writes.
MAX_COUNT = 2**53 - 1


def count(obj: Mapping[str, Any], key: str) -> int:
    """``obj[key]`` if it is an integer (not a boolean) from 0 to ``MAX_COUNT``, else 0."""
    value = obj.get(key)
    return value if type(value) is int and 0 <= value <= MAX_COUNT else 0


def maybe_count(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    return value if type(value) is int else None


def truncated(what: str) -> Error:
    return Error(type="upstream_truncated", message=what, retryable=True)


def openai_error(error: Any) -> Error:
    """An OpenAI-style error object (``{message, type, code}``) as a typed :class:`Error`.

    Used by Chat Completions (``data: {"error": {...}}``) and Responses (``error`` frames and
    ``response.failed``), whose type and code vocabularies overlap: ``rate_limit_exceeded``,
    ``server_error``, ``service_unavailable``, sometimes a bare HTTP status as the code.
    """
    if isinstance(error, dict):
        detail: dict[str, Any] = error
        message = text(error, "message")
        words = f"{text(error, 'type')} {text(error, 'code')}".lower()
        code = error.get("code")
    else:
        detail = {}
        message = error if isinstance(error, str) else ""
        words = ""
        code = None
    status = _http_status(code)
    if "rate_limit" in words or "too_many_requests" in words or status == 429:
        kind, retryable = "rate_limited", True
    elif "overloaded" in words or "unavailable" in words or status in (503, 529):
        kind, retryable = "overloaded", True
    elif "server_error" in words or "internal" in words or (status or 0) >= 500:
        kind, retryable = "upstream_error", True
    else:
        kind, retryable = "upstream_error", False
    return Error(
        type=kind,
        message=message or "the upstream reported an error",
        retryable=retryable,
        status=status,
        detail=detail,
    )


def _http_status(code: Any) -> int | None:
    """An error ``code`` that is an HTTP status (``503`` or ``"503"``), else None."""
    if isinstance(code, str) and len(code) == 3 and code.isascii() and code.isdigit():
        code = int(code)
    return code if type(code) is int and 100 <= code < 600 else None


class WireFold:
    """The format-independent half of a stream adapter (see the module docstring)."""

    __slots__ = ("_calls", "_started", "done", "keys", "last_was_usage_only")

    #: the format's name in messages (``malformed JSON in a <FORMAT> stream frame``).
    FORMAT: ClassVar[str] = ""
    #: the format's shortcut for its commonest piece (``quick``); none by default
    SHORTCUT: ClassVar[Shortcut] = _general_path

    def __init__(self) -> None:
        self.done = False
        #: true when the frame just fed carried usage and nothing else (Chat's usage chunk).
        self.last_was_usage_only = False
        #: open tool calls by the format's call index.
        self._calls: dict[int, ToolArgs] = {}
        #: the response has started (the format's first frame made the ``Start`` event)
        self._started = False
        #: secrets (the configured provider keys, as bytes) that a delta the shortcut takes
        #: must not hold: a piece whose text holds one takes the general path, where the
        #: session redacts it (the shortcut also refuses token-shaped text of its own accord)
        self.keys: tuple[bytes, ...] = ()

    def feed(self, event: str, data: str) -> list[Event]:
        self.last_was_usage_only = False
        if self.done:
            return []
        try:
            frame = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            return self._terminate([], self._protocol_error("malformed JSON", str(exc)))
        if not isinstance(frame, dict):
            return self._terminate([], self._protocol_error("non-object JSON", ""))
        return self._frame(event, frame)

    def quick(self, piece: bytes) -> Event | None:
        if self.done or not self._started:
            return None  # the general path starts the response, and ignores what follows it
        event = type(self).SHORTCUT(piece, TextDelta, ReasoningDelta, self.keys)
        if event is not None:
            self.last_was_usage_only = False  # as ``feed`` leaves it after a delta
        return event

    def close(self) -> list[Event]:
        if self.done:
            return []
        return self._end()

    # -- for subclasses -------------------------------------------------------------------

    def _frame(self, event: str, frame: dict[str, Any]) -> list[Event]:
        raise NotImplementedError

    def _end(self) -> list[Event]:
        """The body ended without the format's terminator."""
        return self._terminate([], truncated("the upstream stream ended before its terminator"))

    def _terminate(self, out: list[Event], terminal: Event) -> list[Event]:
        """Report the open tool calls as incomplete, then ``terminal``; ignore input after it."""
        self._incomplete_calls(out)
        out.append(terminal)
        self.done = True
        return out

    def _incomplete_calls(self, out: list[Event]) -> None:
        calls = self._calls
        for index in sorted(calls):
            out.append(calls[index].incomplete())
        calls.clear()

    def _finish_calls(self, out: list[Event]) -> None:
        """The calls ended normally: parse each one's arguments, in index order."""
        calls = self._calls
        for index in sorted(calls):
            out.append(calls[index].finish())
        calls.clear()

    def _protocol_error(self, what: str, reason: str) -> Error:
        return Error(
            type="upstream_protocol",
            message=f"{what} in a {self.FORMAT} stream frame",
            retryable=True,
            detail={"reason": reason} if reason else {},
        )
