"""One contract, every operations bus: messages in order to every subscriber, on any node; a
slow subscriber loses the oldest."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from sluice.distributed.backplane import Backplane
from sluice.distributed.redis_backend import RedisBus
from sluice.session.bus import Bus, MemoryBus, Message
from tests.distributed.conftest import WAIT, OpenProcess, eventually


async def take(messages: AsyncIterator[Message], n: int) -> list[Message]:
    async with asyncio.timeout(WAIT):
        return [await anext(messages) for _ in range(n)]


def small_bus(plane: Backplane, size: int) -> Bus:
    """A bus of the plane's kind whose subscribers hold ``size`` messages."""
    if plane.link is None:
        assert isinstance(plane.bus, MemoryBus)
        return MemoryBus(queue_size=size)
    return RedisBus(plane.link, queue_size=size)


async def test_subscribers_on_two_nodes_get_every_message_in_order(
    open_process: OpenProcess,
) -> None:
    a = (await open_process()).bus
    b = (await open_process()).bus
    async with a.subscribe("ops") as on_a, b.subscribe("ops") as on_b:
        for seq in range(1, 51):
            await a.publish("ops", {"type": "diff", "seq": seq, "sessions": {}})
        assert [m["seq"] for m in await take(on_a, 50)] == list(range(1, 51))
        assert [m["seq"] for m in await take(on_b, 50)] == list(range(1, 51))


async def test_a_message_reaches_only_its_topic(open_process: OpenProcess) -> None:
    bus = (await open_process()).bus
    async with bus.subscribe("ops") as ops, bus.subscribe("sessions") as sessions:
        await bus.publish("sessions", {"id": "op-1"})
        await bus.publish("ops", {"seq": 1})
        assert await take(ops, 1) == [{"seq": 1}]
        assert await take(sessions, 1) == [{"id": "op-1"}]


async def test_a_slow_subscriber_loses_the_oldest_messages(open_process: OpenProcess) -> None:
    plane = await open_process()
    bus = small_bus(plane, 4)
    async with bus.subscribe("ops") as slow:
        for seq in range(1, 51):
            await bus.publish("ops", {"seq": seq})

        async def all_received() -> bool:  # everything reached the subscriber's queue
            return slow.received == 50

        await eventually(all_received)
        assert slow.dropped == 46
        assert [m["seq"] for m in await take(slow, 4)] == [47, 48, 49, 50]
        await bus.publish("ops", {"seq": 51})
        assert await take(slow, 1) == [{"seq": 51}]


async def test_a_subscriber_that_left_receives_nothing_more(open_process: OpenProcess) -> None:
    bus = (await open_process()).bus
    async with bus.subscribe("ops") as first:
        await bus.publish("ops", {"seq": 1})
        assert await take(first, 1) == [{"seq": 1}]
    await bus.publish("ops", {"seq": 2})  # nobody listens: not an error
    async with bus.subscribe("ops") as second:
        await bus.publish("ops", {"seq": 3})
        assert await take(second, 1) == [{"seq": 3}]
    assert first.received == 1
