"""The push contract over a pulled body (``PulledStream``), the maintained clients' shared
driver: what a transport left unmapped still reaches the session as an ``UpstreamError``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sluice.errors import UpstreamBroken
from sluice.transports.pulled import PulledStream, kept_headers


def pulled(chunks: AsyncIterator[bytes], closed: list[str]) -> PulledStream:
    return PulledStream(
        200, {}, chunks, lambda: closed.append("close"), lambda: closed.append("release")
    )


async def test_an_unmapped_error_of_the_library_ends_as_upstream_broken() -> None:
    class LibraryError(Exception):
        pass

    async def chunks() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        raise LibraryError("the library's own")

    closed: list[str] = []
    stream = pulled(chunks(), closed)
    pieces: list[bytes] = []
    with pytest.raises(UpstreamBroken, match="LibraryError: the library's own"):
        await stream.start(pieces.append)
    assert pieces == [b"data: 1\n\n"] and closed == ["close"]
    stream.close()
    stream.release()
    assert closed == ["close"]  # closing twice, or releasing after, is harmless


async def test_finish_ends_the_result_and_later_pieces_are_dropped() -> None:
    more = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"a"
        await more.wait()
        yield b"b"

    closed: list[str] = []
    stream = pulled(chunks(), closed)
    pieces: list[bytes] = []

    def sink(piece: bytes) -> None:
        pieces.append(piece)
        stream.finish()
        more.set()

    await stream.start(sink)
    await asyncio.sleep(0)
    stream.release()
    assert pieces == [b"a"] and closed == ["release"]


def test_kept_headers_are_lowercased_joined_and_filtered() -> None:
    headers = kept_headers(
        [
            ("Content-Type", "text/event-stream"),
            ("X-Request-Id", "a"),
            ("x-request-id", "b"),
            ("Set-Cookie", "s=1"),
        ]
    )
    assert headers == {"content-type": "text/event-stream", "x-request-id": "a, b"}
