"""Running the gateway under uvicorn (uvloop + httptools), in the foreground or as a task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket
import weakref
from collections.abc import Iterator
from typing import Any, ClassVar

import httptools
import uvicorn
from prometheus_client import Gauge
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from sluice.config import ClientLimits, Settings
from sluice.gateway.app import Gateway, GatewayApp, create_app, error_format
from sluice.gateway.gcpolicy import YoungCollections, collect_when_quiet, tune_gc
from sluice.gateway.metrics import GatewayMetrics
from sluice.gateway.responses import error_response
from sluice.gateway.siblings import CONNECTION_HOOK, ConnectionHook
from sluice.listen import LISTENERS, listening_sockets
from sluice.logs import json_lines, kv
from sluice.session.flag import Flag

log = logging.getLogger("sluice.server")


#: lowercase header names, each the one object of its name that every request's scope shares;
#: bounded, so a client inventing names cannot grow it (past the bound, names are copied)
_HEADER_NAMES: dict[bytes, bytes] = {}
_HEADER_NAMES_KEPT = 512
#: the scope's ``asgi`` entry, by its (version, spec_version): the server's configuration
_ASGI: dict[tuple[str, str], Any] = {}


class _Protocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, lighter per connection, which also tells a streaming
    response the moment its client leaves.

    - Each request's scope carries a ``ConnectionHook``, called from ``connection_lost``.
      Without it every open stream would need a task waiting on ``receive()`` for the
      disconnect: about 1 KB per stream.
    - uvicorn gives every connection two ``asyncio.Event``s (the flow control's "writable"
      and the request's "message") and a ``deque`` for pipelined requests; each of the three
      allocates a block of about 700 bytes up front, almost never used by a stream that is
      open for minutes. They are replaced by a ``Flag`` each (two slots, a waiter list made
      on the first wait) and a list, before anything can wait on them.
    - A header's name is one shared lowercase ``bytes`` object per distinct name, not a new
      one per header of every request (uvicorn lowercases each into a copy); so is the
      scope's ``asgi`` dict, the same two version strings for every request. Everything else
      about a header (its value's whitespace, ``Expect: 100-continue``) is uvicorn's own:
      ``on_header`` calls it first and only swaps the name afterwards.
    - A streaming response can hold its head back (``hold_head``) for the first piece of
      its body: the two go out in one write, one system call and one wake-up of the client
      fewer before the first token.
    - The client bounds (``ClientGuard``): while a connection waits for a request's head, its
      body, or (kept alive) its next request, it sits in the guard's queue for that wait,
      which holds its deadline; the guard closes it once that passes, and sheds the oldest
      waiting connection at the connection ceiling. A connection with a response under way
      is in no queue: an open stream carries no deadline of these, and its writes no check.
      The one thing a connection holds for them is ``_head``, the bytes of the request head
      read so far (-1 between heads). uvicorn's keep-alive timer, a loop timer per idle
      connection, is not used: uvicorn's ``on_response_complete`` runs, and the timer it
      arms is cancelled at once.
    - The fast write path: a request's hook writes past ``send`` (``_Hook``) only when the
      application uvicorn calls is ``direct_app``, the one the server was told reads nothing
      of its responses through ``send``. Any other (the gateway's app wrapped in middleware,
      or by uvicorn's own message logger) gets a hook that only says when the client leaves,
      and every byte of its responses passes through its ``send``.

    ``data_received`` is uvicorn's with three changes (no keep-alive timer to cancel, the head's
    size counted, no second answer to a request refused already); every other callback calls
    uvicorn's and changes only what is listed here.
    """

    #: the bounds of the server this protocol class is made for (``bound``)
    guard: ClassVar[ClientGuard]
    #: the application whose responses may be written past ``send`` (``bound``); None: none
    direct_app: ClassVar[object | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pipeline = _Pipeline()  # type: ignore[assignment]
        self._head = -1

    @classmethod
    def bound(cls, guard: ClientGuard, direct_app: object | None = None) -> type[_Protocol]:
        """This protocol for one server: its connections under ``guard``, and the responses
        of ``direct_app`` (when uvicorn calls it as it is) written past ``send``."""
        # (a staticmethod: an application that is a function stays itself when read through
        # an instance, not a bound method)
        kept: Any = staticmethod(direct_app)  # type: ignore[arg-type]
        attributes = {"guard": guard, "direct_app": kept}
        return type(cls.__name__, (cls,), attributes)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        writable = Flag()
        writable.set()
        self.flow._is_writable_event = writable  # type: ignore[assignment]
        self.guard.opened(self)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, without its keep-alive timer, and with the head's size bounded: the
        parser keeps an unfinished header in memory, so a head still unfinished after a
        read is counted by the bytes read, before any header of it is complete."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if not isinstance(exc.__context__, _Refused):  # else answered already
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return
        if self._head >= 0:  # a head unfinished after this read: all of it was the head's
            self._head += len(data)
            if self._head > self.guard.limits.max_header_bytes:
                self._refuse_head_too_large()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head = 0
        self.guard.head_begun(self)
        scope = self.scope
        # the fast write path only for the application itself: nothing between it and the
        # server would see what the hook writes
        hook = _Hook() if self.app is self.direct_app else ConnectionHook()
        scope[CONNECTION_HOOK] = hook  # type: ignore[literal-required]
        asgi = scope["asgi"]  # the same two constants for every request: one shared dict
        key = (asgi.get("version", ""), asgi.get("spec_version", ""))
        scope["asgi"] = _ASGI.setdefault(key, asgi)

    def on_header(self, name: bytes, value: bytes) -> None:
        """uvicorn's (the name lowercased, the value's trailing whitespace dropped,
        ``Expect: 100-continue`` noted), then the header's name swapped for the one shared
        object of that name."""
        super().on_header(name, value)
        headers = self.headers
        lowered, kept = headers[-1]
        shared = _HEADER_NAMES.get(lowered)
        if shared is None:
            if len(_HEADER_NAMES) < _HEADER_NAMES_KEPT:
                _HEADER_NAMES[lowered] = lowered
        else:
            headers[-1] = (shared, kept)

    def on_headers_complete(self) -> None:
        guard = self.guard
        guard.heads.pop(self, None)
        self._head = -1
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > guard.limits.max_header_bytes:
            self._refuse_head_too_large()
            raise _Refused  # stops the parser: nothing more of this read is a request
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not previous:  # a new request (not an upgrade); nothing waits yet
            cycle.message_event = Flag()  # type: ignore[assignment]
            hook = cycle.scope.get(CONNECTION_HOOK)
            if type(hook) is _Hook:
                hook.cycle = weakref.ref(cycle)
            guard.wait(guard.bodies, self, guard.limits.body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.guard.bodies.pop(self, None)

    def on_response_complete(self) -> None:
        """uvicorn's, with the wait for the next request in the guard's idle queue instead
        of a loop timer of its own: uvicorn arms its keep-alive timer where no pipelined
        request follows, and that timer is cancelled at once."""
        super().on_response_complete()
        timer = self.timeout_keep_alive_task
        if timer is None:  # closing, or a pipelined request started
            return
        timer.cancel()
        self.timeout_keep_alive_task = None
        if self._head < 0:  # the next request has not begun
            guard = self.guard
            guard.wait(guard.idle, self, guard.limits.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        guard = self.guard
        guard.forget(self)
        if guard.counted is not None:
            guard.counted.dec()
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and not cycle.response_complete:
            hook = cycle.scope.get(CONNECTION_HOOK)
            if isinstance(hook, ConnectionHook):
                hook.connection_lost()

    # -- the client bounds, called by the guard ------------------------------------------------

    def _head_late(self) -> None:
        """The head did not arrive within ``header_timeout``: 408 if any of it did."""
        self.guard.closed("header_timeout")
        if self._head > 0 and not self._answering():
            self._refuse(408, "request_timeout", "the request's headers did not arrive in time")
        else:
            self.transport.close()

    def _idle_too_long(self) -> None:
        self.guard.closed("idle_timeout")
        self.transport.close()

    def _body_late(self) -> None:
        """The body did not arrive within ``body_timeout``: 408, unless the response has
        begun (then only the connection is closed). The application's ``receive`` answers
        ``http.disconnect`` from now on, and what it sends goes nowhere."""
        self.guard.closed("body_timeout")
        cycle = self.cycle
        if cycle is not None and not cycle.response_started and not self.pipeline:
            cycle.disconnected = True
            cycle.message_event.set()
            self._refuse(408, "request_timeout", "the request's body did not arrive in time")
        else:
            self.transport.close()

    def _refuse_head_too_large(self) -> None:
        limit = self.guard.limits.max_header_bytes
        self.guard.closed("header_too_large")
        if self._answering():
            self.transport.close()
            return
        self._refuse(
            431,
            "request_header_fields_too_large",
            f"the request's line and headers are over the limit of {limit} bytes",
        )

    def _answering(self) -> bool:
        """Whether an earlier request's response is under way (a pipelined head came in
        behind it): a refusal written now would land inside it, so there is none."""
        cycle = self.cycle
        return bool(self.pipeline) or (cycle is not None and not cycle.response_complete)

    def _refuse(self, status: int, type_: str, message: str) -> None:
        """Answer ``status`` in the error format of the API the request's path belongs to
        (plain text for pages, or a path not read yet), and close the connection."""
        transport = self.transport
        if transport.is_closing():
            return
        path = getattr(self, "url", b"").partition(b"?")[0].decode("latin-1")
        fmt = error_format(path)
        if fmt is None:
            body, media = message.encode(), b"text/plain; charset=utf-8"
        else:
            body = bytes(error_response(fmt, status, type_, message).body)
            media = b"application/json"
        transport.write(
            b"%bcontent-type: %b\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%b"
            % (STATUS_LINE[status], media, len(body), body)
        )
        transport.close()


class _Refused(Exception):
    """Raised from a parser callback once the request is answered: the parser stops."""


class _Hook(ConnectionHook):
    """The connection hook of one request on ``_Protocol``: ``write()`` frames a body chunk
    and hands it to the transport, as uvicorn's ``send`` would, when the response has
    started with chunked framing, the client is there and its socket is not full. Otherwise
    it writes nothing, and the caller's ``send`` does what uvicorn does in those cases (wait
    for the socket, drop the write of a client that left, frame by length or not at all).
    While the head is held, the cycle's transport is a ``_Held``, which keeps what the hook
    and ``send`` write until ``release_head`` writes it all at once.

    The cycle is held weakly: it holds the scope, which holds this hook, and a cycle of
    references would outlive its request until a full collection."""

    __slots__ = ("cycle",)

    direct = True

    def __init__(self) -> None:
        super().__init__()
        self.cycle: weakref.ref[RequestResponseCycle] | None = None

    def write(self, body: bytes) -> bool:
        ref = self.cycle
        cycle = ref() if ref is not None else None
        if (
            cycle is None
            or not cycle.chunked_encoding  # not started, or framed by length, or HEAD
            or cycle.response_complete
            or cycle.disconnected
            or cycle.flow.write_paused
        ):
            return False
        cycle.transport.write(b"%x\r\n%b\r\n" % (len(body), body))
        return True

    def hold_head(self) -> None:
        """uvicorn writes the head as ``http.response.start`` is sent: while it is held, the
        cycle's transport is a ``_Held``, which keeps what is written."""
        ref = self.cycle
        cycle = ref() if ref is not None else None
        if cycle is None or cycle.response_started:
            return
        transport: Any = cycle.transport
        if type(transport) is not _Held:
            cycle.transport = _Held(transport)  # type: ignore[assignment]

    def release_head(self) -> None:
        ref = self.cycle
        cycle = ref() if ref is not None else None
        transport: Any = cycle.transport if cycle is not None else None
        if cycle is not None and type(transport) is _Held:
            cycle.transport = transport.release()


class _Held:
    """A cycle's transport while its response's head is held back: what is written is kept,
    in order; anything else is the transport's own."""

    __slots__ = ("_data", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._data: list[bytes] = []

    def write(self, data: bytes) -> None:
        self._data.append(data)

    def release(self) -> asyncio.Transport:
        """Write what was kept, in one write; return the transport."""
        transport, data = self.transport, self._data
        if data and not transport.is_closing():
            transport.write(b"".join(data))
        data.clear()
        return transport

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class _Pipeline(list[Any]):
    """The queue of pipelined requests as uvicorn uses it (``appendleft``, ``pop``, truth),
    without the 700-byte block an empty ``deque`` holds."""

    __slots__ = ()

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)


class ClientGuard:
    """The client bounds of one server, for all of its connections.

    A connection waiting for something of its client is in the queue of that wait: ``heads``
    (its request's line and headers, from its opening or the request's first byte), ``bodies``
    (the body, from the end of the head) or ``idle`` (kept alive, its next request). A queue
    maps each connection to its deadline; one timeout per queue, and a connection enters at
    the end, so each is in deadline order: a sweep, every ``tick`` seconds while any waits,
    reads from the front until a deadline in the future. A connection with a response under
    way is in none. The same order gives the connection to shed at the ceiling: the one idle
    longest, else the one whose head is longest in coming. The wheel (``sluice.wheel``) would
    give the deadlines, not that order.
    """

    __slots__ = (
        "_logged_at",
        "_loop",
        "_shed",
        "_sweeping",
        "_warned_at",
        "bodies",
        "ceiling",
        "connections",
        "counted",
        "descriptors",
        "heads",
        "idle",
        "limits",
        "metrics",
        "tick",
        "warn_at",
    )

    #: seconds between two log lines about the ceiling, at least
    LOG_EVERY = 10.0

    def __init__(self, limits: ClientLimits, metrics: GatewayMetrics | None = None) -> None:
        self.limits = limits
        self.metrics = metrics
        self.descriptors = open_file_limit()
        self.ceiling = connection_ceiling(limits, self.descriptors)
        #: past this many open connections the log says the ceiling is near
        self.warn_at = self.ceiling * 9 // 10
        shortest = min(limits.header_timeout, limits.idle_timeout, limits.body_timeout)
        self.tick = min(1.0, max(0.05, shortest / 4))
        self.heads: dict[_Protocol, float] = {}
        self.bodies: dict[_Protocol, float] = {}
        self.idle: dict[_Protocol, float] = {}
        #: uvicorn's set of the server's open connections (known at the first)
        self.connections: set[Any] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeping = False
        self._shed = 0
        self._logged_at = self._warned_at = float("-inf")
        #: the gauge of open connections, counted up and down by each connection where the
        #: metrics of several processes are summed (a gauge read from a function is not)
        self.counted: Gauge | None = None
        if metrics is not None:
            metrics.client_connection_ceiling.set(self.ceiling)
            if metrics.multiprocess:
                self.counted = metrics.client_connections
            else:
                metrics.client_connections.set_function(lambda: len(self.connections))

    # -- the queues ----------------------------------------------------------------------------

    def wait(self, queue: dict[_Protocol, float], conn: _Protocol, timeout: float) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        queue.pop(conn, None)  # at the end, whatever it was before: the order is the deadlines'
        queue[conn] = loop.time() + timeout
        if not self._sweeping:
            self._sweeping = True
            loop.call_later(self.tick, self._sweep)

    def opened(self, conn: _Protocol) -> None:
        """A new connection: its first head is due within ``header_timeout``; at the
        ceiling, the oldest waiting connection makes room (or, if none waits, this one is
        refused)."""
        self.connections = conn.connections
        if self.counted is not None:
            self.counted.inc()
        self.wait(self.heads, conn, self.limits.header_timeout)
        open_now = len(self.connections)
        if open_now > self.ceiling:
            self._make_room(conn)
        elif open_now > self.warn_at:
            self._near(open_now)

    def head_begun(self, conn: _Protocol) -> None:
        """A request's first byte: a kept-alive connection's head is now due (a new one's
        was due from its opening)."""
        if self.idle.pop(conn, None) is not None or conn not in self.heads:
            self.wait(self.heads, conn, self.limits.header_timeout)

    def forget(self, conn: _Protocol) -> None:
        self.heads.pop(conn, None)
        self.bodies.pop(conn, None)
        self.idle.pop(conn, None)

    def _sweep(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        for queue, expire in (
            (self.heads, _Protocol._head_late),
            (self.bodies, _Protocol._body_late),
            (self.idle, _Protocol._idle_too_long),
        ):
            due = []
            for conn, deadline in queue.items():
                if deadline > now:
                    break
                due.append(conn)
            for conn in due:
                del queue[conn]
                try:
                    expire(conn)
                except Exception as exc:  # noqa: BLE001 - one connection must not stop the sweep
                    self._loop.call_exception_handler(
                        {"message": "client deadline failed", "exception": exc}
                    )
        if self.heads or self.bodies or self.idle:
            self._loop.call_later(self.tick, self._sweep)
        else:
            self._sweeping = False

    # -- the ceiling ---------------------------------------------------------------------------

    def _make_room(self, newcomer: _Protocol) -> None:
        victim = next(iter(self.idle), None)
        if victim is None:
            victim = next((conn for conn in self.heads if conn is not newcomer), None)
        if victim is not None:
            self.forget(victim)
            victim.transport.close()
            self.closed("shed")
        else:  # every other connection has a request under way
            self.forget(newcomer)
            transport = newcomer.transport
            transport.write(
                STATUS_LINE[503] + b"content-type: text/plain; charset=utf-8\r\n"
                b"content-length: 42\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
                b"the gateway has no room for a connection\n"
            )
            transport.close()
            self.closed("refused")
        self._shed += 1
        assert self._loop is not None
        now = self._loop.time()
        if now - self._logged_at >= self.LOG_EVERY:
            self._logged_at = now
            log.warning(
                "client connections at the ceiling, closing the oldest idle %s",
                kv(
                    connections=len(self.connections),
                    ceiling=self.ceiling,
                    descriptor_limit=self.descriptors,
                    shed=self._shed,
                ),
            )
            self._shed = 0

    def _near(self, open_now: int) -> None:
        """Past nine tenths of the ceiling: said in the log (at most every ``LOG_EVERY``)."""
        assert self._loop is not None
        now = self._loop.time()
        if now - self._warned_at >= self.LOG_EVERY:
            self._warned_at = now
            log.warning(
                "client connections near the ceiling %s",
                kv(connections=open_now, ceiling=self.ceiling, descriptor_limit=self.descriptors),
            )

    def closed(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.client_closed.labels(reason).inc()


#: descriptors kept for everything but client connections: listening sockets, the store,
#: logs, the loop's own
DESCRIPTOR_RESERVE = 64


def open_file_limit() -> int:
    """The process's soft limit of open descriptors (``RLIMIT_NOFILE``)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_ceiling(limits: ClientLimits, descriptors: int) -> int:
    """``server.max_connections``, or with 0 half of the descriptors left after a reserve:
    each client connection may need a second one, to its upstream."""
    if limits.max_connections:
        return limits.max_connections
    return max(16, (descriptors - DESCRIPTOR_RESERVE) // 2)


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (at ``sluice serve``'s start);
    returns (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == hard:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, hard


def served_gateway(app: object) -> Gateway | None:
    """The gateway whose app ``app`` is, or wraps: an ASGI middleware keeps the application
    it wraps as ``app`` (Starlette's, OpenTelemetry's), followed a few layers down."""
    for _ in range(16):
        gateway = getattr(getattr(app, "state", None), "gateway", None)
        if isinstance(gateway, Gateway):
            return gateway
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


class _Server(uvicorn.Server):
    """uvicorn, without its own signal handlers: ``serve_forever`` owns SIGINT and SIGTERM, so
    that live sessions are finalised before the server waits for its connections to close."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class RunningServer:
    """A uvicorn server started inside the current event loop; ``url`` is known once started."""

    def __init__(
        self,
        app: ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        http: type[asyncio.Protocol] | str = _Protocol,
        listeners: int = LISTENERS,
        limits: ClientLimits | None = None,
        sockets: list[socket.socket] | None = None,
        direct_writes: bool | None = None,
    ) -> None:
        """``limits`` default to the gateway's ``[server]`` settings when ``app`` is the
        gateway's, or a middleware around it (its metrics then count what they close), else
        to the defaults. ``sockets``, bound already (a worker's, from its supervisor), are
        served instead of binding ``host`` and ``port``.

        ``direct_writes``: whether ``app``'s responses may write past ``send`` (the fast
        write path, ``ConnectionHook.write``). By default only when ``app`` is the gateway's
        own app, with no middleware inside it: anything wrapped around it (an ASGI
        middleware, OpenTelemetry's instrumentation) is another object, and then every byte
        passes through ``send``. True is for an application that is served as it is and
        reads nothing of its responses (the protocol's tests)."""
        self.app = app
        gateway = served_gateway(app)
        if limits is None:
            limits = gateway.settings.client_limits if gateway is not None else ClientLimits()
        self.guard = ClientGuard(limits, gateway.metrics if gateway is not None else None)
        if direct_writes is None:
            direct_writes = isinstance(app, GatewayApp) and not app.user_middleware
        if isinstance(http, type) and issubclass(http, _Protocol):
            http = http.bound(self.guard, app if direct_writes else None)
        self.host = host
        self._sockets = sockets or listening_sockets(host, port, listeners)
        self.port: int = self._sockets[0].getsockname()[1]
        config = uvicorn.Config(
            app,
            http=http,  # ``"httptools"``: uvicorn's own, without the disconnect hook
            loop="none",
            lifespan="on",
            log_level="warning",
            # uvicorn's own handlers, except under JSON lines (its warnings go to the root's)
            log_config=None if json_lines() else uvicorn.config.LOGGING_CONFIG,
            access_log=False,
            # No X-Forwarded-For rewriting: nothing uses the client address, and it would be
            # one more wrapper around every request.
            proxy_headers=False,
            timeout_graceful_shutdown=5,
        )
        self.server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self.server.serve(sockets=self._sockets)
        )
        while not self.server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the server stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sock in self._sockets:
            sock.close()

    async def __aenter__(self) -> RunningServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve_forever(
    settings: Settings, sockets: list[socket.socket] | None = None, *, announce: bool = True
) -> None:
    """``sluice serve``: run until SIGINT or SIGTERM, then shut down in order. A worker of
    ``sluice serve --workers N`` serves the ``sockets`` its supervisor bound, and leaves the
    announcement to it.

    First the live sessions are cancelled (reason ``gateway_shutdown``): each cancels its
    upstream request and ends its clients' streams with a final frame, and its record is
    stored. Then the server stops accepting, waits for the connections (now finishing) to
    close, and runs the lifespan's shutdown, which flushes the store. Without the first step
    the server would wait out its graceful timeout on streams that were never going to end. A
    second signal skips the wait.
    """
    before, after = raise_open_file_limit()
    app = create_app(settings)
    gateway: Gateway = app.state.gateway
    server = RunningServer(app, settings.host, settings.port, sockets=sockets)
    log.info(
        "client bounds %s",
        kv(
            descriptor_limit=after,
            raised_from=before if before != after else None,
            max_connections=server.guard.ceiling,
        ),
    )
    await server.start()
    tune_gc()
    gateway.sessions.first_token_hooks.append(YoungCollections().first_token)
    if announce:
        print(f"sluice gateway listening on {server.url}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            server.server.force_exit = True
        stop.set()
        log.info("shutting down %s", kv(signal=sig.name))

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    collector = asyncio.ensure_future(collect_when_quiet(gateway.sessions.quiet_for))
    try:
        await stop.wait()
        await gateway.sessions.shutdown()
    finally:
        collector.cancel()
        await server.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
