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
    monkeypatch.setattr(gcpolicy, "FULL_WHEN_IDLE_AFTER", 0.0)
    quiet = [0.0]
    runs: list[int] = []

    def full_collection() -> int:
        runs.append(1)
        return 0

    monkeypatch.setattr(gcpolicy, "full_collection", full_collection)
    task = asyncio.ensure_future(gcpolicy.collect_when_quiet(lambda: quiet[0]))
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


async def test_a_first_token_collects_young_objects_after_it_at_most_every_interval(
    tuned: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a steady load the net allocation count stays under the threshold (frees of
    frozen objects count too, and they come from sessions ending, as often as new ones
    start), so the young generation would grow unexamined: a session's first token has it
    collected in the loop's next turn, unless a collection just ran."""
    clock = [100.0]
    monkeypatch.setattr(gcpolicy.time, "monotonic", lambda: clock[0])
    young = gcpolicy.YoungCollections()

    def still_young(obj: object) -> bool:
        return any(o is obj for o in gc.get_objects(0))

    made = [Node() for _ in range(50)]  # far under the threshold of 5,000
    young.first_token(None)
    assert still_young(made[0])  # not in the hook's own call: the token is written first
    await asyncio.sleep(0)
    assert not still_young(made[0])  # collected, and frozen

    clock[0] += gcpolicy.YOUNG_EVERY / 2
    soon_made = [Node() for _ in range(50)]
    young.first_token(None)
    await asyncio.sleep(0)
    assert still_young(soon_made[0])  # one ran a moment ago

    clock[0] += gcpolicy.YOUNG_EVERY
    young.first_token(None)
    await asyncio.sleep(0)
    assert not still_young(soon_made[0])


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
