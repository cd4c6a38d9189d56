"""A session's append-only event log: rising sequence numbers, many readers, a live tail.

An entry is ``(event, raw)``: the normalised event (``None`` for an upstream frame that
produced none, such as a ``ping``) and the upstream frame's bytes as they arrived (empty
unless the session forwards bytes unchanged). The entry at list index ``i`` has sequence
number ``i + 1``, so a reader resumes from any sequence number in O(1).
"""

from __future__ import annotations

import asyncio

from sluice.events import Event

Entry = tuple[Event | None, bytes]


class EventLog:
    __slots__ = ("_waiters", "closed", "entries")

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.closed = False
        #: one future per waiting reader: a reader that is cancelled takes only its own
        self._waiters: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return len(self.entries)

    def append(self, event: Event | None, raw: bytes = b"") -> None:
        """Append without waking readers: the writer calls ``notify()`` once per upstream chunk."""
        self.entries.append((event, raw))

    def notify(self) -> None:
        waiters = self._waiters
        if waiters:
            self._waiters = []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def close(self) -> None:
        """No more entries will come; readers drain what is left and stop. Idempotent."""
        self.closed = True
        self.notify()

    async def wait_beyond(self, position: int) -> None:
        """Return once there are more than ``position`` entries, or the log is closed."""
        while len(self.entries) <= position and not self.closed:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
