"""Running the gateway under uvicorn (uvloop + httptools), in the foreground or as a task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import weakref
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from sluice.config import Settings
from sluice.gateway.app import Gateway, create_app
from sluice.gateway.gcpolicy import YoungCollections, collect_when_quiet, tune_gc
from sluice.gateway.siblings import CONNECTION_HOOK, ConnectionHook
from sluice.listen import LISTENERS, listening_sockets
from sluice.logs import kv
from sluice.session.flag import Flag

log = logging.getLogger("sluice.server")


#: header names as clients send them -> the lowercase name, shared by every request's scope;
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
      scope's ``asgi`` dict, the same two version strings for every request.
    - A streaming response can hold its head back (``hold_head``) for the first piece of
      its body: the two go out in one write, one system call and one wake-up of the client
      fewer before the first token.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pipeline = _Pipeline()  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        writable = Flag()
        writable.set()
        self.flow._is_writable_event = writable  # type: ignore[assignment]

    def on_message_begin(self) -> None:
        super().on_message_begin()
        scope = self.scope
        scope[CONNECTION_HOOK] = _Hook()  # type: ignore[literal-required]
        asgi = scope["asgi"]  # the same two constants for every request: one shared dict
        key = (asgi.get("version", ""), asgi.get("spec_version", ""))
        scope["asgi"] = _ASGI.setdefault(key, asgi)

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = _HEADER_NAMES.get(name)
        if lowered is None:
            lowered = name.lower()
            if len(_HEADER_NAMES) < _HEADER_NAMES_KEPT:
                _HEADER_NAMES[name] = lowered
        if lowered == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((lowered, value))

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not previous:  # a new request (not an upgrade); nothing waits yet
            cycle.message_event = Flag()  # type: ignore[assignment]
            hook = cycle.scope.get(CONNECTION_HOOK)
            if type(hook) is _Hook:
                hook.cycle = weakref.ref(cycle)

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and not cycle.response_complete:
            hook = cycle.scope.get(CONNECTION_HOOK)
            if isinstance(hook, ConnectionHook):
                hook.connection_lost()


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
    ) -> None:
        self.app = app
        self.host = host
        self._sockets = listening_sockets(host, port, listeners)
        self.port: int = self._sockets[0].getsockname()[1]
        config = uvicorn.Config(
            app,
            http=http,  # ``"httptools"``: uvicorn's own, without the disconnect hook
            loop="none",
            lifespan="on",
            log_level="warning",
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


async def serve_forever(settings: Settings) -> None:
    """``sluice serve``: run until SIGINT or SIGTERM, then shut down in order.

    First the live sessions are cancelled (reason ``gateway_shutdown``): each cancels its
    upstream request and ends its clients' streams with a final frame, and its record is
    stored. Then the server stops accepting, waits for the connections (now finishing) to
    close, and runs the lifespan's shutdown, which flushes the store. Without the first step
    the server would wait out its graceful timeout on streams that were never going to end. A
    second signal skips the wait.
    """
    app = create_app(settings)
    gateway: Gateway = app.state.gateway
    server = RunningServer(app, settings.host, settings.port)
    await server.start()
    tune_gc()
    gateway.sessions.first_token_hooks.append(YoungCollections().first_token)
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
