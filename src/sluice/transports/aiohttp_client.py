"""The ``aiohttp`` transport: the upstream contract (``sluice.upstream.Upstream``) on aiohttp's
``ClientSession`` (the gateway's upstream client before its own; HTTP/1.1).

For a network the fast client does not get along with, where aiohttp's long use in the field
is worth its cost per chunk (``docs/benchmarks.md``). Every error of aiohttp (and of ssl and the
sockets below it) is mapped here to an ``UpstreamError``, as in ``sluice.upstream``.

The body is read raw (``auto_decompress=False``) and ``accept-encoding: identity`` is asked;
an answer in another content-encoding is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import Any

import aiohttp
from yarl import URL

from sluice.errors import UpstreamBroken, UpstreamConnectError, UpstreamError, UpstreamStalled
from sluice.transports.failures import connect_failure, describe
from sluice.transports.network import Network
from sluice.transports.pulled import PulledStream, kept_headers
from sluice.transports.status import dropped, refusal, status_error
from sluice.upstream import _MAX_ERROR_BODY, MAX_BODY_BYTES, _origin


class AiohttpUpstream:
    """One ``ClientSession``; the proxy is chosen per request (``Network.proxy_for``)."""

    def __init__(
        self,
        connect_timeout: float = 10.0,
        stall_timeout: float | None = None,
        max_body: int = MAX_BODY_BYTES,
        network: Network | None = None,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._stall = stall_timeout or None
        #: the most one response's body may take (``streams.max_stream_bytes``)
        self._max_body = max_body or MAX_BODY_BYTES
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=stall_timeout or None
        )
        self._network = network or Network()
        self._session: aiohttp.ClientSession | None = None

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
            target = URL(url)
            if target.scheme not in ("http", "https") or not target.host:
                raise UpstreamConnectError(f"invalid upstream URL {_origin(url)!r}: http(s) only")
            proxy = self._network.proxy_for(target.scheme, target.host, target.port or 0)
            request_headers = {
                name: value
                for name, value in headers.items()
                if name.lower() not in ("host", "content-length", "transfer-encoding")
            }
            request_headers["accept-encoding"] = "identity"
            if proxy is not None and proxy.authorization is not None and target.scheme == "http":
                # (aiohttp sends ``proxy_headers`` with CONNECT only; an absolute-form request
                # carries the credentials itself, and the proxy takes them off)
                request_headers["proxy-authorization"] = proxy.authorization
            response = await self._client().post(
                target,
                data=body,
                headers=request_headers,
                allow_redirects=False,
                proxy=proxy.url if proxy is not None else None,
                proxy_headers=(
                    {"Proxy-Authorization": proxy.authorization}
                    if proxy is not None and proxy.authorization is not None
                    else None
                ),
            )
        except UpstreamError:
            raise
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamConnectError(f"no answer from {_origin(url)} in time") from exc
        except aiohttp.ServerDisconnectedError as exc:  # the request was written: not resent
            raise dropped(url) from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise connect_failure(f"cannot reach {_origin(url)}", exc) from exc
        status = response.status
        kept = kept_headers(list(response.headers.items()))
        if status >= 400:
            raw = await self._error_body(response)
            raise status_error(status, raw, kept.get("retry-after"))
        refused = refusal(status, kept)
        if refused is not None:
            response.close()
            raise refused
        if accepted is not None and not accepted.done():
            accepted.set_result(None)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.content.iter_any():
                    yield chunk
            except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                raise UpstreamStalled(
                    "no byte from the upstream within the stall deadline"
                ) from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise UpstreamBroken(
                    f"upstream connection broke mid-stream: {describe(exc)}"
                ) from exc

        return PulledStream(
            status,
            kept,
            chunks(),
            response.close,
            response.release,
            stall=self._stall,
            max_body=self._max_body,
        )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ssl=self._network.ssl_context()),
                timeout=self._timeout,
                auto_decompress=False,
                trust_env=False,  # the proxies are ours (``Network``), read once
            )
        return self._session

    async def _error_body(self, response: aiohttp.ClientResponse) -> bytes:
        body = bytearray()
        try:
            async with asyncio.timeout(self._connect_timeout):
                async for chunk in response.content.iter_any():
                    body.extend(chunk[: _MAX_ERROR_BODY - len(body)])
                    if len(body) >= _MAX_ERROR_BODY:
                        break
        except (aiohttp.ClientError, OSError, TimeoutError):
            pass
        finally:
            response.close()
        return bytes(body)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
