"""One contract, every limits backend: ceilings of live sessions and windows of requests and
tokens, counted alike by every process that shares them."""

from __future__ import annotations

import asyncio

from tests.distributed.conftest import OpenProcess


async def test_a_ceiling_admits_up_to_its_number_across_processes(
    open_process: OpenProcess,
) -> None:
    a = (await open_process()).limits
    b = (await open_process()).limits
    assert await a.acquire("op-1", [("gateway", 2)], lease=60) is None
    assert await b.acquire("op-2", [("gateway", 2)], lease=60) is None
    assert await a.acquire("op-3", [("gateway", 2)], lease=60) == 0
    assert await b.count("gateway") == 2
    await a.release("op-1", ["gateway"])
    assert await b.acquire("op-3", [("gateway", 2)], lease=60) is None


async def test_a_session_is_counted_in_all_its_counters_or_none(open_process: OpenProcess) -> None:
    limits = (await open_process()).limits
    assert await limits.acquire("op-1", [("gateway", 10), ("key:a", 1)], lease=60) is None
    # the key's ceiling refuses: the gateway's counter is not touched either
    assert await limits.acquire("op-2", [("gateway", 10), ("key:a", 1)], lease=60) == 1
    assert await limits.count("gateway") == 1
    # another key is not held back
    assert await limits.acquire("op-3", [("gateway", 10), ("key:b", 1)], lease=60) is None
    assert await limits.count("gateway") == 2


async def test_a_ceiling_of_zero_counts_without_limit(open_process: OpenProcess) -> None:
    limits = (await open_process()).limits
    for n in range(5):
        assert await limits.acquire(f"op-{n}", [("gateway", 0)], lease=60) is None
    assert await limits.count("gateway") == 5


async def test_a_lease_not_renewed_stops_counting(open_process: OpenProcess) -> None:
    dying = (await open_process()).limits
    other = (await open_process()).limits
    assert await dying.acquire("op-1", [("gateway", 1)], lease=0.2) is None
    assert await dying.acquire("op-2", [("gateway", 1)], lease=0.2) == 0
    await asyncio.sleep(0.5)  # the owner died: nothing renews its lease
    assert await other.count("gateway") == 0
    assert await other.acquire("op-2", [("gateway", 1)], lease=60) is None


async def test_a_renewed_lease_keeps_counting(open_process: OpenProcess) -> None:
    limits = (await open_process()).limits
    assert await limits.acquire("op-1", [("gateway", 1), ("key:a", 1)], lease=0.3) is None
    for _ in range(4):
        await asyncio.sleep(0.15)
        await limits.renew([("op-1", ["gateway", "key:a"])], lease=0.3)
    assert await limits.count("gateway") == 1 and await limits.count("key:a") == 1
    # renewing a released session does not count it again
    await limits.release("op-1", ["gateway", "key:a"])
    await limits.renew([("op-1", ["gateway", "key:a"])], lease=60)
    assert await limits.count("gateway") == 0


async def test_requests_beyond_the_windows_limit_wait_for_the_oldest(
    open_process: OpenProcess,
) -> None:
    a = (await open_process()).limits
    b = (await open_process()).limits
    assert await a.hit("rpm:key-a", limit=2) is None
    assert await b.hit("rpm:key-a", limit=2) is None
    wait = await a.hit("rpm:key-a", limit=2)
    assert wait is not None and 0 < wait <= 60
    assert await b.hit("rpm:key-b", limit=2) is None  # another key's window


async def test_a_window_forgets_what_is_older_than_it(open_process: OpenProcess) -> None:
    limits = (await open_process()).limits
    assert await limits.hit("rpm:k", limit=1, window=0.2) is None
    assert await limits.hit("rpm:k", limit=1, window=0.2) is not None
    await asyncio.sleep(0.4)
    assert await limits.hit("rpm:k", limit=1, window=0.2) is None


async def test_tokens_added_by_any_process_are_summed_within_the_window(
    open_process: OpenProcess,
) -> None:
    a = (await open_process()).limits
    b = (await open_process()).limits
    await a.add("tpm:k", 120)
    await b.add("tpm:k", 30)
    await b.add("tpm:k", 30)  # the same amount twice counts twice
    assert await a.total("tpm:k") == 180
    assert await b.total("tpm:other") == 0
    await a.add("tpm:short", 5, window=0.2)
    await asyncio.sleep(0.4)
    assert await a.total("tpm:short", window=0.2) == 0
