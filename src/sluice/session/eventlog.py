"""A session's append-only event log: rising sequence numbers, many readers, a live tail.

An entry is ``(event, raw)``: the normalised event (``None`` for an upstream frame that
produced none, such as a ``ping``) and the upstream frame's bytes as they arrived (empty
unless the session forwards bytes unchanged). The entry at list index ``i`` has sequence
number ``i + 1``, so a reader resumes from any sequence number in O(1).

A reader either awaits ``wait_beyond()`` (a task woken per notification), or, when it can act
without waiting, registers a *listener*: a plain function that ``notify()`` calls at once, in
the writer's own call, and that says by its return value whether it wants the next one too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sluice.events import Event

Entry = tuple[Event | None, bytes]
#: called by ``notify()``; returns whether it stays registered
Listener = Callable[[], bool]


class EventLog:
    __slots__ = ("_listeners", "_waiters", "closed", "entries", "held")

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.closed = False
        #: while set, ``notify()`` wakes nobody: the session's end is held back from its
        #: readers until its record is durable (``close()`` ends the hold)
        self.held = False
        #: one future per waiting reader: a reader that is cancelled takes only its own
        #: (a shared ``()`` while none waits, as for a stream whose relay listens)
        self._waiters: list[asyncio.Future[None]] | tuple[()] = ()
        self._listeners: list[Listener] = []

    def __len__(self) -> int:
        return len(self.entries)

    def append(self, event: Event | None, raw: bytes = b"") -> None:
        """Append without waking readers: the writer calls ``notify()`` once per upstream read."""
        self.entries.append((event, raw))

    def notify(self) -> None:
        if self.held:
            return
        listeners = self._listeners
        if listeners:
            self._listeners = []  # a listener registered meanwhile waits for the next notify
            if len(listeners) == 1:  # the usual case: one client's stream, keeping up
                kept = listeners if listeners[0]() else None
            else:
                kept = [listener for listener in listeners if listener()]
            if kept:
                kept.extend(self._listeners)
                self._listeners = kept
        waiters = self._waiters
        if waiters:
            self._waiters = ()
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def listen(self, listener: Listener) -> None:
        """Call ``listener`` on every ``notify()`` until it returns False or is removed."""
        self._listeners.append(listener)

    def unlisten(self, listener: Listener) -> None:
        """Remove ``listener`` if it is registered (it may have removed itself already)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def close(self) -> None:
        """No more entries will come; readers drain what is left and stop. Idempotent."""
        self.closed = True
        self.held = False
        self.notify()

    async def wait_beyond(self, position: int) -> None:
        """Return once there are more than ``position`` entries, or the log is closed."""
        while len(self.entries) <= position and not self.closed:
            waiter = asyncio.get_running_loop().create_future()
            waiters = self._waiters
            if waiters:
                waiters.append(waiter)
            else:
                self._waiters = [waiter]
            try:
                await waiter
            except asyncio.CancelledError:
                waiters = self._waiters
                if waiter in waiters:
                    waiters.remove(waiter)  # type: ignore[union-attr]
                raise
