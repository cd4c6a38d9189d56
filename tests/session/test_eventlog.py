"""The event log: readers wait for entries beyond their position; cancelling one spares the rest."""

from __future__ import annotations

import asyncio

from sluice.events import TextDelta
from sluice.session.eventlog import EventLog


async def test_a_waiting_reader_wakes_on_notify_not_on_append() -> None:
    log = EventLog()
    reader = asyncio.ensure_future(log.wait_beyond(0))
    await asyncio.sleep(0)  # the reader is now waiting
    log.append(TextDelta("a"))
    await asyncio.sleep(0)
    assert not reader.done()
    log.notify()
    async with asyncio.timeout(5):
        await reader
    assert len(log) == 1


async def test_a_cancelled_reader_does_not_take_the_others_wake_up() -> None:
    log = EventLog()
    first = asyncio.ensure_future(log.wait_beyond(0))
    second = asyncio.ensure_future(log.wait_beyond(0))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    log.append(TextDelta("a"))
    log.notify()
    async with asyncio.timeout(5):
        await second
    assert first.cancelled() and second.done() and not second.cancelled()


async def test_closing_the_log_releases_readers_with_nothing_new() -> None:
    log = EventLog()
    reader = asyncio.ensure_future(log.wait_beyond(0))
    await asyncio.sleep(0)
    log.close()
    async with asyncio.timeout(5):
        await reader
    assert log.closed and len(log) == 0
