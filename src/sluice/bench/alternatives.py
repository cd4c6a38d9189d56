"""The alternatives the choices comparison measures the gateway with, and its app factory.

The gateway's own upstream client (``sluice.upstream.UpstreamClient``) pushes each piece of a
body from the socket's read callback into the session. The alternatives are the product's other
transports (``sluice.transports``), the same contract (``sluice.upstream.Upstream``) on a
library's streaming client, its body pulled by a task and pushed on
(``sluice.transports.pulled.PulledStream``):

- ``AiohttpUpstream``: aiohttp's ``ClientSession`` (the gateway's client before its own);
- ``HttpxUpstream``: httpx's ``AsyncClient``.

``gateway_app()`` builds the gateway for any ASGI server that takes a factory (uvicorn,
granian), from environment variables, so each server runs exactly the same application:

- ``SLUICE_BENCH_CONFIG``: the gateway's TOML configuration;
- ``SLUICE_BENCH_UPSTREAM``: ``sluice`` (the default), ``aiohttp`` or ``httpx``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from sluice.config import load_settings
from sluice.gateway.app import GatewayApp, create_app
from sluice.gateway.gcpolicy import tune_gc
from sluice.transports.aiohttp_client import AiohttpUpstream
from sluice.transports.httpx_client import HttpxUpstream
from sluice.upstream import Upstream, UpstreamClient

__all__ = ["UPSTREAMS", "AiohttpUpstream", "HttpxUpstream", "gateway_app"]


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
