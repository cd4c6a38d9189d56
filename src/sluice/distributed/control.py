"""The control channel: commands to the node that owns a session, and the nodes' leases.
A protocol and its in-process implementation.

A command (Stop: ``cancel`` with a reason; ``retry``) names its session and goes to the node
that relays it (``LiveLog.lookup`` says which): every listener of that node receives it at once,
and ``send`` says whether any did. Commands are not stored: one sent to a node that does not
listen is gone, and the sender learns so from the answer.

A session that may be run again elsewhere (a whole-turn retry after its node died) leaves its
request with ``hand_over``: whoever closes its dead node's sessions ``take``s it, once, and
runs the turn again; the owner ``withdraw``s it when the session ends.

A node proves it is alive by renewing its lease (``heartbeat`` with a ``ttl``, several times
per ``ttl``); a node whose lease ran out is listed by ``expired_nodes`` until one survivor
``forget``s it, which only one caller wins: that caller closes the dead node's sessions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

CANCEL = "cancel"
RETRY = "retry"
COMMAND_KINDS = (CANCEL, RETRY)

#: commands a listener may hold unread before the oldest is dropped
LISTEN_QUEUE = 1024


@dataclass(frozen=True, slots=True)
class Command:
    """``kind`` is ``cancel`` or ``retry``; ``reason`` is the stable string a cancel records
    (``client_cancelled``, ``deadline``…)."""

    kind: str
    session_id: str
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "session_id": self.session_id, "reason": self.reason}

    @classmethod
    def from_json(cls, raw: Any) -> Command | None:
        """The command ``raw`` holds, or None when it is not one (never raises)."""
        if not isinstance(raw, dict):
            return None
        kind, session_id, reason = raw.get("kind"), raw.get("session_id"), raw.get("reason")
        if kind not in COMMAND_KINDS or not isinstance(session_id, str):
            return None
        return cls(kind, session_id, reason if isinstance(reason, str) else None)


class Control(Protocol):
    async def send(self, node_id: str, command: Command) -> bool:
        """Deliver ``command`` to ``node_id``'s listeners; False when none listens."""

    def listen(self, node_id: str) -> AbstractAsyncContextManager[AsyncIterator[Command]]:
        """Receive the commands sent to ``node_id`` while the context is open. The
        subscription is in place once the context is entered."""

    async def heartbeat(self, node_id: str, ttl: float) -> None:
        """Renew ``node_id``'s lease for ``ttl`` seconds."""

    async def alive(self, node_id: str) -> bool: ...

    async def expired_nodes(self) -> list[str]:
        """Nodes whose lease ran out and that nobody has forgotten yet."""

    async def forget(self, node_id: str) -> bool:
        """Drop ``node_id``'s lease; True for the one caller that removed it."""

    async def hand_over(self, session_id: str, request: bytes, ttl: float) -> None:
        """Keep what it takes to run ``session_id``'s turn again, for ``ttl`` seconds."""

    async def take(self, session_id: str) -> bytes | None:
        """The request ``hand_over`` kept, removed: only one caller gets it."""

    async def withdraw(self, session_id: str) -> None:
        """The session ended: its request is not needed any more."""

    async def close(self) -> None: ...


class MemoryControl:
    """The control channel of one process: queues per listener, leases in a dict."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[asyncio.Queue[Command]]] = {}
        #: node id -> monotonic time its lease ends
        self._leases: dict[str, float] = {}
        #: session id -> (request, monotonic time it expires)
        self._handed: dict[str, tuple[bytes, float]] = {}

    async def send(self, node_id: str, command: Command) -> bool:
        queues = self._listeners.get(node_id, ())
        for queue in queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(command)
        return bool(queues)

    @asynccontextmanager
    async def listen(self, node_id: str) -> AsyncIterator[AsyncIterator[Command]]:
        queue: asyncio.Queue[Command] = asyncio.Queue(LISTEN_QUEUE)
        self._listeners.setdefault(node_id, set()).add(queue)

        async def commands() -> AsyncIterator[Command]:
            while True:
                yield await queue.get()

        try:
            yield commands()
        finally:
            listeners = self._listeners.get(node_id)
            if listeners is not None:
                listeners.discard(queue)
                if not listeners:
                    del self._listeners[node_id]

    async def heartbeat(self, node_id: str, ttl: float) -> None:
        self._leases[node_id] = time.monotonic() + ttl

    async def alive(self, node_id: str) -> bool:
        return self._leases.get(node_id, 0.0) > time.monotonic()

    async def expired_nodes(self) -> list[str]:
        now = time.monotonic()
        return sorted(node for node, ends in self._leases.items() if ends <= now)

    async def forget(self, node_id: str) -> bool:
        return self._leases.pop(node_id, None) is not None

    async def hand_over(self, session_id: str, request: bytes, ttl: float) -> None:
        self._handed[session_id] = (request, time.monotonic() + ttl)

    async def take(self, session_id: str) -> bytes | None:
        kept = self._handed.pop(session_id, None)
        if kept is None or kept[1] <= time.monotonic():
            return None
        return kept[0]

    async def withdraw(self, session_id: str) -> None:
        self._handed.pop(session_id, None)

    async def close(self) -> None:
        return None
