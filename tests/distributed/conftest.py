"""The backends every contract suite runs against: in-process, and the real Redis on loopback.

Each test takes a key prefix of its own (``sluice-test-<pid>-<random>:``) and deletes its keys at
the end (SCAN and DEL by prefix; never a flush of the database). A "process" is a backplane
with connections of its own: in-process there is one, shared; on Redis each call opens another.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis

from sluice.config import BusSettings
from sluice.distributed.backplane import Backplane, open_backplane
from sluice.distributed.redis_backend import RedisLiveLog

REDIS_URL = os.environ.get("SLUICE_TEST_REDIS", "redis://127.0.0.1:6379/0")

OpenProcess = Callable[[], Awaitable[Backplane]]

#: a bounded wait for what must happen (a hang fails the test, a busy machine does not)
WAIT = 20.0


async def eventually(check: Callable[[], Awaitable[bool]], step: float = 0.02) -> None:
    """Wait until ``check()`` holds; fail the test if it has not within ``WAIT`` seconds."""
    for _ in range(int(WAIT / step)):
        if await check():
            return
        await asyncio.sleep(step)
    pytest.fail("the awaited condition never held")


async def delete_prefix(prefix: str) -> None:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis this machine runs; a clear failure (not a skip) when it does not answer."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"these tests need Redis at {REDIS_URL} (set SLUICE_TEST_REDIS to another): {exc}"
        )
    finally:
        client.close()
    return REDIS_URL


def new_prefix() -> str:
    return f"sluice-test-{os.getpid()}-{secrets.token_hex(4)}:"


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own, its keys deleted at the end."""
    prefix = new_prefix()
    yield prefix
    await delete_prefix(prefix)


@asynccontextmanager
async def processes(kind: str, redis_url: str | None) -> AsyncIterator[OpenProcess]:
    """Opens "processes" of a backend: ``memory``, ``redis``, or ``redis-py`` (Redis, the live
    log writing through redis-py's pipeline instead of its own connection)."""
    opened: list[Backplane] = []
    settings = BusSettings()
    if kind != "memory":
        settings = BusSettings(url=redis_url, prefix=new_prefix())

    async def open_one() -> Backplane:
        if settings.url is None and opened:
            return opened[0]
        plane = await open_backplane(settings)
        if kind == "redis-py":
            assert plane.link is not None
            await plane.log.close()
            plane.log = RedisLiveLog(plane.link, window=settings.append_window, direct=False)
        opened.append(plane)
        return plane

    try:
        yield open_one
    finally:
        for plane in opened:
            await plane.close()
        if settings.url is not None:
            await delete_prefix(settings.prefix)


@pytest.fixture(params=["memory", "redis"])
async def open_process(request: pytest.FixtureRequest) -> AsyncIterator[OpenProcess]:
    """Opens a "process" of the backend under test: its live log, control channel and bus."""
    url = None if request.param == "memory" else request.getfixturevalue("redis_url")
    async with processes(request.param, url) as open_one:
        yield open_one
