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
    #: secrets (as bytes) that no delta ``quick`` takes may hold in its text: a piece whose
    #: text holds one takes the general path, where the session redacts it
    keys: tuple[bytes, ...]

    def feed(self, event: str, data: str) -> list[Event]: ...

    def quick(self, piece: bytes) -> Event | None:
        """The hot path's shortcut past the SSE decoder and ``feed``: for a body piece that is
        one SSE event holding one text or reasoning delta and nothing else (most of a streamed
        answer), that delta; else None, and the piece takes the general path. Only for a
        piece that starts where the decoder is idle. Where it answers, it answers as the
        general path would, and leaves the adapter as ``feed`` would."""
        ...

    def close(self) -> list[Event]: ...


class StreamEncoder(Protocol):
    """Renders normalised events as one wire format's SSE bytes, for a client. No I/O."""

    def encode(self, event: Event) -> bytes: ...

    def close(self) -> bytes: ...
