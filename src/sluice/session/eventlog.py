"""A session's append-only event log: rising sequence numbers, many readers, a live tail.

An entry is ``(event, raw)``: the normalised event (``None`` for an upstream frame that
produced none, such as a ``ping``) and the upstream frame's bytes as they arrived (empty
unless the session forwards bytes unchanged). The entry at list index ``i`` has sequence
number ``i + 1``, so a reader resumes from any sequence number in O(1).
"""

from __future__ import annotations

from sluice.events import Event
from sluice.session.flag import Flag

Entry = tuple[Event | None, bytes]


class EventLog:
    __slots__ = ("_grown", "closed", "entries")

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.closed = False
        #: wakes the waiting readers (one future each: a cancelled reader takes only its own)
        self._grown = Flag()

    def __len__(self) -> int:
        return len(self.entries)

    def append(self, event: Event | None, raw: bytes = b"") -> None:
        """Append without waking readers: the writer calls ``notify()`` once per upstream chunk."""
        self.entries.append((event, raw))

    def notify(self) -> None:
        self._grown.set()
        self._grown.clear()

    def close(self) -> None:
        """No more entries will come; readers drain what is left and stop. Idempotent."""
        self.closed = True
        self.notify()

    async def wait_beyond(self, position: int) -> None:
        """Return once there are more than ``position`` entries, or the log is closed."""
        while len(self.entries) <= position and not self.closed:
            await self._grown.wait()
