"""The upstream HTTP transport: a streaming POST on a pooled HTTP/1.1 connection, its body pushed
to the consumer as it arrives.

The contract (``Upstream``, ``UpstreamStream``) is small:

- ``await upstream.open(url, headers, body)`` sends the request and returns once the status line
  and headers are in; an error status raises ``UpstreamStatus`` with the provider's message.
  ``open()`` itself sends the request when a pooled connection is idle, before anything is
  awaited, and a future passed as ``accepted`` is resolved in the read callback that brings
  a good status (see ``UpstreamClient.open``);
- ``stream.start(sink, flush, progress)`` calls ``sink(piece)`` for every piece of the body as
  it is read, then ``flush()`` once for all the pieces one read of the socket brought (an
  HTTP chunk is a piece: a read of a provider that writes fast brings many), and returns a
  future that ends when the body does (or fails with ``UpstreamBroken`` / ``UpstreamStalled``
  / ``UpstreamTooLarge``, or with whatever ``sink`` raised). ``progress()``, if given, counts
  the content the consumer has made of the body so far: the stall deadline is then reset by
  content only, never by comments or keep-alive bytes;
- only an event stream is a stream: a 3xx (``UpstreamRedirect``), a 2xx that is not
  ``text/event-stream`` (``UpstreamNotEventStream``) or a compressed body
  (``UpstreamEncoded``: the request asks for ``identity``, and nothing is decompressed but
  an error status's bounded body) is refused as ``open()`` returns, before ``accepted``;
- a request is sent once: a connection that closes after the request was written to it and
  before any answer fails the attempt (``UpstreamDropped``) and the caller's retry policy
  decides; only a pooled connection seen closed *before* the write is replaced silently;
- ``pause()`` / ``resume()`` stop and restart reading the socket (backpressure reaches the
  provider as TCP flow control); ``finish()`` says the consumer has seen the end of the stream;
- ``release()`` hands the connection back to the pool, ``close()`` drops it so the provider sees
  the client go. Both are idempotent, and harmless after each other.

Why a client of its own, and push rather than pull: the body goes from the socket's
``data_received`` through the HTTP parser (``httptools``, llhttp in C) straight into the
session's decoder, with no task, queue or async iterator in between. aiohttp (used before)
buffered each piece in a ``StreamReader`` and woke the session's task to read it: one task
switch and a few layers of generators per chunk, and about 10 KB of objects per open stream.
Measured in ``docs/benchmarks.md``.

Errors are mapped here to ``sluice.errors.UpstreamError``s; nothing above this module sees
socket, ssl or parser exceptions.

Proxies and TLS settings come from a ``sluice.transports.network.Network``: an https origin
behind a proxy is reached through a ``CONNECT`` tunnel with TLS inside it, an http origin with
the request in absolute form sent to the proxy (as curl and httpx do: proxies commonly allow
``CONNECT`` to port 443 only). Only the connection's opening and the request's head change:
the relayed bytes take the same way.
"""

from __future__ import annotations

import asyncio
import select
import ssl
import zlib
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import httptools
import orjson

from sluice.errors import (
    UpstreamBroken,
    UpstreamConnectError,
    UpstreamDropped,
    UpstreamEncoded,
    UpstreamError,
    UpstreamHeaderInvalid,
    UpstreamNotEventStream,
    UpstreamRedirect,
    UpstreamStalled,
    UpstreamStatus,
    UpstreamTooLarge,
    classify_status,
)
from sluice.transports.failures import connect_failure
from sluice.transports.network import Network, Proxy
from sluice.transports.tunnel import open_tunnel
from sluice.wheel import wheel

Sink = Callable[[bytes], None]
#: called after the pieces of one read, for the consumer to act on them together
Flush = Callable[[], None]
#: how much content the consumer has made of the body so far (any count that grows with it)
Progress = Callable[[], int]

#: The response headers a response keeps (``UpstreamStream.headers``): those this module and
#: the sessions read, and the provider's request id. A provider's response carries twenty or
#: so others (rate-limit counters, cookies, CDN and tracing headers): some 4 KB of strings
#: that every open stream would hold for nothing.
KEPT_HEADERS = frozenset(
    {
        "content-encoding",
        "content-length",
        "content-type",
        "location",
        "request-id",
        "retry-after",
        "transfer-encoding",
        "x-request-id",
    }
)

_MAX_ERROR_BODY = 64 * 1024
#: the most a response's status line and headers may take (a provider's are 1 to 4 KB)
MAX_HEAD_BYTES = 64 * 1024
#: the most one response's body may take, when the client is given no bound
MAX_BODY_BYTES = 128 * 1024 * 1024
#: the first status that is an error: ``open()`` raises it, ``accepted`` is not resolved
_ERROR_STATUS = 400
#: how long an idle pooled connection is kept (aiohttp's default, and below the idle timeouts
#: of the common servers and load balancers, so the pool rarely hands out a closed one)
KEEPALIVE = 15.0
#: how long a connection released before its body's end may take to finish it and be pooled
_DRAIN = 2.0


class UpstreamStream(Protocol):
    """One streaming response, as the sessions see it."""

    status: int
    #: the headers named in ``KEPT_HEADERS``, by lowercase name
    headers: Mapping[str, str]

    def start(
        self, sink: Sink, flush: Flush | None = None, progress: Progress | None = None
    ) -> Awaitable[None]:
        """Push the body into ``sink``, and call ``flush`` after the pieces of each read;
        the result ends with the body. ``progress`` makes the stall deadline count content."""
        ...

    def pause(self) -> None:
        """Stop reading the socket until ``resume()``."""

    def resume(self) -> None: ...

    def finish(self) -> None:
        """The consumer has seen the end: the result ends now, later bytes are dropped."""

    def close(self) -> None:
        """Close the connection (the provider sees the client go). Idempotent."""

    def release(self) -> None:
        """Hand the connection back to the pool (or close it if it cannot be reused)."""


class Pending(Protocol):
    """A request on its way, as ``open()`` gives it: awaited once, for the response; or
    closed, if it never will be (a coroutine is one)."""

    def __await__(self) -> Generator[Any, None, UpstreamStream]: ...

    def close(self) -> None: ...


class Upstream(Protocol):
    """The transport contract: open a streaming POST, and close the client."""

    def open(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        accepted: asyncio.Future[None] | None = None,
    ) -> Pending: ...

    async def close(self) -> None: ...


class UpstreamResponse:
    """One response on one connection. Its owner calls ``release()`` or ``close()``."""

    __slots__ = (
        "_accepted",
        "_buffered",
        "_conn",
        "_decoder",
        "_done",
        "_ended",
        "_finished",
        "_flush",
        "_headers_ready",
        "_progress",
        "_sink",
        "headers",
        "status",
    )

    def __init__(self, conn: _Connection, accepted: asyncio.Future[None] | None = None) -> None:
        self._conn: _Connection | None = conn
        #: resolved with the headers, if their status is below 400 (``UpstreamClient.open``)
        self._accepted = accepted
        self.status = 0
        self.headers: Mapping[str, str] = {}
        self._headers_ready: asyncio.Future[None] = conn.loop.create_future()
        self._done: asyncio.Future[None] | None = None
        self._sink: Sink | None = None
        self._flush: Flush | None = None
        self._progress: Progress | None = None
        #: the pieces read before ``start()``; empty as a shared ``()``, not a list per stream
        self._buffered: list[bytes] | tuple[()] = ()
        self._decoder: zlib._Decompress | None = None
        #: the body's end (or its failure) has been seen; later events are ignored
        self._ended = False
        self._finished = False

    # -- the consumer's side ------------------------------------------------------------------

    def start(
        self, sink: Sink, flush: Flush | None = None, progress: Progress | None = None
    ) -> asyncio.Future[None]:
        done = self._done
        if done is None:  # else the body broke before the consumer started: done holds why
            assert self._conn is not None, "start() before release or close"
            self._done = done = self._conn.loop.create_future()
        buffered, self._buffered = self._buffered, ()
        self._sink = sink
        self._flush = flush
        self._progress = progress
        if buffered:  # what came before start(), or before the break
            for piece in buffered:
                self._deliver(piece)
            if flush is not None:
                flush()
        if self._ended:
            self._sink = None
            if not done.done():
                done.set_result(None)
        return done

    def pause(self) -> None:
        if self._conn is not None:
            self._conn.pause()

    def resume(self) -> None:
        if self._conn is not None:
            self._conn.resume()

    def finish(self) -> None:
        self._finished = True
        self._sink = None
        done = self._done
        if done is not None and not done.done():
            done.set_result(None)

    def close(self) -> None:
        self._ended = True  # nobody waits for what the connection's end would say
        self._sink = None
        done = self._done
        if done is not None and not done.done():
            done.cancel()
        self._drop_connection()

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.release()

    # -- the connection's side ----------------------------------------------------------------

    def _on_headers(self, status: int, headers: dict[str, str]) -> None:
        self.status = status
        self.headers = headers
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if status >= _ERROR_STATUS:
            # An error's body is read for its message, at most ``_MAX_ERROR_BODY`` bytes of it:
            # decompressed (each piece at most that much) if the provider compressed it anyway.
            if encoding in ("gzip", "x-gzip"):
                self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            elif encoding == "deflate":
                self._decoder = zlib.decompressobj()
        else:
            refusal = _refusal(status, headers, encoding)
            if refusal is not None:
                self._fail(refusal)
                return
        if not self._headers_ready.done():
            self._headers_ready.set_result(None)
        accepted, self._accepted = self._accepted, None
        if accepted is not None and status < _ERROR_STATUS and not accepted.done():
            # after ``_headers_ready``: its waiter (``open()``'s) resumes first, in the same
            # turn of the loop as this future's
            accepted.set_result(None)

    def _on_body(self, piece: bytes) -> None:
        if self._decoder is not None:
            try:
                piece = self._decoder.decompress(piece, _MAX_ERROR_BODY)
            except zlib.error as exc:
                self._fail(UpstreamBroken(f"upstream body does not decompress: {exc}"))
                return
            if not piece:
                return
        if self._sink is None:
            if not self._finished and not self._ended:  # (else nobody will read it)
                buffered = self._buffered
                if buffered:
                    buffered.append(piece)
                else:
                    self._buffered = [piece]
            return
        self._deliver(piece)

    def _deliver(self, piece: bytes) -> None:
        sink = self._sink
        if sink is None:  # finished, or failed, by an earlier piece
            return
        try:
            sink(piece)
        except Exception as exc:  # noqa: BLE001 - the consumer's own failure ends its stream
            self._sink_failed(exc)

    def _sink_failed(self, exc: Exception) -> None:
        if isinstance(exc, UpstreamError):
            # A typed error needs no traceback; kept, it would hold the frames of this read
            # (and this response, in a cycle) until a full collection.
            exc.__traceback__ = exc.__context__ = None
        self._sink = None
        self._ended = True
        done = self._done  # set by start(), before the first piece is delivered
        if done is not None and not done.done():
            done.set_exception(exc)
        self._drop_connection()

    def _on_end(self) -> None:
        if self._ended:
            return
        # (a decoder's pending input is not flushed: ``flush()`` would inflate all of it, and
        # the pieces already gave the error body all it may hold)
        self._decoder = None
        self._ended = True
        done = self._done
        if done is not None and not done.done():
            done.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        """The response ends with ``exc``: before the headers, ``open()`` raises it; after,
        the body's future does (unless the consumer has finished with it already)."""
        if self._ended:
            return
        self._ended = True
        self._sink = None
        if not self._headers_ready.done():
            self._headers_ready.set_exception(exc)
        elif not self._finished:
            done = self._done
            if done is None:
                self._done = done = asyncio.get_running_loop().create_future()
            if not done.done():
                done.set_exception(exc)
        self._drop_connection()

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _read_error_body(self, within: float) -> bytes:
        body = bytearray()

        def collect(piece: bytes) -> None:
            body.extend(piece[: _MAX_ERROR_BODY - len(body)])
            if len(body) >= _MAX_ERROR_BODY:
                self.finish()

        try:
            async with asyncio.timeout(within):
                await self.start(collect)
        except (UpstreamError, TimeoutError):
            pass
        finally:
            self.close()
        return bytes(body)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection to an origin: a request at a time, pooled between them."""

    __slots__ = (
        "_client",
        "_deadline",
        "_eof_body",
        "_header_list",
        "_idle_timer",
        "_keep_alive",
        "_last_byte",
        "_limit",
        "_parser",
        "_paused",
        "_progress_at",
        "_progress_seen",
        "_received",
        "_stall",
        "closed",
        "key",
        "loop",
        "response",
        "reused",
        "transport",
    )

    def __init__(self, client: UpstreamClient, key: tuple[str, str, int]) -> None:
        self._client = client
        self.key = key
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.response: UpstreamResponse | None = None
        #: the headers of the response being read; between responses a shared ``()``
        self._header_list: list[tuple[bytes, bytes]] | tuple[()] = ()
        self._idle_timer: asyncio.TimerHandle | None = None
        #: the stall deadline's slot on the loop's deadline wheel
        self._deadline: int | None = None
        self._last_byte = 0.0
        #: the last progress count the stall check saw, and when it last saw it grow
        self._progress_seen = -1
        self._progress_at = 0.0
        self._stall = 0.0
        #: bytes of the current response read so far, and their bound: ``MAX_HEAD_BYTES``
        #: until the headers are in, then the client's body bound
        self._received = 0
        self._limit = MAX_HEAD_BYTES
        self._eof_body = False
        self._keep_alive = False
        self._paused = False
        self.closed = False
        self.reused = False

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes on an idle connection: it cannot be reused
            self.close()
            return
        received = self._received = self._received + len(data)
        self._last_byte = self.loop.time()
        # Past the bound: a body's is final; the head's, only if this read does not end it
        # (a read may bring the head and much of the body with it).
        over = received > self._limit
        if over and response.status:
            self._too_large(response)
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            pass  # the response has ended with the callback's error already
        except httptools.HttpParserError as exc:
            if self.response is response:  # (not ended earlier in this read)
                response._fail(_broken(response, f"upstream sent invalid HTTP: {exc}"))
            self.close()
        if over and not response.status:
            self._too_large(response)
            return
        flush = response._flush  # (the response of the read, even if it ended in it)
        if flush is not None:
            flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._client._forget(self)
        self._cancel_timers()
        response = self.response
        self.response = None
        if response is None:
            return
        if self._eof_body and response.status:
            response._on_end()  # a body without a length ends at the connection's end
        elif not self._received:
            # The request was written, and nothing came back: the provider may have read it
            # and be working on it, so it is not sent again here (the retry policy decides).
            response._fail(
                UpstreamDropped(
                    "the upstream closed the connection after the request was written, "
                    "before any answer" + (" (a pooled connection)" if self.reused else "")
                )
            )
        else:
            why = f": {type(exc).__name__}" if exc else ""
            response._fail(_broken(response, f"upstream closed the connection{why}"))

    # -- httptools callbacks ------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        header_list = self._header_list
        if header_list:
            header_list.append((name, value))
        else:
            self._header_list = [(name, value)]

    def on_headers_complete(self) -> None:
        response = self.response
        status = self._parser.get_status_code()
        raw, self._header_list = self._header_list, ()
        if response is None or 100 <= status < 200:
            return
        headers: dict[str, str] = {}
        for name, value in raw:
            key = name.decode("latin-1").lower()
            if key not in KEPT_HEADERS:
                continue
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        self._eof_body = "content-length" not in headers and "chunked" not in headers.get(
            "transfer-encoding", ""
        )
        self._keep_alive = self._parser.should_keep_alive()
        self._limit = self._client._max_body + self._received
        response._on_headers(status, headers)

    def on_body(self, body: bytes) -> None:
        response = self.response
        if response is None:
            return
        sink = response._sink
        if sink is None or response._decoder is not None:
            response._on_body(body)
            return
        try:  # (``_on_body``'s usual case, inline: this is every piece's way)
            sink(body)
        except Exception as exc:  # noqa: BLE001 - the consumer's own failure ends its stream
            response._sink_failed(exc)

    def on_message_complete(self) -> None:
        response = self.response
        if response is None or not response.status:
            return  # the end of a 1xx interim response
        self._eof_body = False
        self._keep_alive = self._keep_alive and self._parser.should_keep_alive()
        response._on_end()
        if response._conn is None:  # released before its end, and now drained
            self._to_pool()

    # -- the client's side --------------------------------------------------------------------

    def request(
        self,
        head: bytes,
        body: bytes,
        stall: float | None,
        accepted: asyncio.Future[None] | None = None,
    ) -> UpstreamResponse:
        assert self.transport is not None
        self._cancel_timers()
        self.response = response = UpstreamResponse(self, accepted)
        self._received = 0
        self._limit = MAX_HEAD_BYTES
        self._progress_seen = -1
        self._eof_body = False
        self.transport.write(head + body)
        if stall:
            self._stall = stall
            self._last_byte = self.loop.time()
            self._deadline = wheel().call_later(stall, self, _Connection._check_stall)
        return response

    def _check_stall(self) -> None:
        """The stall deadline, checked lazily: a chunk costs one clock read and no timer.

        Before the consumer starts the body, any byte resets it (re-armed for the last
        byte's time plus the deadline). Once it gives a ``progress`` count, only content
        does: each check reads the count, and a count that grew since the last check is
        progress made at most one check ago. While the count grows the check comes every
        quarter of the deadline, so a stall is found between 1 and 1.25 deadlines after the
        last content; comments and keep-alive bytes never count."""
        response = self.response
        if response is None or self.closed:
            return
        now = self.loop.time()
        stall = self._stall
        progress = response._progress
        if self._paused:  # the consumer is behind: the silence is ours, not the provider's
            self._last_byte = self._progress_at = now
            self._progress_seen = -1
            last = now
        elif progress is None:
            last = self._last_byte
        else:
            count = progress()
            if count != self._progress_seen:
                self._progress_seen = count
                self._progress_at = now
                self._deadline = wheel().call_at(now + stall / 4, self, _Connection._check_stall)
                return
            last = self._progress_at
        if now - last >= stall:
            self._deadline = None
            what = "byte" if progress is None else "content (comments and keep-alives aside)"
            message = f"no {what} from the upstream for {stall:g} s (the stall deadline)"
            if response.status:
                response._fail(UpstreamStalled(message))
            else:
                response._fail(UpstreamConnectError(f"no answer from the upstream: {message}"))
            self.close()
            return
        self._deadline = wheel().call_at(last + stall, self, _Connection._check_stall)

    def _too_large(self, response: UpstreamResponse) -> None:
        if response.status:
            what = f"the body is over {self._client._max_body:,} bytes"
        else:
            what = f"the status line and headers are over {MAX_HEAD_BYTES:,} bytes"
        response._fail(UpstreamTooLarge(f"upstream response too large: {what}"))
        self.close()

    def pause(self) -> None:
        if not self._paused and self.transport is not None and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def release(self) -> None:
        self.resume()
        response = self.response
        if self.closed or response is None or not self._keep_alive:
            self.close()
        elif response._ended:
            self._to_pool()
        else:  # the consumer stopped at the stream's last event; the body's end is near
            response._finished = True
            response._sink = None
            self._cancel_timers()
            self._idle_timer = self.loop.call_later(_DRAIN, self.close)

    def _to_pool(self) -> None:
        self._cancel_timers()
        self.response = None
        if self.closed:
            return
        self.reused = True
        self._idle_timer = self.loop.call_later(KEEPALIVE, self.close)
        self._client._pool(self)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()
        self._cancel_timers()

    def idle_and_open(self) -> bool:
        """Whether this pooled connection may take a request: its socket has no end and no
        byte waiting (one ``poll`` of the socket, no read)."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return False
        sock = transport.get_extra_info("socket")
        if sock is None:
            return True
        try:
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False

    def _cancel_timers(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._deadline is not None:
            wheel().cancel(self._deadline, self)
            self._deadline = None


class Opening:
    """``UpstreamClient.open``'s result: a request, already out on a pooled connection if
    one was idle. Awaited once, for the response; ``close()`` drops a request that was sent
    but will not be awaited."""

    __slots__ = ("_client", "_sent", "accepted", "body", "error", "head", "key", "url")

    def __init__(
        self,
        client: UpstreamClient,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        accepted: asyncio.Future[None] | None,
    ) -> None:
        self._client = client
        self.url = url
        self.body = body
        self.accepted = accepted
        self.error: UpstreamError | None = None
        self._sent: UpstreamResponse | None = None
        try:
            self.key, self.head = _request_head(url, headers, len(body), client._network)
        except UpstreamError as exc:  # raised where the caller awaits
            self.error = exc
            return
        self._sent = client._send_pooled(self)

    def __await__(self) -> Generator[Any, None, UpstreamResponse]:
        return self._client._answer(self).__await__()

    def take_sent(self) -> UpstreamResponse | None:
        sent, self._sent = self._sent, None
        return sent

    def close(self) -> None:
        sent = self.take_sent()
        if sent is not None:
            sent.close()


class UpstreamClient:
    """A pool of HTTP/1.1 connections to the providers; owned by the gateway's lifespan."""

    def __init__(
        self,
        connect_timeout: float = 10.0,
        stall_timeout: float | None = None,
        max_body: int = MAX_BODY_BYTES,
        network: Network | None = None,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._stall_timeout = stall_timeout or None
        #: the most one response's body may take (``streams.max_stream_bytes``)
        self._max_body = max_body or MAX_BODY_BYTES
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._ssl: ssl.SSLContext | None = None
        #: proxies and the TLS context; None: direct, with the system's CAs
        self._network = network

    def open(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        accepted: asyncio.Future[None] | None = None,
    ) -> Opening:
        """POST ``body``; awaiting the result waits for the status line and headers.

        When a connection to the origin is idle in the pool, the request goes out in this
        call, before anything is awaited: a caller may call ``open()`` in one step of the
        loop and await it in a later one (a session does, from the step that creates it to
        its task's first), and the provider works on the request in between. A result that
        will not be awaited must be closed.

        ``accepted``, if given, is resolved as soon as the status line (below 400) and the
        headers are read, in the read callback itself: whoever waits on it resumes in the same
        turn of the loop as the awaiter of ``open()``, just after it, and not a turn after it
        as it would if that awaiter resolved the future.

        An error status raises ``UpstreamStatus`` with the provider's message, its stable type,
        whether a retry may help, and ``retry-after`` when given.
        """
        return Opening(self, url, headers, body, accepted)

    async def _answer(self, opening: Opening) -> UpstreamResponse:
        if opening.error is not None:
            raise opening.error
        response = await self._send(opening)
        if response.status < _ERROR_STATUS:
            return response
        raw = await response._read_error_body(self._connect_timeout)
        kind, retryable = classify_status(response.status)
        raise UpstreamStatus(
            response.status,
            _error_message(raw) or f"upstream answered HTTP {response.status}",
            type=kind,
            retryable=retryable,
            retry_after=_retry_after(response.headers.get("retry-after")),
        )

    def _send_pooled(self, opening: Opening) -> UpstreamResponse | None:
        """The request, sent now on an idle pooled connection; None if there is none. A
        connection the server has closed (or sent bytes on) while it was idle, and whose end
        the loop has not processed yet, is dropped here, before anything is written to it:
        the only case where a request moves to another connection unseen."""
        idle = self._idle.get(opening.key)
        while idle:
            conn = idle.pop()
            if conn.idle_and_open():
                return self._request(conn, opening)
            conn.close()
        return None

    def _request(self, conn: _Connection, opening: Opening) -> UpstreamResponse:
        return conn.request(opening.head, opening.body, self._stall_timeout, opening.accepted)

    async def _send(self, opening: Opening) -> UpstreamResponse:
        response = opening.take_sent() or self._send_pooled(opening)
        if response is None:
            response = self._request(await self._connect(opening.key, opening.url), opening)
        try:
            await response._headers_ready
        except asyncio.CancelledError:
            response.close()
            raise
        return response

    async def _connect(self, key: tuple[str, str, int], url: str) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        network = self._network
        context = None
        if scheme == "https":
            if network is not None:
                context = network.ssl_context()
            else:
                if self._ssl is None:
                    self._ssl = ssl.create_default_context()
                context = self._ssl
        proxy = network.proxy_for(scheme, host, port) if network is not None else None
        via = f" through proxy {proxy.url}" if proxy is not None else ""
        try:
            async with asyncio.timeout(self._connect_timeout):
                if proxy is None:
                    _, conn = await loop.create_connection(
                        lambda: _Connection(self, key),
                        host,
                        port,
                        ssl=context,
                        server_hostname=host if context else None,
                    )
                elif context is None:  # http: the request goes to the proxy in absolute form
                    _, conn = await loop.create_connection(
                        lambda: _Connection(self, key), proxy.host, proxy.port
                    )
                else:
                    conn = await _tunnelled(self, key, proxy, context)
        except TimeoutError as exc:
            raise UpstreamConnectError(f"timed out connecting to {_origin(url)}{via}") from exc
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
            raise connect_failure(f"cannot reach {_origin(url)}{via}", exc) from exc
        except ValueError as exc:  # a host name IDNA cannot encode, a NUL in it
            raise UpstreamConnectError(
                f"cannot reach {_origin(url)}{via}: {_describe(exc)}"
            ) from exc
        self._open.add(conn)
        return conn

    def _pool(self, conn: _Connection) -> None:
        self._idle.setdefault(conn.key, []).append(conn)

    def _forget(self, conn: _Connection) -> None:
        self._open.discard(conn)
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    async def close(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their connection_lost


async def _tunnelled(
    client: UpstreamClient, key: tuple[str, str, int], proxy: Proxy, context: ssl.SSLContext
) -> _Connection:
    """A connection to an https origin through a CONNECT tunnel, TLS inside it."""
    _, host, port = key
    raw = await open_tunnel(proxy, host, port)
    conn = _Connection(client, key)
    transport = await asyncio.get_running_loop().start_tls(raw, conn, context, server_hostname=host)
    if transport is None:  # (the loop closed the connection while it shook hands)
        raise ConnectionError("the connection closed during the TLS handshake")
    conn.connection_made(transport)
    return conn


def _request_head(
    url: str, headers: Mapping[str, str], length: int, network: Network | None = None
) -> tuple[tuple[str, str, int], bytes]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UpstreamConnectError(f"invalid upstream URL: {exc}") from exc
    scheme, host = parts.scheme, parts.hostname
    if scheme not in ("http", "https") or not host:
        raise UpstreamConnectError(f"invalid upstream URL {_origin(url)!r}: http(s) only")
    if port is None:
        port = 443 if scheme == "https" else 80
    authority = f"[{host}]" if ":" in host else host
    if port != (443 if scheme == "https" else 80):
        authority = f"{authority}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    proxy = network.proxy_for(scheme, host, port) if network and scheme == "http" else None
    if proxy is not None:  # the absolute form, to the proxy (RFC 9112 §3.2.2)
        target = f"http://{authority}{target}"
    lines = [
        f"POST {target} HTTP/1.1",
        f"host: {authority}",
        f"content-length: {length}",
        # a compressed stream would be held back by the provider's compressor
        "accept-encoding: identity",
    ]
    if proxy is not None and proxy.authorization is not None:
        lines.append(f"proxy-authorization: {proxy.authorization}")
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in ("host", "content-length", "transfer-encoding", "accept-encoding"):
            continue
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise UpstreamHeaderInvalid(f"header {name!r} has a line break in its name or value")
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    try:
        return (scheme, host, port), "\r\n".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        raise _not_latin1(lines[0], headers) from None


def _not_latin1(request_line: str, headers: Mapping[str, str]) -> UpstreamHeaderInvalid:
    """Which part of the request HTTP/1.1 cannot carry: named, its value never shown (a
    header's value is often a key)."""
    for name, value in headers.items():
        for part, text in (("name", name), ("value", value)):
            bad = next((i for i, c in enumerate(text) if ord(c) > 0xFF), None)
            if bad is not None:
                return UpstreamHeaderInvalid(
                    f"header {name.encode('ascii', 'replace').decode()!r} has a character "
                    f"outside latin-1 in its {part} (at position {bad}); HTTP/1.1 cannot send "
                    "it: check the configured header or the environment variable that holds "
                    "the key (a pasted key may carry a typographic quote)"
                )
    return UpstreamHeaderInvalid(
        "the upstream URL's path has a character outside latin-1: percent-encode it in "
        "the provider's base_url"
    )


def _refusal(status: int, headers: Mapping[str, str], encoding: str) -> UpstreamError | None:
    """Why an answer below 400 is not a stream: a redirect, not an event stream, or a body
    compressed although ``identity`` was asked for; None for an event stream."""
    if 300 <= status < 400:
        location = headers.get("location")
        # (the origin only: a URL may carry a key in its query string)
        to = f" to {_origin(location)}" if location and "://" in location else ""
        return UpstreamRedirect(
            f"upstream answered HTTP {status}, a redirect{to}; the gateway follows none "
            "(a POST is not sent twice): set the provider's base_url to the final address"
        )
    content_type = headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "text/event-stream":
        return UpstreamNotEventStream(
            f"upstream answered HTTP {status} with content-type {content_type or 'none'!r}, "
            "not text/event-stream: not a stream (a login page, a proxy, a wrong base_url?)"
        )
    if encoding != "identity":
        return UpstreamEncoded(
            f"upstream sent its stream with content-encoding {encoding!r} although the "
            "gateway asked for identity; the gateway decompresses no stream"
        )
    return None


def _broken(response: UpstreamResponse, message: str) -> UpstreamError:
    """Before the headers, a broken connection is a failure to connect; after, a broken body."""
    if response.status:
        return UpstreamBroken(f"upstream connection broke mid-stream: {message}")
    return UpstreamConnectError(message)


def _error_message(raw: bytes) -> str:
    """The provider's own error message, from either provider's error body."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:500].decode("utf-8", "replace").strip()
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return ""


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _origin(url: str) -> str:
    # Only scheme and host reach messages: a URL may carry a key in its query string.
    parts = url.split("/", 3)
    return "/".join(parts[:3])


def _describe(exc: BaseException) -> str:
    return type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
