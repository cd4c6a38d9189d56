"""The live log's own Redis connection: RESP packed and parsed without I/O, replies split
anywhere, under uvloop as the gateway runs, and again after the connection is cut."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
import uvloop

from sluice.config import BusSettings
from sluice.distributed import BusError
from sluice.distributed.backplane import open_backplane
from sluice.distributed.redis_backend import RedisLiveLog
from sluice.distributed.resp import RespError, _Incomplete, pack, parse_reply
from tests.distributed.conftest import delete_prefix, eventually, new_prefix

REPLIES = (
    b":42\r\n+OK\r\n-NOSCRIPT No matching script\r\n$5\r\nhello\r\n$-1\r\n*2\r\n:1\r\n$0\r\n\r\n"
)


def parse_all(buffer: bytes) -> list[object]:
    out, pos = [], 0
    while pos < len(buffer):
        reply, pos = parse_reply(buffer, pos)
        out.append(reply)
    return out


def test_every_reply_kind_parses() -> None:
    replies = parse_all(REPLIES)
    assert replies[:2] == [42, "OK"]
    assert isinstance(replies[2], RespError) and replies[2].code == "NOSCRIPT"
    assert replies[3:] == [b"hello", None, [1, b""]]


@pytest.mark.parametrize("cut", range(1, len(REPLIES)))
def test_a_reply_cut_anywhere_is_incomplete_not_wrong(cut: int) -> None:
    head = REPLIES[:cut]
    pos, got = 0, []
    while True:
        try:
            reply, pos = parse_reply(head, pos)
        except _Incomplete:
            break
        got.append(reply)
    # What parsed before the cut is exactly a prefix of the whole.
    whole = parse_all(REPLIES)
    assert [str(r) for r in got] == [str(r) for r in whole[: len(got)]]
    assert len(got) < len(whole)


def test_junk_is_refused() -> None:
    with pytest.raises(ValueError, match="not a RESP reply"):
        parse_reply(b"?what\r\n", 0)
    with pytest.raises(ValueError, match="too large"):
        parse_reply(b"$999999999\r\n", 0)


def test_commands_are_packed_as_bulk_strings() -> None:
    assert pack(["SET", b"k\r\n", 7]) == b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$1\r\n7\r\n"


def test_the_live_log_writes_and_reads_under_uvloop(redis_url: str) -> None:
    async def main() -> None:
        prefix = new_prefix()
        plane = await open_backplane(BusSettings(url=redis_url, prefix=prefix))
        try:
            assert isinstance(plane.log, RedisLiveLog)
            plane.log.start("op-1", "node-a")
            for seq in range(1, 40, 3):
                plane.log.append("op-1", [(s, "text", {"text": str(s)}) for s in (seq, seq + 1)])
            await plane.log.finish("op-1", {"state": "complete"}, ttl=60)
            events = await plane.log.read("op-1")
            assert [seq for seq, _, _ in events] == [s for x in range(1, 40, 3) for s in (x, x + 1)]
        finally:
            await plane.close()
            await delete_prefix(prefix)

    uvloop.run(main())


async def test_the_live_log_reconnects_after_its_connection_is_cut(
    redis_url: str, redis_prefix: str
) -> None:
    plane = await open_backplane(BusSettings(url=redis_url, prefix=redis_prefix))
    raw = aioredis.Redis.from_url(redis_url)
    try:
        log = plane.log
        assert isinstance(log, RedisLiveLog) and log._direct is not None
        await log.start("op-1", "node-a")
        await log.append("op-1", [(1, "text", {"text": "a"})])
        protocol = log._direct._protocol
        assert protocol is not None and protocol.transport is not None
        host, port = protocol.transport.get_extra_info("sockname")[:2]
        assert await raw.client_kill(f"{host}:{port}")
        seq = [1]

        async def written() -> bool:
            seq[0] += 1
            try:
                await log.append("op-1", [(seq[0], "text", {"text": "b"})])
            except BusError:
                return False
            return True

        await eventually(written)
        stored = [s for s, _, _ in await log.read("op-1")]
        assert stored[0] == 1 and stored[-1] == seq[0]
    finally:
        await raw.aclose()
        await plane.close()
