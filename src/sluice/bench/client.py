"""The load generator's side of one stream: a raw asyncio HTTP/1.1 client that sends one POST
and timestamps every SSE frame as it arrives.

Decoding is split the usual way: ``ChunkedDecoder`` (HTTP chunked transfer coding → body
bytes) and ``FrameSplitter`` (body bytes → SSE frames) do no I/O and take bytes split
anywhere; ``StreamClient`` is the protocol that feeds them. Each ``data_received`` reads the
clock once, and every frame it completes carries that time: the frame arrived when its last
byte did. Frames are kept as bytes; their meaning is read after the stream (``stats``), not in
the I/O loop.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import orjson

from sluice.bench.stats import StreamRecord

_MAX_HEAD = 64 * 1024


class ChunkedDecoder:
    """HTTP/1.1 chunked transfer coding (RFC 9112, 7.1) → the body; trailers are ignored.

    ``decode()`` returns the body bytes the input completes, ``done`` turns true at the last
    chunk (``0``). Input may be split anywhere, inside a size line or its CRLF included.
    """

    __slots__ = ("_pending", "_remaining", "_skip", "done")

    def __init__(self) -> None:
        self._pending = b""  # an unfinished chunk-size line
        self._remaining = 0  # bytes of the current chunk's data still to come
        self._skip = 0  # bytes of the CRLF after a chunk's data still to skip
        self.done = False

    def decode(self, data: bytes) -> bytes:
        if self._pending:
            data = self._pending + data
            self._pending = b""
        out: list[bytes] = []
        pos, size = 0, len(data)
        while pos < size and not self.done:
            if self._remaining:
                take = min(self._remaining, size - pos)
                out.append(data[pos : pos + take])
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._skip = 2
            elif self._skip:
                take = min(self._skip, size - pos)
                pos += take
                self._skip -= take
            else:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    self._pending = data[pos:]
                    break
                # chunk-size [ chunk-ext ] CRLF
                length = int(data[pos:eol].partition(b";")[0].strip(), 16)
                pos = eol + 2
                if length == 0:
                    self.done = True
                else:
                    self._remaining = length
        if len(out) == 1:
            return out[0]
        return b"".join(out)


class FrameSplitter:
    """Body bytes → SSE frames (the lines of one event, without the blank line that ends it).

    A frame ends at a blank line; lines end with LF, CRLF or CR (WHATWG "Parsing an event
    stream"). A CR at the end of the input is held back, since an LF may follow it.
    """

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._tail + data if self._tail else data
        if b"\r" in buf:
            held = b""
            if buf.endswith(b"\r"):
                buf, held = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            frames = buf.split(b"\n\n")
            self._tail = frames.pop() + held
        else:
            frames = buf.split(b"\n\n")
            self._tail = frames.pop()
        return [frame for frame in frames if frame.strip(b"\n")]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one format's streams are requested: ``base_url`` as an SDK takes it (``.../v1``)."""

    host: str
    port: int
    path: str
    fmt: str

    @classmethod
    def from_base_url(cls, base_url: str, fmt: str) -> Endpoint:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{base_url!r}: the benchmark speaks plain http:// only")
        suffix = "/messages" if fmt == "messages" else "/chat/completions"
        return cls(parts.hostname, parts.port or 80, parts.path.rstrip("/") + suffix, fmt)

    def request(self, model: str) -> bytes:
        """The whole request: a streaming turn for ``model``, with the headers both APIs take."""
        body: dict[str, object] = {
            "model": model,
            "stream": True,
            "max_tokens": 256,
            "messages": [{"role": "user", "content": "Stream the benchmark text."}],
        }
        if self.fmt == "chat":
            body["stream_options"] = {"include_usage": True}
        payload = orjson.dumps(body)
        head = (
            f"POST {self.path} HTTP/1.1\r\n"
            f"host: {self.host}:{self.port}\r\n"
            "content-type: application/json\r\n"
            "accept: text/event-stream\r\n"
            "authorization: Bearer bench\r\n"
            "x-api-key: bench\r\n"
            "anthropic-version: 2023-06-01\r\n"
            f"content-length: {len(payload)}\r\n"
            "connection: close\r\n\r\n"
        )
        return head.encode() + payload


class StreamClient(asyncio.Protocol):
    """Sends ``request``; fills ``record``; resolves ``done`` when the connection is gone and
    ``established`` (if given) at the first data frame. ``clock`` is read once per read."""

    def __init__(
        self,
        request: bytes,
        record: StreamRecord,
        done: asyncio.Future[None],
        established: asyncio.Future[None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.record = record
        self._clock = clock
        self._request = request
        self._done = done
        self._established = established
        self._transport: asyncio.Transport | None = None
        self._head: bytes | None = b""
        self._chunked: ChunkedDecoder | None = None
        self._splitter = FrameSplitter()
        self._error_body = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = self._clock()
        record = self.record
        if self._head is not None:
            head = self._head + data
            end = head.find(b"\r\n\r\n")
            if end < 0:
                self._head = head
                if len(head) > _MAX_HEAD:
                    self._fail("response head too large")
                return
            self._head = None
            self._parse_head(head[:end])
            data = head[end + 4 :]
            if record.status != 200:
                self._error_body = data
                return
            if not data:
                return
        elif record.status != 200:
            if len(self._error_body) < 1024:
                self._error_body += data
            return
        if self._chunked is not None:
            data = self._chunked.decode(data)
        record.body_bytes += len(data)
        frames = record.frames
        for frame in self._splitter.feed(data):
            if b"data:" in frame:
                frames.append((now, frame))
        if self._established is not None and frames and not self._established.done():
            self._established.set_result(None)
        if self._chunked is not None and self._chunked.done:
            record.complete = True
            if self._transport is not None:
                self._transport.close()

    def eof_received(self) -> bool | None:
        if self._chunked is None and self.record.status == 200:
            record = self.record  # a body delimited by the connection's end
            record.complete = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        record = self.record
        record.ended = time.perf_counter()
        if record.status and record.status != 200 and record.error is None:
            detail = self._error_body[:300].decode("utf-8", "replace").strip()
            record.error = f"HTTP {record.status}: {detail}"
        elif not record.complete and record.error is None:
            record.error = f"connection lost: {exc}" if exc else "connection closed early"
        if self._established is not None and not self._established.done():
            self._established.set_result(None)
        if not self._done.done():
            self._done.set_result(None)

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        self.record.status = int(status_line[1]) if len(status_line) > 1 else 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                self._chunked = ChunkedDecoder()

    def _fail(self, reason: str) -> None:
        self.record.error = reason
        if self._transport is not None:
            self._transport.close()


async def run_stream(endpoint: Endpoint, request: bytes, time_limit: float) -> StreamRecord:
    """One stream from connect to its end (or ``time_limit`` seconds); never raises for the
    stream's own failures, which land in ``record.error``."""
    loop = asyncio.get_running_loop()
    record = StreamRecord(started=time.perf_counter())
    done: asyncio.Future[None] = loop.create_future()
    transport: asyncio.BaseTransport | None = None
    try:
        async with asyncio.timeout(time_limit):
            transport, _ = await loop.create_connection(
                lambda: StreamClient(request, record, done), endpoint.host, endpoint.port
            )
            await done
    except TimeoutError:
        record.error = record.error or "timeout"
    except OSError as exc:
        record.error = f"connect: {exc}"
    finally:
        if transport is not None:
            transport.close()
    if not record.ended:
        record.ended = time.perf_counter()
    return record


#: how a Chat stream's response ends on a kept-alive connection: ``[DONE]``, then the last chunk
KEPT_ALIVE_END = b"data: [DONE]\n\n\r\n0\r\n\r\n"


def kept_alive_request(model: str) -> bytes:
    """A streaming Chat Completions request for ``model``, for a connection that stays open
    from one stream to the next (the scripts that hold a gateway under a fixed load)."""
    body = orjson.dumps(
        {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    )
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\n"
        "content-type: application/json\r\nauthorization: Bearer bench\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def stream_kept_alive(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """Send ``request`` on a kept-alive connection and read its stream to the end; returns
    the SSE frames received. Raises ``ConnectionError`` if the connection ends first."""
    writer.write(request)
    received = b""
    while not received.endswith(KEPT_ALIVE_END):
        piece = await reader.read(65536)
        if not piece:
            raise ConnectionError("the connection closed before the stream's end")
        received += piece
    return received.count(b"\ndata: ")


class HeldStream:
    """A stream kept open by its owner (the idle-streams scenario); ``close()`` ends it."""

    __slots__ = ("_transport", "done", "record")

    def __init__(
        self, transport: asyncio.BaseTransport, record: StreamRecord, done: asyncio.Future[None]
    ) -> None:
        self._transport = transport
        self.record = record
        self.done = done

    def close(self) -> None:
        self._transport.close()


async def open_held(
    endpoint: Endpoint, request: bytes, time_limit: float
) -> HeldStream | StreamRecord:
    """Open a stream and return once its first data frame arrived; a failure comes back as the
    failed ``StreamRecord``."""
    loop = asyncio.get_running_loop()
    record = StreamRecord(started=time.perf_counter())
    done: asyncio.Future[None] = loop.create_future()
    established: asyncio.Future[None] = loop.create_future()
    transport: asyncio.BaseTransport | None = None
    try:
        async with asyncio.timeout(time_limit):
            transport, _ = await loop.create_connection(
                lambda: StreamClient(request, record, done, established),
                endpoint.host,
                endpoint.port,
            )
            await established
    except TimeoutError:
        record.error = record.error or "timeout"
    except OSError as exc:
        record.error = f"connect: {exc}"
    if transport is not None and record.error is None and record.frames:
        return HeldStream(transport, record, done)
    if transport is not None:
        transport.close()
    record.error = record.error or "no data frame"
    return record


class SlowReaderClient(asyncio.Protocol):
    """Counts the bytes of a response it reads slowly: after each read it stops reading for
    ``interval`` seconds, so only what fits in a small receive buffer comes in each time."""

    def __init__(self, request: bytes, interval: float, done: asyncio.Future[None]) -> None:
        self.bytes_read = 0
        self.reads = 0
        self._request = request
        self._interval = interval
        self._done = done
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self.bytes_read += len(data)
        self.reads += 1
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()
            self._loop.call_later(self._interval, self._resume)

    def _resume(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self._done.done():
            self._done.set_result(None)


@dataclass(slots=True)
class SlowRead:
    bytes_read: int
    reads: int
    seconds: float
    ended_early: bool


async def run_slow_reader(
    endpoint: Endpoint, request: bytes, seconds: float, interval: float, rcvbuf: int = 4096
) -> SlowRead:
    """Read one stream slowly for ``seconds``, through a small receive buffer, then leave."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Before connecting, so the advertised window is small from the handshake on.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    started = time.perf_counter()
    try:
        await loop.sock_connect(sock, (endpoint.host, endpoint.port))
    except OSError:
        sock.close()
        raise
    transport, protocol = await loop.create_connection(
        lambda: SlowReaderClient(request, interval, done), sock=sock
    )
    try:
        await asyncio.wait_for(asyncio.shield(done), seconds)
    except TimeoutError:
        pass
    finally:
        transport.close()
    return SlowRead(protocol.bytes_read, protocol.reads, time.perf_counter() - started, done.done())
