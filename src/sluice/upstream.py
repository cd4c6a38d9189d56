"""The upstream HTTP transport: open a streaming POST, iterate its body, close it. aiohttp inside.

The contract is two calls: ``UpstreamClient.open()`` returns an ``UpstreamResponse`` whose
``chunks()`` yields body bytes as they arrive, and ``close()`` ends it. Every aiohttp error is
mapped to a ``sluice.errors.UpstreamError`` here, so nothing above this module knows aiohttp.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import aiohttp
import orjson

from sluice.errors import (
    UpstreamBroken,
    UpstreamConnectError,
    UpstreamStalled,
    UpstreamStatus,
    classify_status,
)

_MAX_ERROR_BODY = 64 * 1024


class UpstreamStream(Protocol):
    """One streaming response, as the sessions see it."""

    status: int
    headers: Mapping[str, str]

    def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive; ``UpstreamBroken`` / ``UpstreamStalled`` on failure."""
        ...

    def close(self) -> None:
        """Close the connection (the provider sees the client go). Idempotent."""

    def release(self) -> None:
        """After a body read to its end: return the connection to the pool."""


class Upstream(Protocol):
    """The transport contract: open a streaming POST, and close the client."""

    async def open(self, url: str, headers: Mapping[str, str], body: bytes) -> UpstreamStream: ...

    async def close(self) -> None: ...


class UpstreamResponse:
    """One streaming response. Its owner must call ``close()`` (closing twice is harmless)."""

    __slots__ = ("_response", "_stall_timeout", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse, stall_timeout: float | None) -> None:
        self._response = response
        self._stall_timeout = stall_timeout
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive. A broken body raises ``UpstreamBroken``; no byte for
        longer than the stall timeout raises ``UpstreamStalled``."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except aiohttp.ServerTimeoutError as exc:
            raise UpstreamStalled(_stalled_message(self._stall_timeout)) from exc
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise UpstreamBroken(f"upstream connection broke mid-stream: {_describe(exc)}") from exc

    def close(self) -> None:
        """Close the connection itself, so the provider sees the client go and stops."""
        self._response.close()

    def release(self) -> None:
        """After a body read to its end: hand the connection back to the pool."""
        self._response.release()


class UpstreamClient:
    """A pooled HTTP client for all providers; owned by the gateway's lifespan."""

    def __init__(
        self, connect_timeout: float = 10.0, stall_timeout: float | None = None, limit: int = 0
    ) -> None:
        # sock_read is re-armed by every read: it is the stall deadline, and it costs nothing
        # per chunk beyond what aiohttp does anyway.
        self._stall_timeout = stall_timeout or None
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=self._stall_timeout
        )
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return self._session

    async def open(self, url: str, headers: Mapping[str, str], body: bytes) -> UpstreamResponse:
        """POST ``body`` and wait for the status line and headers.

        An error status raises ``UpstreamStatus`` with the provider's message, its stable type,
        whether a retry may help, and ``retry-after`` when given.
        """
        try:
            response = await self._client().post(url, data=body, headers=headers)
        except TimeoutError as exc:
            raise UpstreamConnectError(f"timed out connecting to {_origin(url)}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamConnectError(f"cannot reach {_origin(url)}: {_describe(exc)}") from exc
        if response.status < 400:
            return UpstreamResponse(response, self._stall_timeout)
        try:
            raw = await response.content.read(_MAX_ERROR_BODY)
        except (aiohttp.ClientError, OSError):
            raw = b""
        finally:
            response.close()
        kind, retryable = classify_status(response.status)
        raise UpstreamStatus(
            response.status,
            _error_message(raw) or f"upstream answered HTTP {response.status}",
            type=kind,
            retryable=retryable,
            retry_after=_retry_after(response.headers.get("retry-after")),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _stalled_message(timeout: float | None) -> str:
    return f"no byte from the upstream for {timeout:g} s (the stall deadline)"


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
