"""Presenters: how one client sees a session's event log, one entry at a time. No I/O.

- ``PassthroughPresenter``: the upstream's own bytes, unchanged (client and upstream speak the
  same format); errors Sluice itself detects are rendered in that format.
- ``TranslatingPresenter``: the events re-encoded in the client's format, one tool call at a
  time.
- ``NativePresenter``: Sluice's own event format, every event with an SSE ``id``, ``end``
  included.

An agent run's front-end formats have their own modules: ``agui`` (AG-UI) and ``uimessages``
(the AI SDK's UI message stream).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import orjson

from sluice import events as ev
from sluice.sse import encode_event
from sluice.wire.base import StreamEncoder
from sluice.wire.sequencer import ToolCallSequencer


class Presenter(Protocol):
    #: true once a terminal event was rendered: a provider-format stream ends there
    finished: bool
    #: whether to keep following the log after a terminal event, until the record is final:
    #: ``close()`` is then written once it is (an agent run's log holds a terminal event per
    #: step; its end is the log's)
    follows_finalization: bool

    def render(self, seq: int, event: ev.Event | None, raw: bytes) -> bytes: ...

    def close(self) -> bytes: ...


class PassthroughPresenter:
    """The upstream's bytes as they are. The client's encoder is needed only to say an error
    Sluice found itself, so it is made then, by ``make_encoder``: the two frame prefixes it
    precomputes would otherwise be some 500 bytes held by every open stream."""

    __slots__ = ("_make_encoder", "finished")
    follows_finalization = False

    def __init__(self, make_encoder: Callable[[], StreamEncoder]) -> None:
        self._make_encoder = make_encoder
        self.finished = False

    def render(self, seq: int, event: ev.Event | None, raw: bytes) -> bytes:
        if event is not None and type(event) in ev.TERMINAL:
            self.finished = True
            if not raw and type(event) is ev.Error:
                # Sluice found this error itself (a broken or truncated upstream, a Stop):
                # say so in the client's own format rather than ending silently.
                return self._make_encoder().encode(event)
        return raw

    def close(self) -> bytes:
        return b""


class TranslatingPresenter:
    """The events re-encoded in the client's format, one tool call at a time: the encoder sits
    behind a ``ToolCallSequencer``, so a tool block's fragments all come before its stop
    whatever the order upstream. While no call is open the sequencer is idle and a text delta
    goes to the encoder directly, at no cost of its own."""

    __slots__ = ("_encode", "_sequencer", "finished")
    follows_finalization = False

    def __init__(self, encoder: StreamEncoder) -> None:
        self._encode = encoder.encode
        self._sequencer = ToolCallSequencer(encoder)
        self.finished = False

    def render(self, seq: int, event: ev.Event | None, raw: bytes) -> bytes:
        if type(event) is ev.TextDelta and self._sequencer.idle:
            return self._encode(event)
        if event is None:
            return b""
        if type(event) in ev.TERMINAL:
            self.finished = True
        return self._sequencer.encode(event)

    def close(self) -> bytes:
        return self._sequencer.close()


class NativePresenter:
    """Every event as ``id: <seq>`` / ``event: <type>`` / ``data: <json>``; after the record is
    final, one ``end`` event carrying the record's summary, with the id after the last
    event's: a client that resumes after that id has everything, and gets nothing more."""

    __slots__ = ("end_frame", "finished")
    follows_finalization = True

    def __init__(self) -> None:
        self.finished = False
        self.end_frame = b""

    def render(self, seq: int, event: ev.Event | None, raw: bytes) -> bytes:
        if event is None:
            return b""
        kind, data = ev.payload(event)
        return encode_event(orjson.dumps(data), event=kind, id=str(seq))

    def end(self, summary: bytes, end_id: int) -> None:
        """The ``end`` event ``close`` writes: the record's ``summary`` under ``end_id``."""
        self.end_frame = encode_event(summary, event="end", id=str(end_id))

    def close(self) -> bytes:
        return self.end_frame
