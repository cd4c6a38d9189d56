"""The alternatives the choices comparison measures the gateway with, and its app factory.

``HttpxUpstream`` is the transport contract (``sluice.upstream.Upstream``) implemented with
httpx instead of aiohttp, mapping its errors the same way. ``gateway_app()`` builds the
gateway for any ASGI server that takes a factory (uvicorn, granian), from environment
variables, so each server runs exactly the same application:

- ``SLUICE_BENCH_CONFIG``: the gateway's TOML configuration;
- ``SLUICE_BENCH_UPSTREAM``: ``aiohttp`` (the default) or ``httpx``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import Any

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
from sluice.upstream import Upstream, UpstreamClient


class HttpxStream:
    __slots__ = ("_closing", "_owner", "_response", "headers", "status")

    def __init__(self, response: httpx.Response, owner: HttpxUpstream) -> None:
        self._response = response
        self._owner = owner
        self._closing = False
        self.status = response.status_code
        self.headers: Mapping[str, str] = response.headers

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.ReadTimeout as exc:
            raise UpstreamStalled("no byte from the upstream within the stall deadline") from exc
        except httpx.HTTPError as exc:
            raise UpstreamBroken(f"upstream connection broke mid-stream: {exc}") from exc

    def close(self) -> None:
        # httpx closes asynchronously: the client owns the closing task and awaits it.
        if not self._closing:
            self._closing = True
            self._owner.closing(self._response.aclose())

    def release(self) -> None:
        self.close()


class HttpxUpstream:
    def __init__(self, connect_timeout: float = 10.0, stall_timeout: float | None = None) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=connect_timeout, read=stall_timeout),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=1000),
        )
        self._closes: set[asyncio.Task[None]] = set()

    def closing(self, close: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(close)
        self._closes.add(task)
        task.add_done_callback(self._closes.discard)

    async def open(self, url: str, headers: Mapping[str, str], body: bytes) -> HttpxStream:
        try:
            request = self._client.build_request("POST", url, headers=dict(headers), content=body)
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise UpstreamConnectError(f"cannot reach the upstream: {exc}") from exc
        if response.status_code < 400:
            return HttpxStream(response, self)
        await response.aclose()
        kind, retryable = classify_status(response.status_code)
        raise UpstreamStatus(
            response.status_code,
            f"upstream answered HTTP {response.status_code}",
            type=kind,
            retryable=retryable,
        )

    async def close(self) -> None:
        await asyncio.gather(*self._closes, return_exceptions=True)
        await self._client.aclose()


def gateway_app() -> GatewayApp:
    """The app factory: ``uvicorn --factory`` / ``granian --factory`` call it once."""
    settings = load_settings(os.environ["SLUICE_BENCH_CONFIG"])
    streams = settings.streams
    choice = os.environ.get("SLUICE_BENCH_UPSTREAM", "aiohttp")
    upstream: Upstream
    if choice == "httpx":
        upstream = HttpxUpstream(streams.connect_timeout, streams.stall_timeout)
    elif choice == "aiohttp":
        upstream = UpstreamClient(streams.connect_timeout, streams.stall_timeout)
    else:
        raise ValueError(f"SLUICE_BENCH_UPSTREAM={choice!r}: use aiohttp or httpx")
    app = create_app(settings, upstream=upstream)
    tune_gc()
    return app
