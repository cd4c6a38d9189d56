"""A pipelined Redis connection for the live log's writes: commands packed in one buffer, their
replies parsed in the protocol's ``data_received``, no task per command.

redis-py runs each command through a connection pool, ``wait_for`` timeouts and a reader
coroutine: some five turns of the event loop per command, about 250 µs of CPU per write on this
machine against 80 µs for the socket itself (``scripts/live_log_cpu.py``). The live log writes
once per upstream read of a quiet stream, so that cost is a relayed chunk's. This connection
sits behind the same ``RedisLiveLog`` as redis-py's pipeline (``direct=False``), and the live
log's contract suite runs against both.

It speaks RESP2 for plain ``redis://`` and ``unix://`` URLs (``rediss://`` takes redis-py's
path). No I/O in the parser: ``parse_reply`` takes bytes and a position.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

from redis.connection import parse_url

from sluice.distributed import BusError

#: a reply's size past which the connection is dropped (the live log's replies are numbers)
MAX_REPLY = 1 << 20


class RespError(Exception):
    """An error reply (``-ERR …``, ``-NOSCRIPT …``), returned in place of its command's reply."""

    @property
    def code(self) -> str:
        return str(self).split(" ", 1)[0]


class _Incomplete(Exception):
    """The buffer ends inside a reply."""


def pack(command: Sequence[str | bytes | int]) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        if isinstance(arg, str):
            raw = arg.encode()
        elif isinstance(arg, int):
            raw = b"%d" % arg
        else:
            raw = arg
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


def parse_reply(buffer: bytes | bytearray, pos: int) -> tuple[Any, int]:
    """The reply that starts at ``pos`` and the position after it; raises ``_Incomplete``."""
    end = buffer.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line = buffer[pos : pos + 1], bytes(buffer[pos + 1 : end])
    pos = end + 2
    if kind == b":":
        return int(line), pos
    if kind == b"+":
        return line.decode(), pos
    if kind == b"-":
        return RespError(line.decode(errors="replace")), pos
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, pos
        if size > MAX_REPLY:
            raise ValueError("reply too large")
        if len(buffer) < pos + size + 2:
            raise _Incomplete
        return bytes(buffer[pos : pos + size]), pos + size + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, pos
        items = []
        for _ in range(count):
            item, pos = parse_reply(buffer, pos)
            items.append(item)
        return items, pos
    raise ValueError(f"not a RESP reply: {bytes(kind)!r}")


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        #: per pipeline sent and not yet answered: how many replies, its future, those so far
        self._waiting: deque[tuple[int, asyncio.Future[list[Any]], list[Any]]] = deque()
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, payload: bytes, replies: int) -> asyncio.Future[list[Any]]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if self.lost is not None or self.transport is None or self.transport.is_closing():
            future.set_exception(BusError(f"redis: connection lost: {self.lost}"))
            return future
        self._waiting.append((replies, future, []))
        self.transport.write(payload)
        return future

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        pos = 0
        try:
            while self._waiting:
                reply, pos = parse_reply(buffer, pos)
                count, future, got = self._waiting[0]
                got.append(reply)
                if len(got) == count:
                    self._waiting.popleft()
                    if not future.done():
                        future.set_result(got)
        except _Incomplete:
            pass
        except ValueError as exc:
            self._fail(BusError(f"redis: unreadable reply: {exc}"))
            if self.transport is not None:
                self.transport.abort()
            return
        del buffer[:pos]
        if len(buffer) > MAX_REPLY:
            self._fail(BusError("redis: reply too large"))
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("closed")
        self._fail(BusError(f"redis: connection lost: {self.lost}"))

    def _fail(self, error: BusError) -> None:
        waiting, self._waiting = self._waiting, deque()
        for _, future, _ in waiting:
            if not future.done():
                future.set_exception(error)


class RespConnection:
    """One connection, opened on first use and again after it is lost. ``execute`` sends
    commands in one write and returns their replies in order (errors as ``RespError``)."""

    def __init__(self, url: str, connect_timeout: float, reply_timeout: float) -> None:
        options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        if "connection_class" in options and "path" not in options:
            raise ValueError("only redis:// and unix:// URLs take the direct connection")
        self._options = options
        self._connect_timeout = connect_timeout
        self._reply_timeout = reply_timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        options = self._options
        try:
            async with asyncio.timeout(self._connect_timeout):
                if "path" in options:
                    _, protocol = await loop.create_unix_connection(_Protocol, options["path"])
                else:
                    _, protocol = await loop.create_connection(
                        _Protocol, options.get("host", "localhost"), options.get("port", 6379)
                    )
        except OSError as exc:  # TimeoutError included
            raise BusError(
                f"redis: connecting failed: {exc.strerror or type(exc).__name__}"
            ) from exc
        hello: list[list[str | bytes | int]] = []
        if options.get("password"):
            user = options.get("username")
            hello.append(
                ["AUTH", user, options["password"]] if user else ["AUTH", options["password"]]
            )
        if options.get("db"):
            hello.append(["SELECT", int(options["db"])])
        if hello:
            replies = await self._wait(protocol.send(b"".join(map(pack, hello)), len(hello)))
            for reply in replies:
                if isinstance(reply, RespError):
                    if protocol.transport is not None:
                        protocol.transport.abort()
                    raise BusError(f"redis: the connection was refused: {reply.code}")
        return protocol

    async def _wait(self, future: asyncio.Future[list[Any]]) -> list[Any]:
        try:
            async with asyncio.timeout(self._reply_timeout):
                return await future
        except TimeoutError as exc:
            await self.close()
            raise BusError("redis: no reply in time") from exc

    async def execute(self, commands: Sequence[Sequence[str | bytes | int]]) -> list[Any]:
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            if self._connecting is None:
                self._connecting = asyncio.Lock()
            async with self._connecting:
                protocol = self._protocol
                if protocol is None or protocol.lost is not None:
                    protocol = self._protocol = await self._connect()
        payload = b"".join(map(pack, commands))
        return await self._wait(protocol.send(payload, len(commands)))

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
