"""The two contracts every wire format implements: a stream adapter and a stream encoder."""

from __future__ import annotations

from typing import Protocol

from sluice.events import Event


class StreamAdapter(Protocol):
    """A fold from one upstream stream's SSE frames to normalised events. No I/O.

    ``feed`` takes one decoded SSE event (its ``event`` field and its ``data`` text) and
    returns the normalised events it produces (often none, usually one). ``close`` is called
    once when the upstream body ends (cleanly or not) and returns what the end implies:
    open tool calls reported ``incomplete``, and an ``Error`` of type ``upstream_truncated``
    when the stream ended before its terminator. After a terminal event, later input is
    ignored.
    """

    #: true once the format's terminator was seen (``[DONE]``, ``message_stop``,
    #: ``response.completed``…) or a terminal event was produced.
    done: bool
    #: true when the frame just fed held only usage (Chat's ``choices: []`` chunk): a client
    #: that did not ask for usage must not receive it
    last_was_usage_only: bool

    def feed(self, event: str, data: str) -> list[Event]: ...

    def close(self) -> list[Event]: ...


class StreamEncoder(Protocol):
    """Renders normalised events as one wire format's SSE bytes, for a client. No I/O."""

    def encode(self, event: Event) -> bytes: ...

    def close(self) -> bytes: ...
