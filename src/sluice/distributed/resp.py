"""A pipelined Redis connection for the live log's writes: commands packed in one buffer, their
replies parsed in the protocol's ``data_received``, no task per command.

redis-py runs each command through a connection pool, ``wait_for`` timeouts and a reader
coroutine: some five turns of the event loop per command. A live log write through it cost
380 to 520 µs of CPU at one paced stream, through this connection 130 to 160 µs, most of it the
wake-up the reply brings (``scripts/live_log_cpu.py``; docs/benchmarks.md). The live log writes
once per upstream read of a quiet stream, so that cost is a relayed chunk's. This connection
sits behind the same ``RedisLiveLog`` as redis-py's pipeline (``direct=False``), and the live
log's contract suite runs against both.

It speaks RESP2 for plain ``redis://`` and ``unix://`` URLs (``rediss://`` takes redis-py's
path). No I/O in the parser: ``parse_reply`` takes bytes and a position.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
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


#: what a pipeline's sender is told: the replies in order, or why there are none
Answer = Callable[["list[Any] | BusError"], None]


class _Pending:
    __slots__ = ("answer", "count", "got", "timer")

    def __init__(self, count: int, answer: Answer) -> None:
        self.count = count
        self.answer = answer
        self.got: list[Any] = []
        self.timer: asyncio.TimerHandle | None = None


class _Protocol(asyncio.Protocol):
    def __init__(self, reply_timeout: float) -> None:
        self.transport: asyncio.Transport | None = None
        self._reply_timeout = reply_timeout
        self._buffer = bytearray()
        #: the pipelines sent and not yet answered, oldest first
        self._waiting: deque[_Pending] = deque()
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    @property
    def usable(self) -> bool:
        return self.lost is None and self.transport is not None and not self.transport.is_closing()

    def send(self, payload: bytes, count: int, answer: Answer) -> None:
        if not self.usable or self.transport is None:
            answer(BusError(f"redis: connection lost: {self.lost}"))
            return
        pending = _Pending(count, answer)
        pending.timer = asyncio.get_running_loop().call_later(
            self._reply_timeout, self._expire, pending
        )
        self._waiting.append(pending)
        self.transport.write(payload)

    def _expire(self, pending: _Pending) -> None:
        if pending in self._waiting:
            self._abort(BusError("redis: no reply in time"))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        pos = 0
        waiting = self._waiting
        try:
            while waiting:
                reply, pos = parse_reply(buffer, pos)
                pending = waiting[0]
                pending.got.append(reply)
                if len(pending.got) == pending.count:
                    waiting.popleft()
                    if pending.timer is not None:
                        pending.timer.cancel()
                    pending.answer(pending.got)
        except _Incomplete:
            pass
        except ValueError as exc:
            self._abort(BusError(f"redis: unreadable reply: {exc}"))
            return
        del buffer[:pos]
        if len(buffer) > MAX_REPLY:
            self._abort(BusError("redis: reply too large"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("closed")
        self._fail(BusError(f"redis: connection lost: {self.lost}"))

    def _abort(self, error: BusError) -> None:
        self.lost = error
        self._fail(error)
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, error: BusError) -> None:
        waiting, self._waiting = self._waiting, deque()
        for pending in waiting:
            if pending.timer is not None:
                pending.timer.cancel()
            pending.answer(error)


class RespConnection:
    """One connection, opened by ``connect`` (again after it is lost). ``send`` writes commands
    in one buffer at once and calls back with their replies, in order, errors among them as
    ``RespError``; ``execute`` is the same, awaited."""

    def __init__(self, url: str, connect_timeout: float, reply_timeout: float) -> None:
        options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        if "connection_class" in options and "path" not in options:
            raise ValueError("only redis:// and unix:// URLs take the direct connection")
        self._options = options
        self._connect_timeout = connect_timeout
        self._reply_timeout = reply_timeout
        self._protocol: _Protocol | None = None

    @property
    def ready(self) -> bool:
        return self._protocol is not None and self._protocol.usable

    async def connect(self) -> None:
        """Open the connection (AUTH and SELECT as the URL says); raises ``BusError``."""
        loop = asyncio.get_running_loop()
        options = self._options
        timeout = self._reply_timeout

        def protocol() -> _Protocol:
            return _Protocol(timeout)

        try:
            async with asyncio.timeout(self._connect_timeout):
                if "path" in options:
                    _, made = await loop.create_unix_connection(protocol, options["path"])
                else:
                    _, made = await loop.create_connection(
                        protocol, options.get("host", "localhost"), options.get("port", 6379)
                    )
        except OSError as exc:  # TimeoutError included
            raise BusError(
                f"redis: connecting failed: {exc.strerror or type(exc).__name__}"
            ) from exc
        old, self._protocol = self._protocol, made
        if old is not None and old.transport is not None:
            old.transport.close()
        hello: list[list[str | bytes | int]] = []
        if options.get("password"):
            user, password = options.get("username"), options["password"]
            hello.append(["AUTH", user, password] if user else ["AUTH", password])
        if options.get("db"):
            hello.append(["SELECT", int(options["db"])])
        if hello:
            for reply in await self.execute(hello):
                if isinstance(reply, RespError):
                    await self.close()
                    raise BusError(f"redis: the connection was refused: {reply.code}")

    def send(self, commands: Sequence[Sequence[str | bytes | int]], answer: Answer) -> None:
        """Write ``commands`` now (the connection must be ``ready``)."""
        protocol = self._protocol
        if protocol is None:
            answer(BusError("redis: not connected"))
            return
        protocol.send(b"".join(map(pack, commands)), len(commands), answer)

    async def execute(self, commands: Sequence[Sequence[str | bytes | int]]) -> list[Any]:
        if not self.ready:
            await self.connect()
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

        def answer(outcome: list[Any] | BusError) -> None:
            if future.done():
                return
            if isinstance(outcome, BusError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        self.send(commands, answer)
        return await future

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
