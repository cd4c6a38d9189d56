"""The ``httpx`` transport: the upstream contract (``sluice.upstream.Upstream``) on httpx's
``AsyncClient``, with HTTP/2 (negotiated by ALPN on https origins, through ``h2``).

For what the gateway's own client does not cover: an upstream that speaks only HTTP/2, or a
network in front of the provider that the fast client does not get along with. Every error of
httpx (and of httpcore, h2, ssl and the sockets below it) is mapped here to an
``UpstreamError``: ``UpstreamConnectError`` before the headers, ``UpstreamStalled`` for a read
past the stall deadline, ``UpstreamBroken`` for a body that breaks.

The body is read raw (``aiter_raw``) and ``accept-encoding: identity`` is asked: nothing is
decompressed behind the gateway's back, and an answer in another content-encoding is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import Any

import h2.errors
import httpx

from sluice.errors import UpstreamBroken, UpstreamConnectError, UpstreamError, UpstreamStalled
from sluice.transports.failures import connect_failure, describe
from sluice.transports.network import Network, Proxy
from sluice.transports.pulled import PulledStream, kept_headers
from sluice.transports.status import dropped, refusal, status_error
from sluice.upstream import _MAX_ERROR_BODY, MAX_BODY_BYTES, _origin


class HttpxUpstream:
    """One ``AsyncClient`` per proxy in use (most often one: direct, or the provider's)."""

    def __init__(
        self,
        connect_timeout: float = 10.0,
        stall_timeout: float | None = None,
        max_body: int = MAX_BODY_BYTES,
        network: Network | None = None,
        *,
        http2: bool = True,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._stall = stall_timeout or None
        #: the most one response's body may take (``streams.max_stream_bytes``)
        self._max_body = max_body or MAX_BODY_BYTES
        self._timeout = httpx.Timeout(None, connect=connect_timeout, read=stall_timeout or None)
        self._network = network or Network()
        self._http2 = http2
        self._clients: dict[Proxy | None, httpx.AsyncClient] = {}
        self._closes: set[asyncio.Task[None]] = set()

    def _client(self, url: httpx.URL) -> httpx.AsyncClient:
        port = url.port or (443 if url.scheme == "https" else 80)
        proxy = self._network.proxy_for(url.scheme, url.host, port)
        client = self._clients.get(proxy)
        if client is None:
            self._clients[proxy] = client = httpx.AsyncClient(
                timeout=self._timeout,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=1000),
                verify=self._network.ssl_context(),
                http2=self._http2,
                trust_env=False,  # the proxies are ours (``Network``), read once
                proxy=_httpx_proxy(proxy),
                follow_redirects=False,
            )
        return client

    def _closing(self, close: Coroutine[Any, Any, None]) -> None:
        # httpx closes asynchronously: the client owns the closing task and awaits it.
        task = asyncio.ensure_future(_quietly(close))
        self._closes.add(task)
        task.add_done_callback(self._closes.discard)

    def open(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        accepted: asyncio.Future[None] | None = None,
    ) -> Coroutine[Any, Any, PulledStream]:
        return self._open(url, headers, body, accepted)

    async def _open(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        accepted: asyncio.Future[None] | None,
    ) -> PulledStream:
        try:
            target = httpx.URL(url)
            if target.scheme not in ("http", "https") or not target.host:
                raise UpstreamConnectError(f"invalid upstream URL {_origin(url)!r}: http(s) only")
            request_headers = {
                name: value
                for name, value in headers.items()
                if name.lower() not in ("host", "content-length", "transfer-encoding")
            }
            request_headers["accept-encoding"] = "identity"
            client = self._client(target)
            request = client.build_request("POST", target, headers=request_headers, content=body)
            response = await client.send(request, stream=True)
        except UpstreamError:
            raise
        except httpx.TimeoutException as exc:
            raise UpstreamConnectError(f"no answer from {_origin(url)} in time") from exc
        except httpx.RemoteProtocolError as exc:
            if "disconnected" in str(exc):  # the request was written: an attempt, not resent
                raise dropped(url) from exc
            raise connect_failure(f"cannot reach {_origin(url)}", exc) from exc
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
            raise connect_failure(f"cannot reach {_origin(url)}", exc) from exc
        status = response.status_code
        kept = kept_headers(list(response.headers.items()))
        if status >= 400:
            raw = await self._error_body(response)
            raise status_error(status, raw, kept.get("retry-after"))
        refused = refusal(status, kept)
        if refused is not None:
            self._closing(response.aclose())
            raise refused
        if accepted is not None and not accepted.done():
            accepted.set_result(None)

        ended = False

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal ended
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
                ended = True
            except httpx.TimeoutException as exc:
                raise UpstreamStalled(
                    "no byte from the upstream within the stall deadline"
                ) from exc
            except (httpx.HTTPError, httpx.StreamError, OSError) as exc:
                raise UpstreamBroken(
                    f"upstream connection broke mid-stream: {describe(exc)}"
                ) from exc

        def close() -> None:
            self._closing(_abort(response) if not ended else response.aclose())

        return PulledStream(
            status, kept, chunks(), close, close, stall=self._stall, max_body=self._max_body
        )

    async def _error_body(self, response: httpx.Response) -> bytes:
        body = bytearray()
        try:
            async with asyncio.timeout(self._connect_timeout):
                async for chunk in response.aiter_raw():
                    body.extend(chunk[: _MAX_ERROR_BODY - len(body)])
                    if len(body) >= _MAX_ERROR_BODY:
                        break
        except (httpx.HTTPError, httpx.StreamError, OSError, TimeoutError):
            pass
        finally:
            self._closing(response.aclose())
        return bytes(body)

    async def close(self) -> None:
        await asyncio.gather(*self._closes, return_exceptions=True)
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


def _httpx_proxy(proxy: Proxy | None) -> httpx.Proxy | None:
    if proxy is None:
        return None
    if proxy.username or proxy.password:
        return httpx.Proxy(proxy.url, auth=(proxy.username, proxy.password))
    return httpx.Proxy(proxy.url)


async def _quietly(close: Coroutine[Any, Any, None]) -> None:
    """A response's close: what it raises (the connection was broken already) is of no use
    to anyone, and must not be left in a task that nobody awaits."""
    with contextlib.suppress(httpx.HTTPError, OSError):
        await close


async def _abort(response: httpx.Response) -> None:
    """Close a response before its body's end. On HTTP/1.1 httpcore closes the connection,
    which the provider sees. On HTTP/2 it only forgets the stream (encode/httpcore#943): the
    provider would go on generating into a 16 MB window. The stream is reset here
    (RST_STREAM, CANCEL) on httpcore's connection, as its unmerged fix (#944) does, when the
    response is on one; the connection and its other streams go on."""
    target = _h2_stream(response) if response.http_version == "HTTP/2" else None
    if target is not None:
        connection, stream_id, request = target
        with contextlib.suppress(Exception):  # (the stream or the connection is gone already)
            connection._h2_state.reset_stream(stream_id, error_code=h2.errors.ErrorCodes.CANCEL)
            await connection._write_outgoing_data(request)
    await response.aclose()


def _h2_stream(response: httpx.Response) -> tuple[Any, int, Any] | None:
    """httpcore's HTTP/2 connection, stream id and request under ``response`` (httpx 0.28,
    httpcore 1.0: ``BoundAsyncStream`` → ``AsyncResponseStream`` → ``PoolByteStream`` →
    ``HTTP2ConnectionByteStream``); None where the layers are not these."""
    layer: Any = response.stream
    for name in ("_stream", "_httpcore_stream", "_stream"):
        layer = getattr(layer, name, None)
    connection = getattr(layer, "_connection", None)
    stream_id = getattr(layer, "_stream_id", None)
    request = getattr(layer, "_request", None)
    if not hasattr(connection, "_h2_state") or not isinstance(stream_id, int) or request is None:
        return None
    return connection, stream_id, request
