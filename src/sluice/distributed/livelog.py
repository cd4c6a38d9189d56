"""A session's event log shared across processes: appended by the node that relays the session,
read, followed and looked up from any process. A protocol and its in-process implementation.

An event is ``(seq, type, data)``: the session's sequence number (rising, with gaps where an
upstream frame made no event), the event's type and its JSON-ready data, as
``Session.stored_events()`` gives them and ``events.payload`` makes them. The writer hands over
the events of one upstream read at a time (``append``); a backend writes them in batches, never
one round trip per event. Events are stored at most once per sequence number: an append of a
number at or below the log's last is ignored, and readers never see a number twice or out of
order.

A session's log is *live* from ``start`` (which names the node that relays it) until ``finish``
(which stores its end summary and shortens its retention to the ``ttl`` given); ``lookup``
answers ``none`` (never started, or expired), ``live`` (with the owning node) or ``done`` (with
the summary).

``start``, ``append`` and ``finish`` queue their write when called and return an awaitable that
ends once it is stored (or raises ``BusError``): writes made together keep their call order,
and the writer need not wait. Readers hold at most one page (``PAGE`` entries) at a time.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from bisect import bisect_right
from collections.abc import AsyncIterator, Awaitable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Protocol

#: an event as appended: (sequence number, event type, its JSON-ready data); the same shape as
#: ``sluice.session.store.NewEvent``
NewEvent = tuple[int, str, Mapping[str, Any]]
#: an event as read back
LoggedEvent = tuple[int, str, dict[str, Any]]

NONE = "none"
LIVE = "live"
DONE = "done"

#: events (memory) or stored batches (Redis) a reader takes at a time
PAGE = 256
#: events one ``read`` returns at most; read again after the last to get more
READ_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Lookup:
    """Where a session's log stands: ``none``, ``live`` on ``node``, or ``done`` with its
    end ``summary``."""

    state: str
    node: str | None = None
    summary: dict[str, Any] | None = None


class LiveLog(Protocol):
    def start(self, session_id: str, node_id: str) -> Awaitable[None]:
        """The session is live on ``node_id`` (again, after a takeover: the node changes)."""

    def append(self, session_id: str, batch: Sequence[NewEvent]) -> Awaitable[None]:
        """Queue the events of one upstream read (sequence numbers rising)."""

    def finish(self, session_id: str, summary: Mapping[str, Any], ttl: float) -> Awaitable[None]:
        """The session ended: store ``summary``, wake its followers, keep the log ``ttl``
        seconds more. Appends queued before it are stored before it."""

    async def read(
        self, session_id: str, after: int = 0, limit: int = READ_LIMIT
    ) -> list[LoggedEvent]:
        """The stored events numbered above ``after``, oldest first, at most ``limit``."""

    def follow(self, session_id: str, after: int = 0) -> AsyncIterator[list[LoggedEvent]]:
        """The events above ``after``, stored and to come, in pages, until the session is
        done (or its log expires). Ends at once for a session that is ``none``."""

    async def lookup(self, session_id: str) -> Lookup: ...

    async def owned_by(self, node_id: str) -> list[str]:
        """The live sessions whose owner is ``node_id`` (a dead node's, to close them)."""

    async def close(self) -> None:
        """Store what is queued, then let go of connections. Idempotent."""


class _Completed:
    """An awaitable that is already done: what the in-process log's writes return."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        yield from ()


COMPLETED = _Completed()

_seq_of = itemgetter(0)


@dataclass(slots=True, eq=False)
class _Log:
    node: str | None = None
    events: list[LoggedEvent] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    #: monotonic time past which a finished log is gone
    expires: float | None = None
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class MemoryLiveLog:
    """The live log of one process: a list per session, finished logs dropped after their
    ``ttl``. Writes take effect at once."""

    def __init__(self) -> None:
        self._logs: dict[str, _Log] = {}
        #: (expiry, session id) of finished logs, soonest first
        self._expiry: list[tuple[float, str]] = []

    def _get(self, session_id: str) -> _Log | None:
        log = self._logs.get(session_id)
        if log is not None and log.expires is not None and log.expires <= time.monotonic():
            self._drop(session_id, log)
            return None
        return log

    def _drop(self, session_id: str, log: _Log) -> None:
        del self._logs[session_id]
        log.wake()

    def _sweep(self) -> None:
        now = time.monotonic()
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _, session_id = heapq.heappop(expiry)
            log = self._logs.get(session_id)
            if log is not None and log.expires is not None and log.expires <= now:
                self._drop(session_id, log)

    def start(self, session_id: str, node_id: str) -> Awaitable[None]:
        self._sweep()
        log = self._get(session_id)
        if log is None:
            log = self._logs[session_id] = _Log()
        log.node = node_id
        log.summary = None
        log.expires = None
        return COMPLETED

    def append(self, session_id: str, batch: Sequence[NewEvent]) -> Awaitable[None]:
        log = self._get(session_id)
        if log is None:
            log = self._logs[session_id] = _Log()
        if log.summary is not None:
            return COMPLETED  # a finished log takes no more events
        events = log.events
        last = events[-1][0] if events else 0
        for seq, kind, data in batch:
            if seq > last:
                events.append((seq, kind, dict(data)))
                last = seq
        log.wake()
        return COMPLETED

    def finish(self, session_id: str, summary: Mapping[str, Any], ttl: float) -> Awaitable[None]:
        self._sweep()
        log = self._get(session_id)
        if log is None:
            log = self._logs[session_id] = _Log()
        log.summary = dict(summary)
        log.expires = time.monotonic() + ttl
        heapq.heappush(self._expiry, (log.expires, session_id))
        log.wake()
        return COMPLETED

    async def read(
        self, session_id: str, after: int = 0, limit: int = READ_LIMIT
    ) -> list[LoggedEvent]:
        log = self._get(session_id)
        if log is None:
            return []
        start = bisect_right(log.events, after, key=_seq_of)
        return log.events[start : start + limit]

    async def follow(self, session_id: str, after: int = 0) -> AsyncIterator[list[LoggedEvent]]:
        while True:
            log = self._get(session_id)
            if log is None:
                return
            events = log.events
            start = bisect_right(events, after, key=_seq_of)
            if start < len(events):
                page = events[start : start + PAGE]
                after = page[-1][0]
                yield page
                continue
            if log.summary is not None:
                return
            waiter = asyncio.get_running_loop().create_future()
            log.waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in log.waiters:
                    log.waiters.remove(waiter)

    async def lookup(self, session_id: str) -> Lookup:
        log = self._get(session_id)
        if log is None:
            return Lookup(NONE)
        if log.summary is not None:
            return Lookup(DONE, log.node, dict(log.summary))
        return Lookup(LIVE, log.node)

    async def owned_by(self, node_id: str) -> list[str]:
        return sorted(
            session_id
            for session_id, log in self._logs.items()
            if log.node == node_id and log.summary is None
        )

    async def close(self) -> None:
        return None
