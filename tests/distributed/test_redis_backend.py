"""What only the Redis backend has: its key layout, TTLs, write windows, and its failures
(Redis gone: every interface raises ``BusError``, never a redis-py exception)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator

import orjson
import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from sluice.bench.proc import free_port
from sluice.config import BusSettings
from sluice.distributed import BusError
from sluice.distributed.backplane import Backplane, open_backplane
from sluice.distributed.control import CANCEL, Command
from tests.distributed.conftest import WAIT, eventually


@pytest.fixture
async def plane(redis_url: str, redis_prefix: str) -> AsyncIterator[Backplane]:
    plane = await open_backplane(BusSettings(url=redis_url, prefix=redis_prefix))
    try:
        yield plane
    finally:
        await plane.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def keys_under(raw: aioredis.Redis, prefix: str) -> set[str]:
    return {key.decode() async for key in raw.scan_iter(match=prefix + "*")}


async def test_a_sessions_keys_share_a_hash_tag_under_the_prefix(
    plane: Backplane, raw: aioredis.Redis, redis_prefix: str
) -> None:
    P = redis_prefix
    await plane.log.start("op-1", "node-a")
    await plane.log.append("op-1", [(1, "text", {"text": "a"})])
    await plane.control.heartbeat("node-a", ttl=60)
    assert await keys_under(raw, P) == {
        f"{P}{{op-1}}:events",
        f"{P}{{op-1}}:state",
        f"{P}node:{{node-a}}:sessions",
        f"{P}nodes",
    }
    slots = {key_slot(f"{P}{{op-1}}:{name}".encode()) for name in ("events", "state")}
    assert len(slots) == 1 and key_slot(f"{P}{{op-2}}:events".encode()) not in slots
    await plane.log.finish("op-1", {"state": "complete"}, ttl=60)
    # The node's set of live sessions empties, and Redis drops an empty set.
    assert f"{P}node:{{node-a}}:sessions" not in await keys_under(raw, P)


async def test_live_keys_expire_after_the_live_ttl_and_finish_shortens_it(
    redis_url: str, redis_prefix: str, raw: aioredis.Redis
) -> None:
    settings = BusSettings(url=redis_url, prefix=redis_prefix, live_ttl=3600)
    plane = await open_backplane(settings)
    try:
        events, state = f"{redis_prefix}{{op-1}}:events", f"{redis_prefix}{{op-1}}:state"
        await plane.log.start("op-1", "node-a")
        await plane.log.append("op-1", [(1, "text", {"text": "a"})])
        for key in (events, state):
            assert 3_000_000 < await raw.pttl(key) <= 3_600_000
        await plane.log.finish("op-1", {"state": "complete"}, ttl=30)
        for key in (events, state):
            assert 0 < await raw.pttl(key) <= 30_000
    finally:
        await plane.close()


async def test_a_write_window_is_one_stream_entry_per_session(
    plane: Backplane, raw: aioredis.Redis, redis_prefix: str
) -> None:
    log = plane.log
    log.start("op-1", "node-a")
    writes = [log.append("op-1", [(seq, "text", {"text": str(seq)})]) for seq in range(1, 21)]
    await asyncio.gather(*writes)
    events = f"{redis_prefix}{{op-1}}:events"
    entries = await raw.xrange(events)
    assert [entry_id for entry_id, _ in entries] == [b"0-20"]
    stored = orjson.loads(entries[0][1][b"e"])
    assert [seq for seq, _, _ in stored] == list(range(1, 21))
    await log.finish("op-1", {"state": "complete"}, ttl=60)
    entries = await raw.xrange(events)
    assert len(entries) == 2 and entries[1][1] == {b"end": b"1"}


async def test_junk_on_a_control_channel_is_ignored(
    plane: Backplane, raw: aioredis.Redis, redis_prefix: str
) -> None:
    async with plane.control.listen("node-a") as commands:
        channel = f"{redis_prefix}node:{{node-a}}:control"
        await raw.publish(channel, b"not json")
        await raw.publish(channel, b'{"kind": "explode", "session_id": "op-1"}')
        await plane.control.send("node-a", Command(CANCEL, "op-1", "deadline"))
        async with asyncio.timeout(WAIT):
            assert await anext(commands) == Command(CANCEL, "op-1", "deadline")


# -- Redis gone ---------------------------------------------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis of this test's own, on a free port, that the test may stop."""
    port = free_port()
    server = subprocess.Popen(
        [*("redis-server", "--port", str(port), "--bind", "127.0.0.1"), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        yield f"redis://127.0.0.1:{port}/0", server
    finally:
        server.kill()
        server.wait()


async def test_opening_a_backplane_without_redis_is_a_bus_error() -> None:
    settings = BusSettings(url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(BusError, match=r"redis: ping failed: .*connecting"):
        await open_backplane(settings)


async def test_every_interface_raises_bus_error_once_redis_is_gone(
    own_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, server = own_redis
    client = aioredis.Redis.from_url(url)

    async def answers() -> bool:
        try:
            return bool(await client.ping())
        except (aioredis.RedisError, OSError):
            return False

    await eventually(answers)
    await client.aclose()
    plane = await open_backplane(BusSettings(url=url, prefix="t:"))
    try:
        await plane.log.start("op-1", "node-a")
        await plane.log.append("op-1", [(1, "text", {"text": "a"})])
        async with plane.bus.subscribe("ops") as messages:
            server.kill()
            server.wait()
            with pytest.raises(BusError):
                await plane.log.append("op-1", [(2, "text", {"text": "b"})])
            for call in (
                plane.log.read("op-1"),
                plane.log.lookup("op-1"),
                plane.log.owned_by("node-a"),
                plane.log.finish("op-1", {}, ttl=1),
                plane.control.send("node-a", Command(CANCEL, "op-1", "deadline")),
                plane.control.heartbeat("node-a", ttl=5),
                plane.control.expired_nodes(),
                plane.bus.publish("ops", {"seq": 1}),
            ):
                with pytest.raises(BusError):
                    await call
            with pytest.raises(BusError):
                await anext(aiter(plane.log.follow("op-1")))
            with pytest.raises(BusError):
                async with asyncio.timeout(WAIT):
                    await anext(messages)
    finally:
        await plane.close()
