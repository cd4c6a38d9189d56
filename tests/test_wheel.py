"""The deadline wheel: never early, cancellable, one owner's failure kept to itself."""

from __future__ import annotations

import asyncio

import pytest

from sluice.wheel import RESOLUTION, wheel


async def test_a_deadline_fires_at_or_after_its_time_and_only_once() -> None:
    loop = asyncio.get_running_loop()
    fired: list[tuple[str, float]] = []
    due = loop.time() + 0.03
    wheel().call_at(due, "owner", lambda owner: fired.append((owner, loop.time())))
    await asyncio.sleep(0.03 + 3 * RESOLUTION)
    [(owner, at)] = fired  # called once, with its owner
    assert owner == "owner" and at >= due - 0.002  # the loop's clock resolution
    assert len(wheel()) == 0


async def test_owners_share_the_loop_timer_of_their_slot_and_each_keeps_its_own_callback() -> None:
    fired: list[str] = []
    w = wheel()
    slots = {w.call_later(0.01, name, lambda owner: fired.append(owner)) for name in "abc"}
    assert len(slots) == 1 and len(w) == 3
    await asyncio.sleep(0.01 + 3 * RESOLUTION)
    assert sorted(fired) == ["a", "b", "c"]


async def test_a_cancelled_deadline_never_fires_and_holds_no_reference() -> None:
    fired: list[str] = []
    w = wheel()
    slot = w.call_later(0.01, "gone", lambda owner: fired.append(owner))
    w.call_later(0.01, "kept", lambda owner: fired.append(owner))
    w.cancel(slot, "gone")
    assert len(w) == 1
    await asyncio.sleep(0.01 + 3 * RESOLUTION)
    assert fired == ["kept"]


async def test_a_failing_callback_does_not_cost_the_others_their_deadline() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    fired: list[str] = []
    w = wheel()

    def broken(_owner: object) -> None:
        raise RuntimeError("bug")

    w.call_later(0.01, "broken", broken)
    w.call_later(0.01, "fine", lambda owner: fired.append(owner))
    await asyncio.sleep(0.01 + 3 * RESOLUTION)
    assert fired == ["fine"]
    assert [type(c["exception"]) for c in reported] == [RuntimeError]


async def test_each_loop_has_its_own_wheel() -> None:
    mine = wheel()
    other = await asyncio.to_thread(lambda: asyncio.run(_wheel_of_a_new_loop()))
    assert other is not mine and wheel() is mine


async def _wheel_of_a_new_loop() -> object:
    return wheel()


def test_there_is_no_wheel_outside_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        wheel()
