"""Coarse deadlines for many open streams on a few loop timers.

Every open stream has two deadlines: the relay's watchdog (heartbeat and send deadline) and
the upstream's stall deadline. As loop timers they cost about 650 bytes each per stream
(uvloop's handle, libuv's timer, the callback and its arguments), a tenth of what an idle
stream costs in all. Here a deadline is one entry in the dictionary of its slot: its time
rounded up to ``RESOLUTION``, never early. One loop timer per slot with entries calls them
all; with deadlines seconds apart, thousands of streams share a few hundred timers.

A callback is keyed by its owner, so that ``cancel`` takes it out at once and an ended
stream is not kept alive until its slot comes due. It is called with the owner as its one
argument: an owner passes a function of its class (``Owner._watch``), not a bound method,
which would be one more object per stream, made again at every deadline it sets.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Callable, Hashable
from typing import Any

#: seconds per slot: how late a deadline may fire, at most
RESOLUTION = 0.05

_wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Wheel] = weakref.WeakKeyDictionary()


class Wheel:
    """The deadlines of one event loop; get it with ``wheel()``."""

    __slots__ = ("_loop", "_slots")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        #: slot number -> owner -> callback
        self._slots: dict[int, dict[Hashable, Callable[[Any], object]]] = {}

    def call_at(self, when: float, owner: Hashable, callback: Callable[[Any], object]) -> int:
        """Call ``callback(owner)`` at loop time ``when`` or up to ``RESOLUTION`` later;
        returns the slot, for ``cancel``. An owner has one deadline per slot: a second
        replaces the first."""
        slot = math.ceil(when / RESOLUTION)
        entries = self._slots.get(slot)
        if entries is None:
            entries = self._slots[slot] = {}
            self._loop.call_at(slot * RESOLUTION, self._fire, slot)
        entries[owner] = callback
        return slot

    def call_later(self, delay: float, owner: Hashable, callback: Callable[[Any], object]) -> int:
        return self.call_at(self._loop.time() + delay, owner, callback)

    def cancel(self, slot: int, owner: Hashable) -> None:
        entries = self._slots.get(slot)
        if entries is not None:
            entries.pop(owner, None)

    def __len__(self) -> int:
        """Deadlines waiting."""
        return sum(len(entries) for entries in self._slots.values())

    def _fire(self, slot: int) -> None:
        entries = self._slots.pop(slot, None)
        if not entries:
            return
        for owner, callback in entries.items():
            try:
                callback(owner)
            except Exception as exc:  # noqa: BLE001 - one owner's bug must not cost the others theirs
                self._loop.call_exception_handler(
                    {"message": "deadline callback failed", "exception": exc}
                )


def wheel() -> Wheel:
    """The running loop's wheel (made on first use)."""
    loop = asyncio.get_running_loop()
    found = _wheels.get(loop)
    if found is None:
        found = _wheels[loop] = Wheel(loop)
    return found
