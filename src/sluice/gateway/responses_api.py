"""The Responses API's view of a session: its id, its response object, its stream from any
sequence number, and how a stream relayed unchanged from a Responses provider ends when Sluice
ends it. No I/O.

- **Ids.** A response Sluice writes itself (the upstream speaks another format) has the id
  ``resp_<session id>``. A response relayed unchanged from a Responses provider keeps the
  provider's id (its bytes are the provider's); ``resp_<session id>`` names it too.
- **Sequence numbers.** Translated, the frames are the encoder's, a pure function of the
  session's events: a resume renders the log again from its first event with a fresh encoder
  that writes only the frames numbered above ``starting_after`` (the store keeps what the
  rendering reads, so a stored session renders the same frames). Relayed, the numbers are the
  provider's own, read from its frames (a frame without one, as in 2025's streams, counts by
  its place); a resume sends the frames numbered above ``starting_after`` from the session's
  log, which holds them while the session is in memory.
- **Sluice's own ending.** When a relayed stream ends by Sluice's hand (a Stop, a broken or
  stalled upstream), its last frames continue the provider's numbering and response:
  ``response.failed`` (status ``cancelled`` for a Stop) after an ``error`` frame unless the
  provider sent its own, and nothing at all if the provider's own terminal frame went out.

The log is parsed here only off the relay's way: for a resume's first frames, a ``GET``, a
Stop, a broken stream. A relayed chunk costs the presenter one test more than passthrough.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from sluice import events as ev
from sluice.session.eventlog import Entry
from sluice.sse import SSEDecoder
from sluice.wire.openai_responses import ResponsesStreamEncoder, failure, failure_frames
from sluice.wire.sequencer import ToolCallSequencer

PREFIX = "resp_"

#: a number past every frame: a replay that writes nothing and keeps the response
SILENT = 2**62

_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def response_id(session_id: str) -> str:
    """The id of a response Sluice writes for a session."""
    return PREFIX + session_id


def session_id_of(response_id: str) -> str | None:
    """The session a ``resp_<session id>`` names; None for any other id."""
    rest = response_id.removeprefix(PREFIX)
    return rest if rest != response_id and rest else None


def rendered(
    events: Iterable[ev.Event | None],
    response_id: str,
    model: str,
    created_at: int,
    starting_after: int = -1,
    *,
    ended: bool = False,
) -> tuple[bytes, ResponsesStreamEncoder]:
    """The stream a translated session's ``events`` make, as its client got it (through the
    tool-call sequencer, as the presenter feeds the encoder), from after ``starting_after``;
    with ``ended``, what the stream's end releases too. And the encoder, for its
    ``response()`` and ``frames``."""
    encoder = ResponsesStreamEncoder(
        response_id, model, created_at=created_at, starting_after=starting_after
    )
    sequencer = ToolCallSequencer(encoder)
    out = [sequencer.encode(event) for event in events if event is not None]
    if ended:
        out.append(sequencer.close())
    return b"".join(out), encoder


def replayed(
    events: Iterable[ev.Event | None], response_id: str, model: str, created_at: int
) -> ResponsesStreamEncoder:
    """An encoder that has rendered ``events`` silently: its ``response()`` and ``frames``."""
    return rendered(events, response_id, model, created_at, SILENT)[1]


def _frames_in(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The SSE events in one log entry's bytes (one, after any comments), parsed."""
    decoder = SSEDecoder()
    out = []
    for sse in decoder.decode(raw) + decoder.flush():
        try:
            data = orjson.loads(sse.data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(data, dict):
            out.append((sse.event, data))
    return out


def _number(data: dict[str, Any], place: int) -> int:
    number = data.get("sequence_number")
    return number if type(number) is int else place


class UpstreamFrames:
    """What a relayed session's log holds of the provider's frames, up to ``end``: their
    numbers, its response object as it began, the items it finished, and its own terminal
    frame's response, if it sent one."""

    def __init__(self, entries: Sequence[Entry], end: int | None = None) -> None:
        self.last = -1  # the number of the last frame
        self.count = 0
        self.began: dict[str, Any] | None = None
        self.items: list[dict[str, Any]] = []
        self.final: dict[str, Any] | None = None
        self.errored = False  # the provider sent an ``error`` frame
        self.response_id = ""
        for event, raw in entries[:end]:
            if type(event) is ev.Start and not self.response_id:
                self.response_id = event.response_id
            if raw:
                for name, data in _frames_in(raw):
                    self._read(name, data)

    def _read(self, name: str, data: dict[str, Any]) -> None:
        self.last = _number(data, self.count)
        self.count += 1
        response = data.get("response")
        if name in ("response.created", "response.in_progress") and isinstance(response, dict):
            self.began = self.began or response
        elif name == "response.output_item.done" and isinstance(data.get("item"), dict):
            self.items.append(data["item"])
        elif name in _TERMINAL and isinstance(response, dict):
            self.final = response
        elif name == "error":
            self.errored = True

    def response(self, ending: ev.Error | None, fallback_id: str, model: str) -> dict[str, Any]:
        """The response as the client knows it: the provider's final one, else the one it
        began with, its finished items, and the status ``ending`` (Sluice's) gives it."""
        if self.final is not None:
            return self.final
        began = self.began or {
            "id": self.response_id or fallback_id,
            "object": "response",
            "created_at": 0,
            "model": model,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "incomplete_details": None,
        }
        response = began | {"status": "in_progress", "output": self.items, "usage": None}
        if ending is not None:
            status, problem = failure(ending)
            response |= {"status": status, "error": problem}
        return response

    def ending(
        self, error: ev.Error, fallback_id: str, model: str, starting_after: int = -1
    ) -> bytes:
        """The frames with which Sluice ends this stream for ``error``."""
        if self.final is not None:
            return b""  # the provider ended it, and its last frame went out
        if self.began is None and self.count == 0:  # nothing came: a stream of Sluice's own
            encoder = ResponsesStreamEncoder(fallback_id, model, starting_after=starting_after)
            return encoder.encode(error)
        response = self.response(None, fallback_id, model)
        return failure_frames(
            error,
            response,
            self.last + 1,
            error_frame=not self.errored,
            starting_after=starting_after,
        )


class ResponsesPassthroughPresenter:
    """The provider's Responses frames as they are, those numbered above ``starting_after``
    only (a resume); Sluice's own ending continues the provider's numbering and response
    (see the module docstring). ``fallback_id`` and ``model`` serve a stream that ended
    before the provider sent anything."""

    __slots__ = ("_after", "_entries", "_fallback_id", "_model", "_place", "finished")
    follows_finalization = False

    def __init__(
        self,
        entries: Sequence[Entry],
        fallback_id: str,
        model: str,
        starting_after: int = -1,
    ) -> None:
        self._entries = entries
        self._fallback_id = fallback_id
        self._model = model
        #: frames numbered up to this are not sent; -1 once the first later one was
        self._after = starting_after
        self._place = 0  # frames looked at while skipping (the number of one without its own)
        self.finished = False

    def render(self, seq: int, event: ev.Event | None, raw: bytes) -> bytes:
        if event is not None and type(event) in ev.TERMINAL:
            self.finished = True
            if not raw and type(event) is ev.Error:
                # Sluice ends the stream itself (a Stop, a broken upstream): in its format
                frames = UpstreamFrames(self._entries, seq - 1)
                return frames.ending(event, self._fallback_id, self._model, self._after)
        if raw and self._after >= 0:
            return self._resumed(raw)
        return raw

    def _resumed(self, raw: bytes) -> bytes:
        """A frame while resuming: sent if numbered above ``starting_after``, and from then on
        every frame is."""
        for _, data in _frames_in(raw):
            number = _number(data, self._place)
            self._place += 1
            if number > self._after:
                self._after = -1
                return raw
        return b""

    def close(self) -> bytes:
        return b""


def last_number(body: bytes) -> int:
    """The number of the last frame in a Responses stream's bytes; -1 for none."""
    last = -1
    for place, (_, data) in enumerate(_frames_in(body)):
        last = _number(data, place)
    return last
