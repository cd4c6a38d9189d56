"""The paced mock upstream: a raw asyncio HTTP/1.1 server that streams OpenAI Chat
(``/v1/chat/completions``) or Anthropic Messages (``/v1/messages``) responses.

No web framework: one ``asyncio.Protocol`` per connection, frames encoded by ``frames``, the
pace kept by one loop timer per stream at absolute times (``t0 + k * pace``), so a late tick
never shifts the ones after it. A stream of pace 0 is written as fast as the transport takes
it, pausing when the transport asks (``pause_writing``), which is what a slow reader meets.
Keep-alive is honoured (a pooling gateway reuses its upstream connections); a request with
``connection: close`` is answered and closed.

``GET /stats`` answers the server's counters as JSON; ``GET /healthz`` answers ``ok``. It is
also the OTLP/HTTP sink of a gateway with telemetry on: ``POST /v1/traces`` and
``/v1/metrics`` are answered 200 with an empty protobuf body (a valid export response) and
their bodies counted, not decoded.
Run alone with ``python -m sluice.bench.mock --port 0``: it prints ``listening <url>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import sys
import time
from dataclasses import asdict, dataclass
from typing import cast

import orjson

from sluice.bench.frames import (
    FORMAT_PATHS,
    LAST_CHUNK,
    StreamFrames,
    frames_for,
    http_chunk,
    response_head,
)
from sluice.bench.proc import run_fast
from sluice.bench.profiles import Profile, UnknownProfile, profile_for
from sluice.listen import listening_sockets

_FORMATS = {path: fmt for fmt, path in FORMAT_PATHS.items()}
#: where an OTLP/HTTP exporter sends its signals
_OTLP_PATHS = ("/v1/traces", "/v1/metrics")
_MAX_HEAD = 64 * 1024
_MAX_BODY = 8 * 1024 * 1024  # (an OTLP export of 512 spans is near 1 MiB)
#: Deltas written in one go by a stream of pace 0 before it lets other connections run.
_BURST = 64


@dataclass(slots=True)
class MockCounters:
    connections: int = 0
    streams_started: int = 0
    streams_open: int = 0
    streams_completed: int = 0
    bytes_sent: int = 0
    otlp_exports: int = 0
    otlp_bytes: int = 0


def _plain(status: str, body: bytes, *, close: bool, media: str = "application/json") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: {media}\r\ncontent-length: {len(body)}\r\n".encode()
        + (b"connection: close\r\n" if close else b"")
        + b"\r\n"
        + body
    )


def _error(status: str, message: str, *, close: bool) -> bytes:
    body = orjson.dumps({"error": {"type": "invalid_request_error", "message": message}})
    return _plain(status, body, close=close)


class _Connection(asyncio.Protocol):
    """One client connection: parse a request, answer it, and wait for the next."""

    def __init__(
        self,
        counters: MockCounters,
        frames_cache: dict[tuple[str, str], StreamFrames],
        live: set[_Connection],
    ) -> None:
        self._counters = counters
        self._cache = frames_cache
        self._live = live
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._streaming = False
        self._paused = False
        self._close_after = False
        self._frames: StreamFrames | None = None
        self._profile: Profile | None = None
        self._index = 0
        self._t0 = 0.0
        self._timer: asyncio.Handle | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        self._counters.connections += 1
        self._live.add(self)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._streaming:
            self._next_request()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._streaming and self._profile is not None and self._profile.pace == 0:
            self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._streaming:
            self._streaming = False
            self._counters.streams_open -= 1
        self._transport = None
        self._live.discard(self)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- requests -----------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._transport is not None:
            self._counters.bytes_sent += len(data)
            self._transport.write(data)

    def _next_request(self) -> None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                self._reply(_error("431 Request Header Fields Too Large", "head", close=True))
            return
        lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            self._reply(_error("400 Bad Request", "bad request line", close=True))
            return
        method, target, version = parts
        length = 0
        close = version == "HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip() or 0)
            elif name == "connection":
                close = value.strip().lower() == "close"
        if length > _MAX_BODY:
            self._reply(_error("413 Content Too Large", "body too large", close=True))
            return
        start = end + 4
        if len(buf) < start + length:
            return
        body = bytes(buf[start : start + length])
        del buf[: start + length]
        self._close_after = close
        self._handle(method, target.partition("?")[0], body)

    def _reply(self, response: bytes, *, close: bool = True) -> None:
        self._write(response)
        if close and self._transport is not None:
            self._transport.close()

    def _handle(self, method: str, path: str, body: bytes) -> None:
        close = self._close_after
        if method == "GET" and path == "/stats":
            stats = orjson.dumps(asdict(self._counters))
            self._reply(_plain("200 OK", stats, close=close), close=close)
        elif method == "GET" and path == "/healthz":
            self._reply(_plain("200 OK", b"ok", close=close, media="text/plain"), close=close)
        elif method == "POST" and path in _OTLP_PATHS:
            self._counters.otlp_exports += 1
            self._counters.otlp_bytes += len(body)
            reply = _plain("200 OK", b"", close=close, media="application/x-protobuf")
            self._reply(reply, close=close)
        elif method == "POST" and path in _FORMATS:
            fmt = _FORMATS[path]
            try:
                request = orjson.loads(body)
                model = str(request["model"])
                profile = profile_for(model)
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                self._reply(_error("400 Bad Request", f"bad body: {exc}", close=close), close=close)
            except UnknownProfile as exc:
                self._reply(_error("404 Not Found", str(exc), close=close), close=close)
            else:
                self._start_stream(fmt, model, profile)
        else:
            message = f"no route {method} {path}"
            self._reply(_error("404 Not Found", message, close=close), close=close)
        if not self._streaming and not close and self._buf:
            self._next_request()

    # -- streaming ----------------------------------------------------------------------------

    def _start_stream(self, fmt: str, model: str, profile: Profile) -> None:
        key = (fmt, model)
        frames = self._cache.get(key)
        if frames is None:
            frames = self._cache[key] = frames_for(fmt, model.rpartition("/")[2])
        self._frames, self._profile = frames, profile
        self._streaming = True
        self._counters.streams_started += 1
        self._counters.streams_open += 1
        opening = response_head(close=self._close_after) + http_chunk(frames.opening())
        if profile.hold:
            self._write(opening)
            return
        # The first delta goes with the role chunk: time to first token is then the path's
        # own latency, with no pacing in it.
        self._write(opening + http_chunk(frames.delta(0, time.perf_counter_ns() // 1000)))
        self._index = 1
        if profile.pace > 0:
            self._t0 = self._loop.time()
            self._timer = self._loop.call_at(self._t0 + profile.pace, self._tick)
        else:
            self._timer = self._loop.call_soon(self._pump)

    def _tick(self) -> None:
        """Paced: one delta (or the end) per tick, at ``t0 + index * pace``."""
        self._timer = None
        frames, profile = self._frames, self._profile
        assert frames is not None and profile is not None
        index = self._index
        if index >= profile.deltas:
            self._finish()
            return
        self._write(http_chunk(frames.delta(index, time.perf_counter_ns() // 1000)))
        self._index = index + 1
        self._timer = self._loop.call_at(self._t0 + (index + 1) * profile.pace, self._tick)

    def _pump(self) -> None:
        """Pace 0: deltas back to back, one write each, until the transport pauses us."""
        self._timer = None
        frames, profile = self._frames, self._profile
        if frames is None or profile is None or not self._streaming:
            return
        index, end = self._index, profile.deltas
        burst = min(end, index + _BURST)
        while index < burst and not self._paused and self._transport is not None:
            self._write(http_chunk(frames.delta(index, time.perf_counter_ns() // 1000)))
            index += 1
        self._index = index
        if index >= end:
            self._finish()
        elif not self._paused:
            self._timer = self._loop.call_soon(self._pump)

    def _finish(self) -> None:
        frames, profile = self._frames, self._profile
        assert frames is not None and profile is not None
        self._write(http_chunk(frames.closing(profile.deltas)) + LAST_CHUNK)
        self._streaming = False
        self._counters.streams_open -= 1
        self._counters.streams_completed += 1
        if self._close_after:
            if self._transport is not None:
                self._transport.close()
        elif self._buf:
            self._next_request()


class MockServer:
    """The mock upstream inside the current event loop; ``port`` is known once started."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.counters = MockCounters()
        self._frames: dict[tuple[str, str], StreamFrames] = {}
        self._live: set[_Connection] = set()
        self._servers: list[asyncio.Server] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # Several sockets on the port: the loop accepts one connection per socket per turn.
        for sock in listening_sockets(self.host, self.port):
            self._servers.append(
                await loop.create_server(
                    lambda: _Connection(self.counters, self._frames, self._live),
                    sock=sock,
                    backlog=4096,
                )
            )
        self.port = self._servers[0].sockets[0].getsockname()[1]

    async def close(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for connection in list(self._live):
            connection.abort()
        for server in servers:
            await server.wait_closed()

    async def __aenter__(self) -> MockServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _serve(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # A cyclic collection would pause every stream at once: an upstream stall the targets
    # would be blamed for. The mock makes no garbage cycles worth collecting in one run.
    gc.collect()
    gc.disable()
    async with MockServer(host, port) as server:
        print(f"listening {server.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sluice.bench.mock", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        run_fast(_serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
