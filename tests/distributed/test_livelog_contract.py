"""One contract, every live log backend: order, no duplicates, followers anywhere, retention."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sluice.distributed.livelog import DONE, LIVE, NONE, LiveLog, LoggedEvent, NewEvent
from tests.distributed.conftest import WAIT, OpenProcess, eventually, processes


@pytest.fixture(params=["memory", "redis", "redis-py"])
async def open_process(request: pytest.FixtureRequest) -> AsyncIterator[OpenProcess]:
    """The live log in-process, on Redis through its own connection, and through redis-py."""
    url = None if request.param == "memory" else request.getfixturevalue("redis_url")
    async with processes(request.param, url) as open_one:
        yield open_one


def text(seq: int) -> NewEvent:
    return (seq, "text", {"text": f"t{seq}"})


def texts(first: int, last: int) -> list[NewEvent]:
    return [text(seq) for seq in range(first, last + 1)]


async def collect(events: AsyncIterator[list[LoggedEvent]]) -> list[LoggedEvent]:
    out: list[LoggedEvent] = []
    async with asyncio.timeout(WAIT):
        async for page in events:
            out.extend(page)
    return out


def seqs(events: list[LoggedEvent]) -> list[int]:
    return [seq for seq, _, _ in events]


async def test_a_started_session_is_live_on_its_node(open_process: OpenProcess) -> None:
    log = (await open_process()).log
    assert (await log.lookup("op-1")).state == NONE
    await log.start("op-1", "node-a")
    found = await log.lookup("op-1")
    assert (found.state, found.node, found.summary) == (LIVE, "node-a", None)


async def test_appended_events_read_back_in_order(open_process: OpenProcess) -> None:
    log = (await open_process()).log
    await log.start("op-1", "node-a")
    log.append("op-1", [(1, "start", {"response_id": "r", "model": "m"})])
    log.append("op-1", texts(2, 4))
    await log.append("op-1", [(6, "finish", {"reason": "stop", "raw": None})])
    assert await log.read("op-1") == [
        (1, "start", {"response_id": "r", "model": "m"}),
        (2, "text", {"text": "t2"}),
        (3, "text", {"text": "t3"}),
        (4, "text", {"text": "t4"}),
        (6, "finish", {"reason": "stop", "raw": None}),
    ]
    assert seqs(await log.read("op-1", after=3)) == [4, 6]
    assert seqs(await log.read("op-1", after=4)) == [6]
    assert await log.read("op-1", after=6) == []
    assert await log.read("op-unknown") == []


async def test_read_returns_at_most_its_limit_and_resumes_after_it(
    open_process: OpenProcess,
) -> None:
    log = (await open_process()).log
    await log.start("op-1", "node-a")
    for first in range(1, 100, 10):
        await log.append("op-1", texts(first, first + 9))
    first_part = await log.read("op-1", limit=25)
    assert seqs(first_part) == list(range(1, 26))
    rest = await log.read("op-1", after=first_part[-1][0], limit=1000)
    assert seqs(rest) == list(range(26, 101))


async def test_an_event_appended_twice_is_stored_once(open_process: OpenProcess) -> None:
    log = (await open_process()).log
    await log.start("op-1", "node-a")
    await log.append("op-1", texts(1, 3))
    await log.append("op-1", texts(1, 3))  # a write repeated after a lost answer
    await log.append("op-1", texts(2, 5))  # overlapping
    assert seqs(await log.read("op-1")) == [1, 2, 3, 4, 5]
    await log.finish("op-1", {"state": "complete"}, ttl=60)
    assert seqs(await collect(log.follow("op-1"))) == [1, 2, 3, 4, 5]


async def test_appends_of_many_sessions_in_one_window_are_all_stored(
    open_process: OpenProcess,
) -> None:
    log = (await open_process()).log
    writes = []
    for n in range(50):
        log.start(f"op-{n}", "node-a")
        for first in range(1, 30, 3):
            writes.append(log.append(f"op-{n}", texts(first, first + 2)))
    await asyncio.gather(*writes)
    for n in range(50):
        assert seqs(await log.read(f"op-{n}")) == list(range(1, 31))


async def test_read_then_follow_resumes_exactly_after_a_sequence_number(
    open_process: OpenProcess,
) -> None:
    """A reader that joins mid-stream reads what is stored, then follows from its last
    number while the writer keeps appending: every later event once, in order."""
    writer = (await open_process()).log
    reader = (await open_process()).log
    await writer.start("op-1", "node-a")
    total = 400
    half_written = asyncio.Event()

    async def write() -> None:
        for first in range(1, total, 8):
            writer.append("op-1", texts(first, first + 7))
            if first > total // 2:
                half_written.set()
            await asyncio.sleep(0.002)
        await writer.finish("op-1", {"state": "complete"}, ttl=60)

    task = asyncio.create_task(write())
    try:
        async with asyncio.timeout(WAIT):
            await half_written.wait()

        async def some_stored() -> bool:
            return bool(await reader.read("op-1", after=5))

        await eventually(some_stored)
        stored = await reader.read("op-1", after=5)
        assert stored and seqs(stored) == list(range(6, stored[-1][0] + 1))
        followed = await collect(reader.follow("op-1", after=stored[-1][0]))
        assert seqs(stored) + seqs(followed) == list(range(6, total + 1))
        assert followed[-1] == text(total)
    finally:
        await task


async def test_many_followers_in_two_processes_each_see_every_event_once(
    open_process: OpenProcess,
) -> None:
    owner = (await open_process()).log
    elsewhere = (await open_process()).log
    await owner.start("op-1", "node-a")
    await owner.append("op-1", texts(1, 10))
    followers = [
        asyncio.create_task(collect(log.follow("op-1", after=after)))
        for log in (owner, elsewhere)
        for after in (0, 3, 10)
    ]
    for first in range(11, 200, 10):
        owner.append("op-1", texts(first, first + 9))
        await asyncio.sleep(0.001)
    await owner.finish("op-1", {"state": "complete"}, ttl=60)
    results = await asyncio.gather(*followers)
    for result, after in zip(results, (0, 3, 10) * 2, strict=True):
        assert seqs(result) == list(range(after + 1, 201))


async def test_a_follower_waits_for_a_session_that_has_no_events_yet(
    open_process: OpenProcess,
) -> None:
    owner = (await open_process()).log
    elsewhere = (await open_process()).log
    await owner.start("op-1", "node-a")
    follower = asyncio.create_task(collect(elsewhere.follow("op-1")))
    await asyncio.sleep(0.05)
    assert not follower.done()
    await owner.append("op-1", texts(1, 2))
    await owner.finish("op-1", {"state": "complete"}, ttl=60)
    assert seqs(await follower) == [1, 2]


async def test_a_finished_session_is_done_with_its_summary(open_process: OpenProcess) -> None:
    owner = (await open_process()).log
    elsewhere = (await open_process()).log
    await owner.start("op-1", "node-a")
    owner.append("op-1", texts(1, 3))
    await owner.finish("op-1", {"state": "complete", "text": "t1t2t3"}, ttl=60)
    found = await elsewhere.lookup("op-1")
    assert (found.state, found.node) == (DONE, "node-a")
    assert found.summary == {"state": "complete", "text": "t1t2t3"}
    # A follower of a done session gets what is stored and ends.
    assert seqs(await collect(elsewhere.follow("op-1"))) == [1, 2, 3]
    assert seqs(await collect(elsewhere.follow("op-1", after=2))) == [3]


async def test_appends_after_finish_are_not_stored(open_process: OpenProcess) -> None:
    log = (await open_process()).log
    await log.start("op-1", "node-a")
    await log.append("op-1", texts(1, 2))
    await log.finish("op-1", {"state": "cancelled"}, ttl=60)
    await log.append("op-1", texts(3, 4))
    assert seqs(await log.read("op-1")) == [1, 2]


async def test_a_finished_log_started_again_takes_the_new_attempts_events(
    open_process: OpenProcess,
) -> None:
    owner = (await open_process()).log
    elsewhere = (await open_process()).log
    await owner.start("op-1", "node-a")
    await owner.append("op-1", texts(1, 3))
    await owner.finish("op-1", {"state": "errored"}, ttl=60)
    await owner.start("op-1", "node-a")  # the Retry button: the same log, live again
    assert (await elsewhere.lookup("op-1")).state == LIVE
    follower = asyncio.create_task(collect(elsewhere.follow("op-1", after=2)))
    await owner.append("op-1", [(4, "retry", {"attempt": 2, "reason": "recover"})])
    await owner.append("op-1", texts(5, 6))
    await owner.finish("op-1", {"state": "complete"}, ttl=60)
    assert seqs(await follower) == [3, 4, 5, 6]
    found = await elsewhere.lookup("op-1")
    assert found.state == DONE and found.summary == {"state": "complete"}


async def test_writes_queued_together_keep_their_call_order(open_process: OpenProcess) -> None:
    """An attempt's last events and end, then a retry's start and first events, all queued
    in one turn (one write window): the end lands before the start, never after it."""
    owner = (await open_process()).log
    elsewhere = (await open_process()).log
    await owner.start("op-1", "node-a")
    await owner.start("op-2", "node-a")
    await owner.append("op-1", texts(1, 2))
    queued = [
        owner.append("op-2", texts(1, 2)),
        owner.append("op-1", texts(3, 4)),
        owner.finish("op-1", {"state": "errored", "attempts": 1}, ttl=60),
        owner.start("op-1", "node-a"),
        owner.append("op-1", [(5, "retry", {"attempt": 2, "reason": "recover"})]),
        owner.finish("op-2", {"state": "complete"}, ttl=60),
        owner.append("op-1", texts(6, 7)),
    ]
    await asyncio.gather(*queued)
    found = await elsewhere.lookup("op-1")
    assert (found.state, found.node, found.summary) == (LIVE, "node-a", None)
    assert seqs(await elsewhere.read("op-1")) == [1, 2, 3, 4, 5, 6, 7]
    assert (await elsewhere.lookup("op-2")).state == DONE
    follower = asyncio.create_task(collect(elsewhere.follow("op-1", after=4)))
    await owner.append("op-1", texts(8, 8))
    await owner.finish("op-1", {"state": "complete", "attempts": 2}, ttl=60)
    assert seqs(await follower) == [5, 6, 7, 8]
    assert (await elsewhere.lookup("op-1")).summary == {"state": "complete", "attempts": 2}


async def test_following_an_unknown_session_ends_at_once(open_process: OpenProcess) -> None:
    log = (await open_process()).log
    assert await collect(log.follow("op-nobody")) == []


async def test_a_finished_log_goes_after_its_retention(open_process: OpenProcess) -> None:
    owner = (await open_process()).log
    elsewhere = (await open_process()).log
    await owner.start("op-short", "node-a")
    await owner.start("op-long", "node-a")
    owner.append("op-short", texts(1, 3))
    owner.append("op-long", texts(1, 3))
    await owner.finish("op-short", {"state": "complete"}, ttl=0.2)
    await owner.finish("op-long", {"state": "complete"}, ttl=600)
    assert (await elsewhere.lookup("op-short")).state == DONE

    async def gone() -> bool:
        return (await elsewhere.lookup("op-short")).state == NONE

    await eventually(gone)
    assert await elsewhere.read("op-short") == []
    assert await collect(elsewhere.follow("op-short")) == []
    assert (await elsewhere.lookup("op-long")).state == DONE
    assert seqs(await elsewhere.read("op-long")) == [1, 2, 3]


async def test_a_nodes_live_sessions_are_listed_until_they_finish_or_move(
    open_process: OpenProcess,
) -> None:
    a = (await open_process()).log
    b = (await open_process()).log
    for n in range(3):
        await a.start(f"op-{n}", "node-a")
    await b.start("op-b", "node-b")
    assert await b.owned_by("node-a") == ["op-0", "op-1", "op-2"]
    await a.finish("op-1", {"state": "complete"}, ttl=60)
    assert await b.owned_by("node-a") == ["op-0", "op-2"]
    # node-a dies; node-b takes op-2 over (a whole-turn retry) and closes op-0.
    await b.start("op-2", "node-b")
    await b.finish("op-0", {"state": "errored", "error": "node_lost"}, ttl=60)
    assert await b.owned_by("node-a") == []
    assert await a.owned_by("node-b") == ["op-2", "op-b"]
    found = await a.lookup("op-0")
    assert (found.state, found.node) == (DONE, "node-a")


async def test_a_takeover_continues_the_log_above_its_last_number(
    open_process: OpenProcess,
) -> None:
    a = (await open_process()).log
    b = (await open_process()).log
    await a.start("op-1", "node-a")
    await a.append("op-1", texts(1, 5))
    follower = asyncio.create_task(collect(b.follow("op-1", after=2)))
    await b.start("op-1", "node-b")
    last = (await b.read("op-1"))[-1][0]
    await b.append("op-1", [(last + 1, "retry", {"attempt": 2, "reason": "node_lost"})])
    await b.append("op-1", texts(last + 2, last + 3))
    await b.finish("op-1", {"state": "complete"}, ttl=60)
    assert seqs(await follower) == [3, 4, 5, 6, 7, 8]
    assert (await a.lookup("op-1")).node == "node-b"


async def test_close_stores_what_is_queued(open_process: OpenProcess) -> None:
    first = await open_process()
    log: LiveLog = first.log
    log.start("op-1", "node-a")
    log.append("op-1", texts(1, 4))
    await first.close()
    reader = (await open_process()).log
    if reader is log:  # in-process: the one log is the store
        assert seqs(await log.read("op-1")) == [1, 2, 3, 4]
        return
    assert seqs(await reader.read("op-1")) == [1, 2, 3, 4]
