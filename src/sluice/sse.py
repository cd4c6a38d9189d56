"""Server-sent events: an incremental decoder (bytes in any chunking -> events) and an encoder.

Implements the WHATWG HTML "server-sent events" parsing rules ("Parsing an event stream" and
"Interpreting an event stream"; quoted as "spec" below). No I/O.

The decoder works on bytes and decodes UTF-8 only for the values it keeps. That is exactly the
spec's "decode the stream as UTF-8, then split it into lines": CR, LF and ``:`` are ASCII, UTF-8
never uses an ASCII byte inside a multi-byte sequence, and a malformed sequence never swallows
an ASCII byte (Python's ``"replace"`` handler substitutes maximal subparts, as the Encoding
Standard's UTF-8 decode does), so splitting before decoding gives the same text as decoding
first. A character split across chunks is joined with the rest of its line before decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "FrameTooLarge",
    "SSEDecoder",
    "ServerSentEvent",
    "encode_comment",
    "encode_event",
]

_BOM = b"\xef\xbb\xbf"
_COLON = 0x3A
_CR = 0x0D
_LF = 0x0A


class FrameTooLarge(ValueError):
    """A line, or the event being built, went past the decoder's bound. The spec sets none; a
    decoder that reads from a peer it does not trust needs one, or a line that never ends
    takes all the memory there is."""


@dataclass(slots=True)
class ServerSentEvent:
    """One dispatched event.

    ``id`` is the last event id in force when the event was dispatched; ``retry`` is the value
    of a valid ``retry`` field inside this event's block, if any (the decoder's ``retry``
    attribute keeps the reconnection time in force); ``raw`` is filled only by a decoder made
    with ``keep_raw=True``.
    """

    event: str = "message"
    data: str = ""
    id: str = ""
    retry: int | None = None
    raw: bytes = b""


class SSEDecoder:
    """Feed bytes with ``decode()``; call ``flush()`` at end of stream.

    Chunks may be split anywhere: inside a line, inside a UTF-8 character, inside the leading
    BOM, or between the CR and LF of a CRLF.

    With ``keep_raw=True`` every event's ``raw`` holds the exact bytes consumed since the
    previous dispatched event, up to and including the line end of the blank line that
    dispatched it, comments and ignored fields included; joining the ``raw`` of all events
    gives the input up to the last dispatch. One exception to "including": the spec ends a line
    at a CR at once, so an event whose blank line is a CRLF split across two chunks is
    dispatched at the CR, without waiting, and that LF opens the next event's ``raw``.

    After ``flush()`` the decoder is ready for a new stream (a reconnection): ``last_event_id``
    and ``retry`` carry over, as the spec requires; everything else starts afresh, an ``id``
    read in an event that was never dispatched included. The decoder passes every format vector
    of the web-platform-tests EventSource suite (``tests/fixtures/sse/``).

    Bounds: a line is at most ``max_line`` bytes, and the event being built at most
    ``max_event`` (its data fields; with ``keep_raw``, all the bytes since the last dispatch,
    comments included). Past either, ``decode()`` raises ``FrameTooLarge`` before it holds
    more: a line that never ends is held up to ``max_line`` bytes, not joined. A chunk that is
    one whole event (``idle``'s fast path) is not measured: it is no larger than one read.
    """

    __slots__ = (
        "_at_start",
        "_block_retry",
        "_data",
        "_event",
        "_held",
        "_id_buffer",
        "_raw",
        "_raw_len",
        "_skip_lf",
        "_tail",
        "_tail_len",
        "idle",
        "keep_raw",
        "last_event_id",
        "max_event",
        "max_line",
        "retry",
    )

    def __init__(
        self,
        keep_raw: bool = False,
        max_line: int = 1 << 62,
        max_event: int = 1 << 62,
    ) -> None:
        #: spec: "last event ID string"; sent back as ``Last-Event-ID`` on reconnect. It
        #: changes only when an event is dispatched (a blank line), never at an ``id`` field.
        self.last_event_id = ""
        #: spec: "reconnection time", in milliseconds; None until the stream sets one.
        self.retry: int | None = None
        self.keep_raw = keep_raw
        self._at_start = True  # the BOM may only be dropped here
        self._skip_lf = False  # the previous chunk ended with CR: a leading LF completes a CRLF
        self._tail: list[bytes] = []  # an unterminated line (or the held start of a BOM)
        self._data: list[bytes] = []  # spec: "data buffer", one item per data field
        self._event = b""  # spec: "event type buffer"
        #: spec: "last event ID buffer", while it differs from the string (an ``id`` field
        #: since the last blank line); None when it holds the string's value
        self._id_buffer: str | None = None
        self._block_retry: int | None = None
        self._raw: list[bytes] = []  # keep_raw: bytes consumed since the last dispatch
        self._tail_len = 0  # bytes in ``_tail``
        self._held = 0  # bytes in ``_data``
        self._raw_len = 0  # bytes in ``_raw``
        self.max_line = max_line
        self.max_event = max_event
        #: nothing is pending (all of the above at rest, the stream's start behind): the next
        #: byte begins a line of a new event. A piece that is one ``data:`` event with its
        #: blank line (after an optional ``event:`` line) then decodes alone, and leaves the
        #: decoder idle.
        self.idle = False

    def decode(self, chunk: bytes) -> list[ServerSentEvent]:
        if self.idle:
            single = _single_event(chunk, chunk if self.keep_raw else b"")
            if single is not None:
                return [ServerSentEvent(single[0], single[1], self.last_event_id, None, single[2])]
        return self._decode(chunk)

    def frames(self, chunk: bytes) -> list[tuple[str, str, bytes]]:
        """``decode()`` for a consumer that needs each event's type, data and ``raw`` only
        (the relay): the same events as tuples, without an object made for the usual chunk's
        one event."""
        if self.idle:
            single = _single_event(chunk, chunk if self.keep_raw else b"")
            if single is not None:
                return [single]
        return [(sse.event, sse.data, sse.raw) for sse in self._decode(chunk)]

    def _decode(self, chunk: bytes) -> list[ServerSentEvent]:
        if not chunk:
            return []
        keep = self.keep_raw
        tail = self._tail
        if tail:
            if not self._at_start and _LF not in chunk and _CR not in chunk:
                # A long line arriving in pieces: collect them, join once it ends.
                self._tail_len += len(chunk)
                if self._tail_len > self.max_line:
                    raise FrameTooLarge(f"an SSE line is over {self.max_line:,} bytes")
                tail.append(chunk)
                if keep:
                    self._raw.append(chunk)
                    self._raw_len += len(chunk)
                    if self._raw_len > self.max_event:
                        raise FrameTooLarge(f"an SSE event is over {self.max_event:,} bytes")
                return []
            prefix = b"".join(tail)
            tail.clear()
            self._tail_len = 0
            buf = prefix + chunk
            delta = -len(prefix)  # offset in ``chunk`` = offset in ``buf`` + delta
        else:
            buf = chunk
            delta = 0
        if self._at_start:
            # spec: "One leading U+FEFF BYTE ORDER MARK character must be ignored if any are
            # present." Hold the first bytes until they can be told apart from a BOM.
            if len(buf) < 3 and _BOM.startswith(buf):
                tail.append(buf)
                self._tail_len = len(buf)
                if keep:
                    self._raw.append(chunk)
                    self._raw_len += len(chunk)
                return []
            self._at_start = False
            if buf.startswith(_BOM):
                buf = buf[3:]
                delta += 3
        if self._skip_lf:
            # spec: a CR LF pair is one line end, also when a chunk boundary falls between.
            self._skip_lf = False
            if buf[:1] == b"\n":
                buf = buf[1:]
                delta += 1

        # spec: "Lines must be separated by either a U+000D CARRIAGE RETURN U+000A LINE FEED
        # (CRLF) character pair, a single U+000A LINE FEED (LF) character, or a single U+000D
        # CARRIAGE RETURN (CR) character."
        if _CR not in buf:  # (an int membership test is a plain memchr)
            lines = buf.split(b"\n")
            rest = lines.pop()
            sized, term = lines, 1  # keep_raw: each line is followed by a 1-byte line end
        else:
            # bytes.splitlines() breaks at exactly CRLF, LF and CR (str.splitlines would not).
            pieces = buf.splitlines(keepends=True)
            rest = b"" if pieces[-1].endswith((b"\n", b"\r")) else pieces.pop()
            # A CR at the very end already ended its line; only a following LF is undecided.
            self._skip_lf = buf.endswith(b"\r")
            lines = [piece.rstrip(b"\r\n") for piece in pieces]
            sized, term = pieces, 0
        if rest:
            if len(rest) > self.max_line:
                raise FrameTooLarge(f"an SSE line is over {self.max_line:,} bytes")
            tail.append(rest)
            self._tail_len = len(rest)

        events: list[ServerSentEvent] = []
        data = self._data
        held = self._held
        # keep_raw: ``done`` is the offset in ``chunk`` up to which bytes went into a raw,
        # ``base`` the offset where line ``mark`` starts (``delta``: it may begin in ``tail``).
        done, base, mark = 0, delta, 0
        for i, line in enumerate(lines):
            if not line:
                # spec: "If the line is empty (a blank line): Dispatch the event." Its first
                # step comes before the test for an empty data buffer: "Set the last event ID
                # string of the event source to the value of the last event ID buffer."
                if self._id_buffer is not None:
                    self.last_event_id = self._id_buffer
                    self._id_buffer = None
                # An empty data buffer dispatches nothing, but both buffers are reset all the
                # same.
                if data:
                    etype = self._event
                    sse = ServerSentEvent(
                        # spec: the type defaults to "message" when the buffer is empty.
                        etype.decode("utf-8", "replace") if etype else "message",
                        # spec: one LF per data field, less the trailing one.
                        b"\n".join(data).decode("utf-8", "replace"),
                        self.last_event_id,
                        self._block_retry,
                    )
                    if keep:
                        if not rest and i == len(lines) - 1:
                            end = len(chunk)  # the usual case: the chunk ends the event
                        else:
                            end = base + sum(map(len, sized[mark : i + 1])) + term * (i + 1 - mark)
                        base, mark = end, i + 1
                        if self._raw:
                            self._raw.append(chunk[done:end])
                            sse.raw = b"".join(self._raw)
                            self._raw.clear()
                        else:
                            sse.raw = chunk[done:end]  # no copy when it is the whole chunk
                        done = end
                    events.append(sse)
                    data.clear()
                    held = 0
                self._event = b""
                self._block_retry = None
            elif line.startswith(b"data:"):
                # The common fields first, ahead of the general rule below (same result).
                data.append(line[6:] if line[5:6] == b" " else line[5:])
                held += len(line)
            elif line.startswith(b"event:"):
                self._event = line[7:] if line[6:7] == b" " else line[6:]
            elif line[0] == _COLON:
                # spec: "If the line starts with a U+003A COLON character (:): Ignore the line."
                continue
            else:
                # spec: the field name is everything before the first colon; "if value starts
                # with a U+0020 SPACE character, remove it"; no colon: the whole line is the
                # name and the value is empty.
                colon = line.find(b":")
                if colon < 0:
                    name, value = line, b""
                else:
                    name = line[:colon]
                    start = colon + 2 if line[colon + 1 : colon + 2] == b" " else colon + 1
                    value = line[start:]
                self._field(name, value)
                held += len(value)

        self._held = held
        if held > self.max_event:
            raise FrameTooLarge(f"an SSE event is over {self.max_event:,} bytes")
        if keep:
            if done:  # an event was dispatched: the raw in progress starts afresh
                self._raw_len = 0
            if done < len(chunk):
                self._raw.append(chunk[done:])
                self._raw_len += len(chunk) - done
                if self._raw_len > self.max_event:
                    raise FrameTooLarge(f"an SSE event is over {self.max_event:,} bytes")
        self.idle = (
            self._block_retry is None
            and self._id_buffer is None
            and not (tail or data or self._event or self._skip_lf or self._raw)
        )
        return events

    def _field(self, name: bytes, value: bytes) -> None:
        # spec: "Process the field": names compare case-sensitively; others are ignored.
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value
        elif name == b"id":
            # spec: "If the field value does not contain U+0000 NULL, then set the last event
            # ID buffer to the field value. Otherwise, ignore the field." Empty resets it. The
            # buffer reaches ``last_event_id`` when the event is dispatched (its blank line).
            if b"\0" not in value:
                self._id_buffer = value.decode("utf-8", "replace")
        # spec: "If the field value consists of only ASCII digits, then interpret the field
        # value as an integer in base ten". (bytes.isdigit is ASCII-only and False for b"".)
        # A value past Python's int-parsing limit (4300 digits) is ignored.
        elif name == b"retry" and value.isdigit() and len(value) <= 4300:
            self.retry = self._block_retry = int(value)

    def flush(self) -> list[ServerSentEvent]:
        """End of stream: spec "any pending data must be discarded", so this never dispatches.

        An unterminated last line and an event without its blank line are dropped, its ``id``
        with it: ``last_event_id`` stays that of the last dispatched event (spec: "If the file
        ends in the middle of an event, before the final empty line, the incomplete event is
        not dispatched"; web-platform-tests' ``format-data-before-final-empty-line``). A CR at
        the very end was already taken as a line end by ``decode()``.
        """
        self.idle = False
        self._id_buffer = None
        self._at_start = True
        self._skip_lf = False
        self._tail.clear()
        self._data.clear()
        self._event = b""
        self._block_retry = None
        self._raw.clear()
        self._tail_len = self._held = self._raw_len = 0
        return []


def _single_event(chunk: bytes, raw: bytes) -> tuple[str, str, bytes] | None:
    """The fast path, for a decoder with nothing pending: the usual LLM chunk with LF line
    ends, one event made of a ``data:`` line, or an ``event:`` line then a ``data:`` line,
    and its blank line. Returns its type, data and ``raw``, or None for any other chunk (the
    general path gives the same result for these, in several times the work).

    This runs for every chunk the relay reads. In CPython 3.11 a bytes method that takes
    arguments (``endswith``, ``find``, ``startswith``) costs about a thousand instructions to
    parse them, ``in`` and indexing a fraction of that: the usual chunk needs one ``find``."""
    if not chunk or chunk[-1] != _LF or _CR in chunk:
        return None
    end = len(chunk) - 2
    first = chunk.find(b"\n")
    if first == end:  # the first line end is the one before the last: "\n\n" ends the chunk
        if chunk[:5] != b"data:":
            return None
        value = chunk[6:end] if chunk[5] == 0x20 else chunk[5:end]
        return "message", value.decode("utf-8", "replace"), raw
    if (
        chunk.startswith(b"event:")
        and chunk.find(b"\n", first + 1) == end
        and chunk.startswith(b"data:", first + 1)
    ):
        name = chunk[7:first] if chunk[6] == 0x20 else chunk[6:first]
        start = first + 7 if chunk[first + 6] == 0x20 else first + 6
        return (
            name.decode("utf-8", "replace") if name else "message",
            chunk[start:end].decode("utf-8", "replace"),
            raw,
        )
    return None


def encode_event(
    data: str | bytes, event: str | None = None, id: str | None = None, retry: int | None = None
) -> bytes:
    """One SSE frame: ``event``, ``id``, ``retry`` then ``data`` lines, and a blank line.

    Each line of ``data`` (split at CRLF, CR or LF) becomes a ``data: `` line, so the decoder
    gives back ``data`` with its line ends turned into LF. ``bytes`` data is sent as is and
    must be UTF-8. ``id=""`` is written, since it resets the client's last event id; an empty
    ``event`` is left out (it means "message" anyway).
    """
    body = data.encode() if isinstance(data, str) else data
    if _CR in body:
        body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    frame = b"data: " + body.replace(b"\n", b"\ndata: ") + b"\n\n"
    if event is None and id is None and retry is None:
        return frame
    fields: list[bytes] = []
    if event is not None:
        if "\r" in event or "\n" in event:
            raise ValueError(f"SSE event type must not contain CR or LF: {event!r}")
        if event:
            fields.append(b"event: " + event.encode() + b"\n")
    if id is not None:
        if "\r" in id or "\n" in id or "\0" in id:
            # A NUL would make the client ignore the field (spec, "id").
            raise ValueError(f"SSE id must not contain CR, LF or NUL: {id!r}")
        fields.append(b"id: " + id.encode() + b"\n")
    if retry is not None:
        if retry < 0:
            raise ValueError(f"SSE retry must be a non-negative integer: {retry!r}")
        fields.append(b"retry: %d\n" % retry)
    fields.append(frame)
    return b"".join(fields)


def encode_comment(text: str = "") -> bytes:
    """A comment frame, ``: text`` and a blank line; each line of ``text`` is its own comment."""
    body = text.encode()
    if _CR in body:
        body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return b": " + body.replace(b"\n", b"\n: ") + b"\n\n"
