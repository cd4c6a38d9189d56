"""Admission limits counted across processes and nodes: ceilings of live streams (the
gateway's, a key's) and sliding windows of requests and tokens per key. A protocol and its
in-process implementation; the Redis one is ``redis_limits.RedisLimits``.

A *ceiling* counts sessions by id: ``acquire`` counts a session in several counters at once,
all or none, and refuses when any is at its ceiling; ``release`` takes it out. An entry lasts
``lease`` seconds unless ``renew``-ed, so the sessions of a node that died stop counting on
their own once their lease runs out.

A *window* counts amounts with their time: ``hit`` counts one request if the window holds
fewer than the limit, else says when a slot frees; ``add`` counts tokens once a session's
usage is known, and ``total`` sums what the window holds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

#: seconds the request and token windows span
WINDOW = 60.0


class Limits(Protocol):
    async def acquire(
        self, session_id: str, ceilings: Sequence[tuple[str, int]], lease: float
    ) -> int | None:
        """Count ``session_id`` in each named counter, all or none; None when it is, else
        the index of the first counter at its ceiling (a ceiling of 0 is no ceiling)."""

    async def release(self, session_id: str, counters: Sequence[str]) -> None: ...

    async def renew(self, held: Sequence[tuple[str, Sequence[str]]], lease: float) -> None:
        """Extend the lease of each ``(session_id, counters)`` still counted."""

    async def count(self, counter: str) -> int:
        """Sessions the counter holds now (expired ones not counted)."""

    async def hit(self, name: str, limit: int, window: float = WINDOW) -> float | None:
        """Count one request in ``name``'s window if fewer than ``limit`` are there (None);
        else count nothing and return the seconds until the oldest leaves the window."""

    async def add(self, name: str, amount: int, window: float = WINDOW) -> None: ...

    async def total(self, name: str, window: float = WINDOW) -> int: ...

    async def close(self) -> None: ...


class MemoryLimits:
    """The limits of one process: dictionaries, with the same expiry rules as Redis's."""

    def __init__(self) -> None:
        #: counter -> session id -> when its lease ends (``time.time()``)
        self._ceilings: dict[str, dict[str, float]] = {}
        #: name -> [(time, amount)], oldest first
        self._windows: dict[str, list[tuple[float, int]]] = {}

    def _live(self, counter: str, now: float) -> dict[str, float]:
        entries = self._ceilings.setdefault(counter, {})
        for session_id in [s for s, ends in entries.items() if ends <= now]:
            del entries[session_id]
        return entries

    async def acquire(
        self, session_id: str, ceilings: Sequence[tuple[str, int]], lease: float
    ) -> int | None:
        now = time.time()
        for index, (counter, ceiling) in enumerate(ceilings):
            entries = self._live(counter, now)
            if ceiling > 0 and session_id not in entries and len(entries) >= ceiling:
                return index
        for counter, _ in ceilings:
            self._ceilings[counter][session_id] = now + lease
        return None

    async def release(self, session_id: str, counters: Sequence[str]) -> None:
        for counter in counters:
            entries = self._ceilings.get(counter)
            if entries is not None:
                entries.pop(session_id, None)
                if not entries:
                    del self._ceilings[counter]

    async def renew(self, held: Sequence[tuple[str, Sequence[str]]], lease: float) -> None:
        ends = time.time() + lease
        for session_id, counters in held:
            for counter in counters:
                entries = self._ceilings.get(counter)
                if entries is not None and session_id in entries:
                    entries[session_id] = ends

    async def count(self, counter: str) -> int:
        return len(self._live(counter, time.time()))

    def _window(self, name: str, window: float, now: float) -> list[tuple[float, int]]:
        entries = self._windows.setdefault(name, [])
        cutoff = now - window
        drop = 0
        while drop < len(entries) and entries[drop][0] <= cutoff:
            drop += 1
        del entries[:drop]
        return entries

    async def hit(self, name: str, limit: int, window: float = WINDOW) -> float | None:
        now = time.time()
        entries = self._window(name, window, now)
        if len(entries) >= limit:
            return max(0.0, entries[0][0] + window - now)
        entries.append((now, 1))
        return None

    async def add(self, name: str, amount: int, window: float = WINDOW) -> None:
        now = time.time()
        self._window(name, window, now).append((now, amount))

    async def total(self, name: str, window: float = WINDOW) -> int:
        return sum(amount for _, amount in self._window(name, window, time.time()))

    async def close(self) -> None:
        return None
