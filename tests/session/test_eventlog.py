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


async def test_a_listener_runs_within_notify_until_it_declines() -> None:
    log = EventLog()
    seen: list[int] = []

    def listener() -> bool:
        seen.append(len(log))
        return len(log) < 2

    log.listen(listener)
    log.append(TextDelta("a"))
    log.notify()
    assert seen == [1]  # called in notify's own call: no task, no await
    log.append(TextDelta("b"))
    log.notify()
    log.append(TextDelta("c"))
    log.notify()
    assert seen == [1, 2]  # it declined the third


async def test_a_removed_listener_is_not_called_and_one_added_in_notify_waits() -> None:
    log = EventLog()
    calls: list[str] = []

    def late() -> bool:
        calls.append("late")
        return True

    def first() -> bool:
        calls.append("first")
        log.listen(late)
        return True

    def removed() -> bool:
        calls.append("removed")
        return True

    log.listen(first)
    log.listen(removed)
    log.unlisten(removed)
    log.unlisten(removed)  # harmless twice
    log.notify()
    assert calls == ["first"]
    log.unlisten(first)
    log.notify()
    assert calls == ["first", "late"]
