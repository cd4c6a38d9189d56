"""The collector policy: young collections only, survivors frozen, full collections when idle."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from sluice.gateway import gcpolicy
from tests.conftest import LONG, GatewayUnderTest, start, tokens_when_running


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> Node:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a


@pytest.fixture
def tuned() -> Iterator[None]:
    gcpolicy.tune_gc()
    try:
        yield
    finally:
        gcpolicy.untune_gc()
        gc.collect()


def test_a_cycle_that_dies_young_is_collected_by_a_young_collection(tuned: None) -> None:
    node = cycle()
    del node
    assert gc.collect(0) >= 2


def test_the_survivors_of_a_collection_are_frozen(tuned: None) -> None:
    kept = cycle()
    before = gc.get_freeze_count()
    gc.collect(0)
    assert gc.get_freeze_count() > before
    assert all(kept is not o for o in gc.get_objects(0))
    # frozen, yet freed by reference counting once nothing refers to it (no cycle left)
    kept.other = None


def test_a_cycle_among_frozen_objects_waits_for_the_full_collection(tuned: None) -> None:
    kept = cycle()
    gc.collect(0)  # now frozen
    del kept  # garbage, but frozen: no young collection examines it
    assert gc.collect(0) == 0
    assert gcpolicy.full_collection() >= 2
    assert gc.get_freeze_count() > 0  # frozen again afterwards


async def test_the_full_collection_waits_until_the_gateway_has_been_quiet(
    tuned: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gcpolicy, "CHECK_EVERY", 0.01)
    monkeypatch.setattr(gcpolicy, "SLOW_TICK", 0.01)
    monkeypatch.setattr(gcpolicy, "FULL_WHEN_IDLE_AFTER", 0.0)
    quiet = [0.0]
    runs: list[int] = []

    def full_collection() -> int:
        runs.append(1)
        return 0

    monkeypatch.setattr(gcpolicy, "full_collection", full_collection)
    task = asyncio.ensure_future(gcpolicy.collect_on_schedule(lambda: 1, lambda: quiet[0]))
    try:
        await asyncio.sleep(0.1)
        assert runs == []  # sessions are live: no full collection
        quiet[0] = gcpolicy.QUIET / 2  # none live, but one ended a moment ago
        await asyncio.sleep(0.1)
        assert runs == []
        quiet[0] = gcpolicy.QUIET
        for _ in range(100):
            if runs:
                break
            await asyncio.sleep(0.01)
        assert runs
    finally:
        task.cancel()


async def test_many_live_sessions_have_young_objects_collected_on_schedule(
    tuned: None,
) -> None:
    """Under a steady load the net allocation count stays under the threshold (frees of
    frozen objects count too), so the young generation would grow unexamined: the schedule
    collects it while many sessions are live, and leaves it to the count with few."""
    live = [gcpolicy.YOUNG_FROM]
    task = asyncio.ensure_future(gcpolicy.collect_on_schedule(lambda: live[0], lambda: 0.0))
    try:
        busy_made = [Node() for _ in range(50)]  # far under the threshold of 5,000
        assert any(o is busy_made[0] for o in gc.get_objects(0))
        for _ in range(100):
            await asyncio.sleep(gcpolicy.YOUNG_EVERY)
            if not any(o is busy_made[0] for o in gc.get_objects(0)):
                break
        assert not any(o is busy_made[0] for o in gc.get_objects(0))  # collected, frozen

        live[0] = gcpolicy.YOUNG_FROM - 1
        await asyncio.sleep(gcpolicy.YOUNG_EVERY * 2)  # the schedule now looks rarely
        few_made = [Node() for _ in range(50)]
        await asyncio.sleep(gcpolicy.YOUNG_EVERY * 5)
        assert any(o is few_made[0] for o in gc.get_objects(0))  # nothing collected
    finally:
        task.cancel()


async def test_the_gateway_is_quiet_only_a_while_after_its_last_session(
    gateway: GatewayUnderTest,
) -> None:
    manager = gateway.gateway.sessions
    session_id = await start(gateway, headers=LONG)
    await tokens_when_running(gateway, session_id)
    assert manager.quiet_for() == 0.0  # a session is live
    manager.live[session_id].cancel("test_done")
    await gateway.final_record(session_id)
    for _ in range(100):
        if not manager.live:
            break
        await asyncio.sleep(0.01)
    assert 0.0 < manager.quiet_for() < gcpolicy.QUIET  # it has just ended
