"""The operations bus: coalesced session state for live views. A protocol and an in-process bus.

Publishers send whole derived states, never per-token messages. A subscriber that falls
behind loses the oldest messages of its bounded queue, not the newest: a live view wants the
present.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

Message = dict[str, Any]


class Bus(Protocol):
    async def publish(self, topic: str, message: Message) -> None: ...

    def subscribe(self, topic: str) -> Any:
        """An async context manager yielding an async iterator of messages."""


class MemoryBus:
    def __init__(self, queue_size: int = 1024) -> None:
        self._queue_size = queue_size
        self._subscribers: dict[str, set[asyncio.Queue[Message]]] = {}

    async def publish(self, topic: str, message: Message) -> None:
        for queue in self._subscribers.get(topic, ()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(message)

    @asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[AsyncIterator[Message]]:
        queue: asyncio.Queue[Message] = asyncio.Queue(self._queue_size)
        self._subscribers.setdefault(topic, set()).add(queue)

        async def messages() -> AsyncIterator[Message]:
            while True:
                yield await queue.get()

        try:
            yield messages()
        finally:
            self._subscribers[topic].discard(queue)
