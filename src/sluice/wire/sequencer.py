"""One tool call at a time: the order every client encoder is fed in. No I/O.

A Chat stream may interleave the argument fragments of parallel tool calls (call 0's, then
call 1's, then call 0's again: the format keys each fragment by index), and a provider may
send text while a call's arguments are still coming. Formats whose tool calls are blocks
(Anthropic's ``content_block_start`` / ``input_json_delta`` / ``content_block_stop``, a
Responses ``function_call`` item) cannot say that: a block's fragments must all come before
its stop, and only one block is open at a time.

:class:`ToolCallSequencer` sits in front of a client's encoder and makes every stream look
like the block formats require, whatever the order upstream: the first tool call to start is
*open* and its fragments pass straight through; everything else that arrives while it is open
(another call's start and fragments, text, reasoning, a signature) is held, in order. When the
open call ends (its ``ToolCallDone``), the held events are replayed: the next held call is
opened and its own held events follow it at once, ahead of whatever was interleaved with them;
if that call has not ended yet it stays open, and the rest stays held. A terminal event
(``Finish``, ``Error``) or ``close()`` replays everything still held first, each call's
events together.

So the encoder behind it sees each call as ``ToolCallStart ToolCallDelta* ToolCallDone``
with nothing between, and the calls in the order they started. A call's fragments that arrive
while another call is open reach the client when that call ends: for a Chat upstream that is
at its ``finish_reason``, since Chat never says when one call ends.

With no call open (``idle``), every event passes straight through: a text delta costs the
relay nothing more than the encoder's own work (the presenter hands it to the encoder itself
while the sequencer is idle).
"""

from __future__ import annotations

from sluice.events import Error, Event, Finish, ToolCallDelta, ToolCallDone, ToolCallStart

from .base import StreamEncoder

__all__ = ["ToolCallSequencer"]


class ToolCallSequencer:
    """A :class:`~sluice.wire.base.StreamEncoder` that feeds ``encoder`` one tool call at a
    time (see the module docstring)."""

    __slots__ = ("_encode", "_encoder", "_held", "_open", "idle")

    def __init__(self, encoder: StreamEncoder) -> None:
        self._encoder = encoder
        self._encode = encoder.encode
        #: the index of the tool call whose events pass through, if one is open
        self._open: int | None = None
        #: what arrived while a call was open, in order of arrival
        self._held: list[Event] = []
        #: no call open and nothing held: every event goes straight to the encoder
        self.idle = True

    def encode(self, event: Event) -> bytes:
        if self.idle:
            if type(event) is ToolCallStart:
                self._open = event.index
                self.idle = False
            return self._encode(event)
        if isinstance(event, _CALL_EVENTS) and event.index == self._open:
            out = self._encode(event)
            if type(event) is ToolCallDone:
                self._open = None
                out += self._release(ending=False)
            return out
        if isinstance(event, Finish | Error):
            self._open = None
            return self._release(ending=True) + self._encode(event)
        self._held.append(event)
        return b""

    def close(self) -> bytes:
        self._open = None
        return self._release(ending=True) + self._encoder.close()

    def _release(self, ending: bool) -> bytes:
        """Replay the held events while no call is open; with ``ending``, all of them."""
        held, encode = self._held, self._encode
        out: list[bytes] = []
        position = 0
        while position < len(held):
            event = held[position]
            position += 1
            out.append(encode(event))
            if type(event) is not ToolCallStart:
                continue
            # The call's own events, wherever they sit among the rest, come next (up to its
            # end: its index used again after that is another call's).
            index = event.index
            rest: list[Event] = []
            ended = False
            for later in held[position:]:
                if not ended and isinstance(later, _CALL_EVENTS) and later.index == index:
                    out.append(encode(later))
                    ended = type(later) is ToolCallDone
                else:
                    rest.append(later)
            held[position:] = rest
            if not ended and not ending:
                self._open = index  # its later events pass straight through
                del held[:position]
                return b"".join(out)
        held.clear()
        self.idle = True
        return b"".join(out)


#: the events that belong to one tool call, by its index
_CALL_EVENTS = (ToolCallDelta, ToolCallDone)
