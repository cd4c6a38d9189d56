"""The alternatives the choices comparison measures the gateway with, and its app factory.

The gateway's own upstream client (``sluice.upstream.UpstreamClient``) pushes each piece of a
body from the socket's read callback into the session. The alternatives implement the same
transport contract (``sluice.upstream.Upstream``) with a library's streaming client, mapping its
errors the same way; the body is pulled by a task and pushed on (``PulledStream``), which is how
a library that returns an async iterator has to be driven:

- ``AiohttpUpstream``: aiohttp's ``ClientSession`` (the gateway's client before its own);
- ``HttpxUpstream``: httpx's ``AsyncClient``.

``gateway_app()`` builds the gateway for any ASGI server that takes a factory (uvicorn,
granian), from environment variables, so each server runs exactly the same application:

- ``SLUICE_BENCH_CONFIG``: the gateway's TOML configuration;
- ``SLUICE_BENCH_UPSTREAM``: ``sluice`` (the default), ``aiohttp`` or ``httpx``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any

import aiohttp
import httpx

from sluice.config import load_settings
from sluice.errors import (
    UpstreamBroken,
    UpstreamConnectError,
    UpstreamStalled,
    UpstreamStatus,
    classify_status,
)
from sluice.gateway.app import GatewayApp, create_app
from sluice.gateway.gcpolicy import tune_gc
from sluice.upstream import Flush, Progress, Sink, Upstream, UpstreamClient


class PulledStream:
    """The push contract over a body pulled from an async iterator by a task of its own."""

    __slots__ = (
        "_chunks",
        "_close",
        "_finished",
        "_release",
        "_resumed",
        "_task",
        "headers",
        "status",
    )

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        chunks: AsyncIterator[bytes],
        close: Callable[[], None],
        release: Callable[[], None],
    ) -> None:
        self.status = status
        self.headers = headers
        self._chunks = chunks
        self._close = close
        self._release = release
        self._task: asyncio.Task[None] | None = None
        self._resumed: asyncio.Future[None] | None = None
        self._finished = False

    def start(
        self, sink: Sink, flush: Flush | None = None, progress: Progress | None = None
    ) -> asyncio.Task[None]:
        # (``progress`` is not used: the stall deadline here is the library's read timeout)
        self._task = asyncio.ensure_future(self._pump(sink, flush))
        return self._task

    async def _pump(self, sink: Sink, flush: Flush | None) -> None:
        async for chunk in self._chunks:
            sink(chunk)
            if flush is not None:
                flush()
            if self._finished:
                return
            if self._resumed is not None:
                await self._resumed

    def pause(self) -> None:
        if self._resumed is None:
            self._resumed = asyncio.get_running_loop().create_future()

    def resume(self) -> None:
        resumed, self._resumed = self._resumed, None
        if resumed is not None and not resumed.done():
            resumed.set_result(None)

    def finish(self) -> None:
        self._finished = True

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._close()

    def release(self) -> None:
        self._release()


class AiohttpUpstream:
    def __init__(self, connect_timeout: float = 10.0, stall_timeout: float | None = None) -> None:
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=stall_timeout or None
        )
        self._session: aiohttp.ClientSession | None = None

    async def open(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        accepted: asyncio.Future[None] | None = None,  # (the session resolves it itself)
    ) -> PulledStream:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), timeout=self._timeout
            )
        try:
            response = await self._session.post(url, data=body, headers=headers)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise UpstreamConnectError(f"cannot reach the upstream: {exc!r}") from exc
        if response.status >= 400:
            response.close()
            raise _status_error(response.status)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.content.iter_any():
                    yield chunk
            except aiohttp.ServerTimeoutError as exc:
                raise UpstreamStalled("no byte from the upstream within the deadline") from exc
            except (aiohttp.ClientError, ConnectionError) as exc:
                raise UpstreamBroken(f"upstream connection broke mid-stream: {exc!r}") from exc

        return PulledStream(
            response.status, response.headers, chunks(), response.close, response.release
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpxUpstream:
    def __init__(self, connect_timeout: float = 10.0, stall_timeout: float | None = None) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=connect_timeout, read=stall_timeout),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=1000),
        )
        self._closes: set[asyncio.Task[None]] = set()

    def _closing(self, close: Coroutine[Any, Any, None]) -> None:
        # httpx closes asynchronously: the client owns the closing task and awaits it.
        task = asyncio.ensure_future(close)
        self._closes.add(task)
        task.add_done_callback(self._closes.discard)

    async def open(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        accepted: asyncio.Future[None] | None = None,  # (the session resolves it itself)
    ) -> PulledStream:
        try:
            request = self._client.build_request("POST", url, headers=dict(headers), content=body)
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise UpstreamConnectError(f"cannot reach the upstream: {exc}") from exc
        if response.status_code >= 400:
            await response.aclose()
            raise _status_error(response.status_code)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            except httpx.ReadTimeout as exc:
                raise UpstreamStalled("no byte from the upstream within the deadline") from exc
            except httpx.HTTPError as exc:
                raise UpstreamBroken(f"upstream connection broke mid-stream: {exc}") from exc

        closed = False

        def close() -> None:
            nonlocal closed
            if not closed:
                closed = True
                self._closing(response.aclose())

        return PulledStream(response.status_code, response.headers, chunks(), close, close)

    async def close(self) -> None:
        await asyncio.gather(*self._closes, return_exceptions=True)
        await self._client.aclose()


def _status_error(status: int) -> UpstreamStatus:
    kind, retryable = classify_status(status)
    return UpstreamStatus(
        status, f"upstream answered HTTP {status}", type=kind, retryable=retryable
    )


UPSTREAMS: dict[str, Callable[[float, float | None], Upstream]] = {
    "sluice": UpstreamClient,
    "aiohttp": AiohttpUpstream,
    "httpx": HttpxUpstream,
}


def gateway_app() -> GatewayApp:
    """The app factory: ``uvicorn --factory`` / ``granian --factory`` call it once."""
    settings = load_settings(os.environ["SLUICE_BENCH_CONFIG"])
    streams = settings.streams
    choice = os.environ.get("SLUICE_BENCH_UPSTREAM", "sluice")
    if choice not in UPSTREAMS:
        raise ValueError(f"SLUICE_BENCH_UPSTREAM={choice!r}: use one of {', '.join(UPSTREAMS)}")
    upstream = UPSTREAMS[choice](streams.connect_timeout, streams.stall_timeout)
    app = create_app(settings, upstream=upstream)
    tune_gc()
    return app
