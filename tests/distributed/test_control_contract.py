"""One contract, every control channel: commands reach the owning node, leases expire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from sluice.distributed.control import CANCEL, RETRY, Command
from tests.distributed.conftest import WAIT, OpenProcess, eventually


async def next_command(commands: AsyncIterator[Command]) -> Command:
    async with asyncio.timeout(WAIT):
        return await anext(commands)


async def test_stop_from_another_process_reaches_the_owner(open_process: OpenProcess) -> None:
    owner = (await open_process()).control
    elsewhere = (await open_process()).control
    async with owner.listen("node-a") as commands:
        stop = Command(CANCEL, "op-1", "client_cancelled")
        assert await elsewhere.send("node-a", stop) is True
        assert await next_command(commands) == stop
        retry = Command(RETRY, "op-2")
        assert await elsewhere.send("node-a", retry) is True
        assert await next_command(commands) == retry


async def test_a_command_goes_only_to_its_node(open_process: OpenProcess) -> None:
    a = (await open_process()).control
    b = (await open_process()).control
    async with a.listen("node-a") as to_a, b.listen("node-b") as to_b, b.listen("node-a") as a2:
        await b.send("node-b", Command(CANCEL, "op-b", "deadline"))
        await b.send("node-a", Command(CANCEL, "op-a", "deadline"))
        assert (await next_command(to_a)).session_id == "op-a"
        assert (await next_command(a2)).session_id == "op-a"  # every listener of the node
        assert (await next_command(to_b)).session_id == "op-b"


async def test_a_command_to_a_node_nobody_listens_to_is_not_delivered(
    open_process: OpenProcess,
) -> None:
    control = (await open_process()).control
    assert await control.send("node-gone", Command(CANCEL, "op-1", "client_cancelled")) is False
    async with control.listen("node-a"):
        pass
    assert await control.send("node-a", Command(CANCEL, "op-1", "client_cancelled")) is False


async def test_a_lease_lasts_while_it_is_renewed(open_process: OpenProcess) -> None:
    node = (await open_process()).control
    watcher = (await open_process()).control
    assert await watcher.alive("node-a") is False
    await node.heartbeat("node-a", ttl=60)
    assert await watcher.alive("node-a") is True
    assert "node-a" not in await watcher.expired_nodes()


async def test_a_lease_expires_when_heartbeats_stop(open_process: OpenProcess) -> None:
    dying = (await open_process()).control
    survivor = (await open_process()).control
    await survivor.heartbeat("node-b", ttl=60)
    await dying.heartbeat("node-a", ttl=0.2)

    async def dead() -> bool:
        return not await survivor.alive("node-a")

    await eventually(dead)
    assert await survivor.expired_nodes() == ["node-a"]
    assert await survivor.alive("node-b") is True
    # Two survivors race to close its sessions: one wins.
    outcomes = await asyncio.gather(survivor.forget("node-a"), dying.forget("node-a"))
    assert sorted(outcomes) == [False, True]
    assert await survivor.expired_nodes() == []


async def test_a_renewed_lease_is_no_longer_expired(open_process: OpenProcess) -> None:
    control = (await open_process()).control
    await control.heartbeat("node-a", ttl=0.05)

    async def expired() -> bool:
        return "node-a" in await control.expired_nodes()

    await eventually(expired)
    await control.heartbeat("node-a", ttl=60)  # it was only slow
    assert await control.alive("node-a") is True
    assert await control.expired_nodes() == []


def test_a_command_round_trips_through_json_and_junk_is_refused() -> None:
    command = Command(CANCEL, "op-1", "deadline")
    assert Command.from_json(command.to_json()) == command
    assert Command.from_json({"kind": "explode", "session_id": "op-1"}) is None
    assert Command.from_json({"kind": "cancel", "session_id": 3}) is None
    assert Command.from_json(["cancel"]) is None


async def test_a_handed_over_request_is_taken_once_by_any_process(
    open_process: OpenProcess,
) -> None:
    owner = (await open_process()).control
    survivors = [(await open_process()).control for _ in range(2)]
    await owner.hand_over("op-1", b'{"prompt": "hi"}', ttl=60)
    taken = await asyncio.gather(*(s.take("op-1") for s in survivors))
    assert sorted(taken, key=lambda t: t is None) == [b'{"prompt": "hi"}', None]
    assert await owner.take("op-1") is None


async def test_a_withdrawn_or_expired_request_is_not_taken(open_process: OpenProcess) -> None:
    control = (await open_process()).control
    other = (await open_process()).control
    await control.hand_over("op-1", b"a", ttl=60)
    await control.withdraw("op-1")
    assert await other.take("op-1") is None
    await control.hand_over("op-2", b"b", ttl=0.1)
    await asyncio.sleep(0.3)
    assert await other.take("op-2") is None
