"""Real servers on loopback for the transport tests: an HTTP/1.1 origin (plain or TLS, IPv4 or
IPv6), a forward proxy (CONNECT tunnels and absolute-form requests, optionally asking for
credentials), and an HTTP/2 origin (TLS, ALPN ``h2``) serving SSE; and the certificates they
use, made by the test (``trustme``)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import trustme

from sluice.bench.proc import free_port
from tests.proxies.servers import system_binary

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]

OK_CHUNKED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
    b"x-request-id: req-1\r\nx-ratelimit-remaining: 99\r\n\r\n"
)


def chunk(piece: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(piece), piece)


LAST_CHUNK = b"0\r\n\r\n"


class Origin:
    """A loopback HTTP/1.1 server: reads each request whole, then lets the test's handler write
    the answer; records the requests, the connections and the client certificates seen."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.connections = 0
        self.peer_certs: list[dict[str, object] | None] = []
        self.closed_by_client = asyncio.Event()
        self.url = ""
        self.port = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.peer_certs.append(writer.get_extra_info("peercert"))
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                await self.handler(reader, writer, request)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            self.closed_by_client.set()
        finally:
            writer.close()


@asynccontextmanager
async def origin(
    handler: Handler, *, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"
) -> AsyncIterator[Origin]:
    server_side = Origin(handler)
    server = await asyncio.start_server(server_side.serve, host, 0, ssl=tls)
    server_side.port = port = server.sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if tls is not None else "http"
    server_side.url = f"{scheme}://{shown}:{port}/v1/chat/completions?key=secret"
    async with server:
        yield server_side
        server.close()


async def sse_answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _req: bytes) -> None:
    """Three events, each in a write of its own."""
    w.write(OK_CHUNKED + chunk(b"data: 1\n\n"))
    await w.drain()
    for piece in (b"data: 2\n\n", b"data: [DONE]\n\n"):
        await asyncio.sleep(0.01)
        w.write(chunk(piece))
        await w.drain()
    w.write(LAST_CHUNK)
    await w.drain()


def chat_events(*texts: str) -> list[bytes]:
    """An OpenAI Chat Completions stream of ``texts``, its usage and ``[DONE]``: SSE frames."""
    import orjson

    def frame(delta: dict[str, object], finish: str | None = None) -> bytes:
        body = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"

    frames = [frame({"role": "assistant", "content": ""})]
    frames += [frame({"content": text}) for text in texts]
    frames.append(frame({}, "stop"))
    usage = {"prompt_tokens": 3, "completion_tokens": len(texts), "total_tokens": 3 + len(texts)}
    frames.append(
        b"data: "
        + orjson.dumps(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "m",
                "choices": [],
                "usage": usage,
            }
        )
        + b"\n\n"
    )
    frames.append(b"data: [DONE]\n\n")
    return frames


def chat_answer(*texts: str) -> Handler:
    """An HTTP/1.1 handler answering with ``chat_events(*texts)``, one chunk per frame."""

    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _req: bytes) -> None:
        w.write(OK_CHUNKED)
        for frame in chat_events(*texts):
            w.write(chunk(frame))
            await w.drain()
        w.write(LAST_CHUNK)
        await w.drain()

    return answer


# -- certificates -----------------------------------------------------------------------------


@dataclass
class Certificates:
    """A CA the test trusts (its bundle on disk), a server certificate for ``localhost``,
    127.0.0.1 and ::1, and a client certificate from a second CA for mutual TLS."""

    directory: Path
    ca: trustme.CA = field(default_factory=trustme.CA)
    client_ca: trustme.CA = field(default_factory=trustme.CA)

    def __post_init__(self) -> None:
        self.server = self.ca.issue_cert("localhost", "127.0.0.1", "::1", "origin.sluice.test")
        self.ca_bundle = self.directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_bundle))
        client = self.client_ca.issue_cert("gateway@sluice.test")
        self.client_cert = self.directory / "client-cert.pem"
        self.client_key = self.directory / "client-key.pem"
        client.cert_chain_pems[0].write_to_path(str(self.client_cert))
        client.private_key_pem.write_to_path(str(self.client_key))

    def server_context(
        self, *, alpn: list[str] | None = None, mutual: bool = False
    ) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server.configure_cert(context)
        if alpn:
            context.set_alpn_protocols(alpn)
        if mutual:
            context.verify_mode = ssl.CERT_REQUIRED
            self.client_ca.configure_trust(context)
        return context

    def context_for(self, *hostnames: str) -> ssl.SSLContext:
        """A server context whose certificate (from the trusted CA) names only ``hostnames``."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*hostnames).configure_cert(context)
        return context


def stranger_context() -> ssl.SSLContext:
    """A server context whose certificate comes from a CA nobody trusts."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


# -- a forward proxy --------------------------------------------------------------------------


#: the names only the test proxy resolves (as a corporate proxy resolves names its clients
#: cannot): an origin behind it is addressed as ``origin.sluice.test``
PROXY_HOSTS = {"origin.sluice.test": "127.0.0.1"}


class ForwardProxy:
    """An HTTP forward proxy: ``CONNECT host:port`` opens a tunnel; a request in absolute form
    is sent on to its origin in origin form. Records each request's method, target and
    ``Proxy-Authorization``; answers 407 when ``credentials`` are set and not given. Resolves
    the names in ``PROXY_HOSTS`` itself."""

    def __init__(self, credentials: str | None = None) -> None:
        self.credentials = credentials
        self.seen: list[tuple[str, str, str | None]] = []
        self.url = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            fields = [line.split(":", 1) for line in lines[1:] if ":" in line]
            authorization = next(
                (v.strip() for k, v in fields if k.lower() == "proxy-authorization"), None
            )
            self.seen.append((method, target, authorization))
            if self.credentials is not None and authorization != self.credentials:
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'proxy-authenticate: Basic realm="test"\r\ncontent-length: 0\r\n'
                    b"connection: close\r\n\r\n"
                )
                await writer.drain()
                return
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                host = host.strip("[]")
                up_reader, upstream = await asyncio.open_connection(
                    PROXY_HOSTS.get(host, host), int(port)
                )
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:
                parts = urlsplit(target)
                assert parts.hostname is not None
                up_reader, upstream = await asyncio.open_connection(
                    PROXY_HOSTS.get(parts.hostname, parts.hostname), parts.port or 80
                )
                path = parts.path + (f"?{parts.query}" if parts.query else "")
                kept = [
                    line
                    for line in lines[1:]
                    if line and not line.lower().startswith("proxy-authorization:")
                ]
                upstream.write(
                    "\r\n".join([f"{method} {path} HTTP/1.1", *kept, "", ""]).encode("latin-1")
                )
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()
            if upstream is not None:
                upstream.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()


@asynccontextmanager
async def forward_proxy(credentials: str | None = None) -> AsyncIterator[ForwardProxy]:
    proxy = ForwardProxy(credentials)
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
    proxy.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield proxy
        server.close()


# -- an HTTP/2 origin -------------------------------------------------------------------------


@dataclass
class H2Origin:
    """An HTTP/2 server (TLS with ALPN ``h2``, nothing else spoken): answers each POST with
    ``events`` as an SSE body, one DATA frame per event; records each request's headers and
    body."""

    events: list[bytes]
    #: the answer's status; an error status is sent with ``error_body`` and ``retry-after: 7``
    status: int = 200
    error_body: bytes = b""
    #: after the events, keep the stream open and silent (until the client resets it)
    hold: bool = False
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    #: the streams the client reset (RST_STREAM)
    resets: list[int] = field(default_factory=list)
    #: the protocol each connection negotiated by ALPN
    protocols: list[str | None] = field(default_factory=list)
    #: set when the client reset a stream
    reset: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    #: the connections being served, each by its task: ended when the server stops
    serving: dict[asyncio.Task[object], asyncio.StreamWriter] = field(default_factory=dict)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.serving[task] = writer
        try:
            await self._serve(reader, writer)
        finally:
            del self.serving[task]

    async def stop(self) -> None:
        """Close the connections still open and wait for their handlers to end."""
        for writer in self.serving.values():
            writer.close()
        if self.serving:
            await asyncio.wait(list(self.serving), timeout=10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        self.protocols.append(ssl_object.selected_alpn_protocol() if ssl_object else None)
        if self.protocols[-1] != "h2":
            writer.close()
            return
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        heads: dict[int, dict[str, str]] = {}
        bodies: dict[int, bytearray] = {}
        tasks: set[asyncio.Task[None]] = set()
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        heads[event.stream_id] = {str(k): str(v) for k, v in event.headers}
                        bodies[event.stream_id] = bytearray()
                    elif isinstance(event, h2.events.DataReceived):
                        bodies[event.stream_id] += event.data
                        conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    elif isinstance(event, h2.events.StreamReset):
                        self.resets.append(event.stream_id)
                        self.reset.set()
                    elif isinstance(event, h2.events.StreamEnded):
                        sid = event.stream_id
                        self.requests.append((heads[sid], bytes(bodies[sid])))
                        task = asyncio.ensure_future(self._answer(conn, writer, sid))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            writer.close()
            if tasks:
                await asyncio.wait(tasks)

    async def _answer(
        self, conn: h2.connection.H2Connection, writer: asyncio.StreamWriter, stream_id: int
    ) -> None:
        if self.status >= 400:
            conn.send_headers(
                stream_id,
                [
                    (":status", str(self.status)),
                    ("content-type", "application/json"),
                    ("retry-after", "7"),
                ],
            )
            conn.send_data(stream_id, self.error_body, end_stream=True)
            writer.write(conn.data_to_send())
            return
        conn.send_headers(
            stream_id,
            [(":status", "200"), ("content-type", "text/event-stream"), ("x-request-id", "h2")],
        )
        writer.write(conn.data_to_send())
        for event in self.events:
            await asyncio.sleep(0.01)
            conn.send_data(stream_id, event)
            writer.write(conn.data_to_send())
        if self.hold:
            return
        conn.end_stream(stream_id)
        writer.write(conn.data_to_send())


@asynccontextmanager
async def h2_origin(
    events: list[bytes],
    tls: ssl.SSLContext,
    *,
    status: int = 200,
    error_body: bytes = b"",
    hold: bool = False,
) -> AsyncIterator[H2Origin]:
    server_side = H2Origin(events, status, error_body, hold)
    server = await asyncio.start_server(server_side.serve, "127.0.0.1", 0, ssl=tls)
    server_side.url = f"https://localhost:{server.sockets[0].getsockname()[1]}"
    async with server:
        try:
            yield server_side
        finally:
            server.close()
            await server_side.stop()


# -- Debian's tinyproxy -----------------------------------------------------------------------


@dataclass
class TinyProxy:
    url: str
    log: Path

    def requests(self) -> list[str]:
        """The request lines tinyproxy logged (``CONNECT host:port HTTP/1.1``, ``POST http://…``)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line.split("): ", 1)[1] for line in text.splitlines() if "]: Request (" in line]


@asynccontextmanager
async def tinyproxy(
    workdir: Path, *, connect_ports: list[int], basic_auth: tuple[str, str] | None = None
) -> AsyncIterator[TinyProxy]:
    """tinyproxy in the foreground on a free loopback port, its files in ``workdir``: CONNECT
    allowed to ``connect_ports`` only, and Basic credentials required if given."""
    port = free_port("127.0.0.1")
    log = workdir / "tinyproxy.log"
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Timeout 60",
        "MaxClients 50",
        "LogLevel Info",
        f'LogFile "{log}"',
        f'PidFile "{workdir / "tinyproxy.pid"}"',
        "Allow 127.0.0.1",
        "DisableViaHeader Yes",
        *(f"ConnectPort {p}" for p in connect_ports),
    ]
    if basic_auth is not None:
        lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
    config = workdir / "tinyproxy.conf"
    config.write_text("\n".join(lines) + "\n")
    process = await asyncio.create_subprocess_exec(
        system_binary("tinyproxy"),
        "-d",
        "-c",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    assert process.returncode is None, f"tinyproxy did not start: see {log}"
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                break
        yield TinyProxy(f"http://127.0.0.1:{port}", log)
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
