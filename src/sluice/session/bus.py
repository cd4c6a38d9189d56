"""The operations bus: coalesced session state for live views. A protocol and an in-process bus.

Publishers send whole derived states, never per-token messages. A subscriber that falls
behind loses the oldest messages of its bounded queue, not the newest: a live view wants the
present. ``Subscription`` is that queue, shared by every backend (the Redis one is in
``sluice.distributed.redis_backend``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

Message = dict[str, Any]


class Bus(Protocol):
    async def publish(self, topic: str, message: Message) -> None: ...

    def subscribe(self, topic: str) -> Any:
        """An async context manager yielding an async iterator of messages."""


class Subscription:
    """One subscriber's messages: a bounded queue that drops its oldest when full.

    ``received`` counts the messages put in, ``dropped`` those that fell out unread. A backend
    that fails puts the error in with ``fail``: the reader gets it once the queue is empty.
    """

    __slots__ = ("_error", "_messages", "_waiter", "dropped", "received")

    def __init__(self, size: int) -> None:
        #: ``size`` 0: no bound
        self._messages: deque[Message] = deque(maxlen=size or None)
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self.received = 0
        self.dropped = 0

    def put(self, message: Message) -> None:
        messages = self._messages
        if len(messages) == messages.maxlen:
            self.dropped += 1
        messages.append(message)
        self.received += 1
        self._wake()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        messages = self._messages
        while not messages:
            if self._error is not None:
                raise self._error
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return messages.popleft()


class MemoryBus:
    def __init__(self, queue_size: int = 1024) -> None:
        self._queue_size = queue_size
        self._subscribers: dict[str, set[Subscription]] = {}

    async def publish(self, topic: str, message: Message) -> None:
        for subscription in self._subscribers.get(topic, ()):
            subscription.put(message)

    @asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[Subscription]:
        subscription = Subscription(self._queue_size)
        self._subscribers.setdefault(topic, set()).add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers[topic].discard(subscription)

    async def close(self) -> None:
        return None
