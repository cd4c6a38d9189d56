#!/usr/bin/env python3
"""Measure one paced stream through each proxy configuration and print the figures tables of
docs/proxies.md (Markdown) on standard output.

    .venv/bin/python scripts/proxy-figures.py > /tmp/figures.md

Runs a gateway in this process with its embedded simulator, the system's nginx, HAProxy and
Caddy in front of it (the same configurations as tests/proxies), ``sluice doctor`` through each,
and Chromium for the HTTP/2 table. About three minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from playwright.async_api import async_playwright  # noqa: E402
from tests.browser.conftest import CHROMIUM_FLAGS, chromium_path  # noqa: E402
from tests.conftest import running_gateway, test_settings  # noqa: E402
from tests.proxies import servers  # noqa: E402
from tests.proxies.concurrency import open_streams, write_page  # noqa: E402
from tests.proxies.measure import PACED, chat_stream  # noqa: E402
from tests.proxies.test_idle_timeouts import PROXIES as IDLE_PROXIES  # noqa: E402
from tests.proxies.test_idle_timeouts import SLOW_FIRST_TOKEN  # noqa: E402

from sluice.doctor import diagnose  # noqa: E402

Front = Callable[[Path, int], AbstractAsyncContextManager[servers.Proxy]]


def deploy_nginx(cert: Path, key: Path) -> Front:
    @contextlib.asynccontextmanager
    async def start(workdir: Path, gateway_port: int) -> AsyncIterator[servers.Proxy]:
        port = servers.free_port(servers.HOST)
        site = servers.nginx_deploy_site(port, gateway_port, cert, key)
        async with servers.nginx(workdir, site, port, "https") as proxy:
            yield proxy

    return start


@contextlib.asynccontextmanager
async def deploy_haproxy(workdir: Path, gateway_port: int) -> AsyncIterator[servers.Proxy]:
    port = servers.free_port(servers.HOST)
    async with servers.haproxy(
        workdir, servers.haproxy_deploy_config(port, gateway_port), port
    ) as proxy:
        yield proxy


@contextlib.asynccontextmanager
async def deploy_caddy(workdir: Path, gateway_port: int) -> AsyncIterator[servers.Proxy]:
    port = servers.free_port(servers.HOST)
    async with servers.caddy(workdir, servers.caddy_deploy_config(port, gateway_port), port) as p:
        yield p


def variant(start: Callable[..., Any], name: str) -> Front:
    return lambda workdir, port: start(workdir, port, name)


def cases(cert: Path, key: Path) -> list[tuple[str, Front | None]]:
    return [
        ("direct (no proxy)", None),
        ("nginx defaults (proxy_buffering on)", variant(servers.nginx_variant, "defaults")),
        ("nginx + gzip_types text/event-stream", variant(servers.nginx_variant, "gzip")),
        ("nginx deploy/nginx/sluice.conf (TLS, h2)", deploy_nginx(cert, key)),
        ("HAProxy defaults", variant(servers.haproxy_variant, "defaults")),
        ("HAProxy + compression", variant(servers.haproxy_variant, "compression")),
        ("HAProxy deploy/haproxy/sluice.cfg", deploy_haproxy),
        ("Caddy defaults", variant(servers.caddy_variant, "defaults")),
        ("Caddy + flush_interval 1s", variant(servers.caddy_variant, "flush-interval-1s")),
        ("Caddy + encode gzip", variant(servers.caddy_variant, "encode-gzip")),
        ("Caddy deploy/caddy/Caddyfile", deploy_caddy),
    ]


async def streaming_table(work: Path) -> list[str]:
    cert, key = servers.self_signed_certificate(work)
    rows = [
        "| path | X-Accel-Buffering | first token | first → last token | encoding "
        "| doctor: longest hold | doctor exit |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for n, (label, front) in enumerate(cases(cert, key)):
        for header in (False, True):
            settings = test_settings(work / f"g{n}{header}")
            settings.streams.accel_buffering_header = header
            settings.streams.heartbeat_interval = 0.5
            async with running_gateway(settings) as gw:
                url_cm: AbstractAsyncContextManager[Any]
                if front is None:
                    url_cm = contextlib.nullcontext(None)
                else:
                    url_cm = front(work / f"p{n}{header}", int(gw.url.rsplit(":", 1)[1]))
                async with url_cm as proxy:
                    url = gw.url if proxy is None else proxy.url
                    timing = await chat_stream(url, headers=PACED, ssl=False)
                    report = await diagnose(url, events=10, interval=0.3, idle=2.0, insecure=True)
            rows.append(
                f"| {label} | {'sent' if header else 'off'} | {timing.first * 1000:,.0f} ms "
                f"| {timing.spread * 1000:,.0f} ms | {timing.content_encoding or 'none'} "
                f"| {report.max_hold_s * 1000:,.0f} ms | {report.exit_code} |"
            )
    return rows


async def idle_table(work: Path) -> list[str]:
    rows = [
        "| proxy | heartbeats | outcome | pings before the first token |",
        "|---|---|---|---:|",
    ]
    for n, (label, front) in enumerate(IDLE_PROXIES.items()):
        for heartbeat in (0.0, 0.5):
            settings = test_settings(work / f"i{n}{heartbeat}")
            settings.streams.heartbeat_interval = heartbeat
            async with (
                running_gateway(settings) as gw,
                front(work / f"ip{n}{heartbeat}", int(gw.url.rsplit(":", 1)[1])) as proxy,
            ):
                timing = await chat_stream(proxy.url, headers=SLOW_FIRST_TOKEN)
            if timing.complete:
                outcome = f"complete: {len(timing.arrivals)} tokens, first after "
                outcome += f"{timing.first * 1000:,.0f} ms"
            elif timing.status != 200:
                outcome = f"HTTP {timing.status} from the proxy"
            else:
                outcome = f"cut: {timing.error.split(':')[0]} with no token"
            before = [t for t in timing.heartbeats if not timing.arrivals or t <= timing.first]
            every = f"every {heartbeat:g} s" if heartbeat else "off"
            rows.append(f"| {label} | {every} | {outcome} | {len(before)} |")
    return rows


async def http2_table(work: Path) -> list[str]:
    cert, key = servers.self_signed_certificate(work)
    write_page(work / "page")
    rows = [
        "| front end | protocol | first event of streams 1 to 8 (ms) | first stream ended (ms) "
        "| streams begun before any ended |",
        "|---|---|---|---:|---:|",
    ]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            for http2 in (True, False):
                settings = test_settings(work / f"h{http2}")
                async with running_gateway(settings) as gw:
                    port = servers.free_port(servers.HOST)
                    site = servers.nginx_deploy_site(
                        port,
                        int(gw.url.rsplit(":", 1)[1]),
                        cert,
                        key,
                        http2=http2,
                        static_root=work / "page",
                    )
                    async with servers.nginx(work / f"hn{http2}", site, port, "https") as nginx:
                        context = await browser.new_context(ignore_https_errors=True)
                        try:
                            result = await open_streams(context, nginx.url)
                        finally:
                            await context.close()
                firsts = ", ".join(f"{first:,.0f}" for first, _ in result.streams)
                ended = min(end for _, end in result.streams)
                label = "nginx, TLS, " + ("http2" if http2 else "no http2")
                rows.append(
                    f"| {label} | {result.protocol} | {firsts} | {ended:,.0f} "
                    f"| {result.started_before_any_ended} of 8 |"
                )
        finally:
            await browser.close()
    return rows


def versions() -> str:
    def first_line(argv: list[str]) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        return (done.stdout or done.stderr).strip().splitlines()[0]

    return "; ".join(
        [
            first_line([servers.system_binary("nginx"), "-v"]),
            first_line([servers.system_binary("haproxy"), "-v"]),
            "Caddy " + first_line([servers.system_binary("caddy"), "version"]),
            f"Python {platform.python_version()}",
        ]
    )


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="sluice-proxy-figures-") as tmp:
        work = Path(tmp)
        streaming = await streaming_table(work)
        idle = await idle_table(work)
        http2 = await http2_table(work)
    print(f"Measured with: {versions()}.\n")
    print("Streaming (a chat completion of 15 tokens, one every 200 ms):\n")
    print("\n".join(streaming))
    print("\nIdle timeouts (first token after 4 s, proxy timeout 2 s):\n")
    print("\n".join(idle))
    print("\nConcurrent streams from one page in Chromium (8 streams of 2 s each):\n")
    print("\n".join(http2))


if __name__ == "__main__":
    asyncio.run(main())
