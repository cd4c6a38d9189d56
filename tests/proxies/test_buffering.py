"""Streams through real nginx, HAProxy and Caddy: what each one's defaults do to a token stream,
the one setting that makes it arrive as a late burst (or in pairs), and the cure.

Two stream designs, where the difference is far larger than any machine's noise:

- a paced chat completion (15 tokens, 200 ms apart): the last token cannot be generated less
  than 2.8 s after the first, so "the first token arrived before the last could exist" proves
  incremental delivery, and "all of them arrived after it, within a fraction of that span"
  proves a burst;
- the gateway's diagnostic stream, whose every event carries the gateway's clock (the gateway
  runs in the test's process, so it is the client's clock too): an event that reached the
  client only after the next one was sent was held on the way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.proxies import servers
from tests.proxies.conftest import port_of
from tests.proxies.measure import (
    PACED,
    PACED_SPAN,
    StreamTiming,
    chat_stream,
    diagnostic_ticks,
    held_until_next,
)


def assert_streamed(timing: StreamTiming, direct: StreamTiming, where: str = "") -> None:
    """Incremental delivery: the whole answer, its first token before the last one could have
    been generated, arrivals spread over the generation, first token close to the direct one.
    ``where`` names the path in the failure message when a test measures several."""
    assert timing.status == 200 and timing.complete, (where, timing.figures())
    assert timing.text == direct.text
    assert timing.first < PACED_SPAN, timing.figures()
    assert timing.spread > PACED_SPAN / 2, timing.figures()
    assert timing.first < direct.first + 1.0, (timing.figures(), direct.figures())


def assert_burst(timing: StreamTiming, direct: StreamTiming) -> None:
    """A late burst: nothing before the last token was generated, then everything at once."""
    assert timing.status == 200 and timing.complete, timing.figures()
    assert timing.text == direct.text
    assert timing.first > PACED_SPAN, timing.figures()
    assert timing.spread < PACED_SPAN / 4, timing.figures()


async def test_the_gateway_streams_a_paced_answer_directly(gateway_with: Any) -> None:
    async with gateway_with() as gw:
        direct = await chat_stream(gw.url, headers=PACED)
    assert direct.complete and len(direct.arrivals) == 15
    assert direct.first < PACED_SPAN and direct.spread > PACED_SPAN / 2


# -- nginx ------------------------------------------------------------------------------------


async def test_nginx_with_gzip_holds_the_stream_until_its_end_without_the_header(
    gateway_with: Any, workdir: Path
) -> None:
    async with gateway_with(accel_buffering_header=False) as gw:
        direct = await chat_stream(gw.url, headers=PACED)
        async with servers.nginx_variant(workdir, port_of(gw.url), "gzip") as nginx:
            timing = await chat_stream(nginx.url, headers=PACED)
    assert timing.content_encoding == "gzip"
    assert_burst(timing, direct)


async def test_nginx_with_gzip_streams_with_the_header(gateway_with: Any, workdir: Path) -> None:
    async with gateway_with(accel_buffering_header=True) as gw:
        direct = await chat_stream(gw.url, headers=PACED)
        async with servers.nginx_variant(workdir, port_of(gw.url), "gzip") as nginx:
            timing = await chat_stream(nginx.url, headers=PACED)
    # still compressed, but flushed after every event
    assert timing.content_encoding == "gzip"
    assert_streamed(timing, direct)


async def test_nginx_defaults_pass_small_events_on_at_once_even_without_the_header(
    gateway_with: Any, workdir: Path
) -> None:
    async with gateway_with(accel_buffering_header=False) as gw:
        direct = await chat_stream(gw.url, headers=PACED)
        async with servers.nginx_variant(workdir, port_of(gw.url), "defaults") as nginx:
            timing = await chat_stream(nginx.url, headers=PACED)
    assert_streamed(timing, direct)


async def test_nginx_defaults_hold_each_large_event_until_the_next_without_the_header(
    gateway_with: Any, workdir: Path
) -> None:
    # Events of 8 KiB, twice nginx's 4 KiB proxy buffer: the part left in a buffer that is not
    # full waits for the next event's bytes.
    schedule = {"events": 6, "interval": 0.5, "pad": 8192}
    measured = {}
    for header in (False, True):
        async with gateway_with(accel_buffering_header=header) as gw:
            proxy_cm = servers.nginx_variant(workdir / str(header), port_of(gw.url), "defaults")
            async with proxy_cm as nginx:
                measured[header], _ = await diagnostic_ticks(nginx.url, **schedule)
    without, with_header = measured[False], measured[True]
    assert held_until_next(without) == [1, 2, 3, 4, 5]
    assert len(held_until_next(with_header)) < 3


async def test_nginx_deploy_snippet_streams_over_http2(gateway_with: Any, workdir: Path) -> None:
    cert, key = servers.self_signed_certificate(workdir)
    async with gateway_with(accel_buffering_header=False) as gw:
        direct = await chat_stream(gw.url, headers=PACED)
        port = servers.free_port(servers.HOST)
        site = servers.nginx_deploy_site(port, port_of(gw.url), cert, key)
        async with servers.nginx(workdir, site, port, "https") as nginx:
            timing = await chat_stream(nginx.url, headers=PACED, ssl=False)
    # the snippet's own "proxy_buffering off" and "gzip off", without the gateway's header
    assert timing.content_encoding == ""
    assert_streamed(timing, direct)


# -- HAProxy ----------------------------------------------------------------------------------


async def test_haproxy_defaults_stream_but_deliver_events_in_pairs(
    gateway_with: Any, workdir: Path
) -> None:
    schedule = {"events": 10, "interval": 0.15}
    async with gateway_with() as gw:
        direct = await chat_stream(gw.url, headers=PACED)
        async with servers.haproxy_variant(workdir / "d", port_of(gw.url), "defaults") as proxy:
            timing = await chat_stream(proxy.url, headers=PACED)
            paired, _ = await diagnostic_ticks(proxy.url, **schedule)
        port = servers.free_port(servers.HOST)
        deploy = servers.haproxy_deploy_config(port, port_of(gw.url))
        async with servers.haproxy(workdir / "deploy", deploy, port) as proxy:
            fixed_timing = await chat_stream(proxy.url, headers=PACED)
            fixed, _ = await diagnostic_ticks(proxy.url, **schedule)
    assert_streamed(timing, direct)
    assert_streamed(fixed_timing, direct)
    # MSG_MORE: a write is held by the kernel until the next one (or 200 ms)
    assert len(held_until_next(paired)) >= 3
    # option http-no-delay (the deploy snippet)
    assert len(held_until_next(fixed)) < len(held_until_next(paired))


async def test_haproxy_compression_holds_each_event_until_the_next(
    gateway_with: Any, workdir: Path
) -> None:
    async with gateway_with() as gw:
        proxy_cm = servers.haproxy_variant(workdir, port_of(gw.url), "compression")
        async with proxy_cm as proxy:
            ticks, encoding = await diagnostic_ticks(proxy.url, events=6, interval=0.5)
    assert encoding == "gzip"
    # Each event waits in the compressor until the next is written. Not every one: under load
    # HAProxy now and then forwards one on its own (a CI run saw 1, 4 and 5 held of 1 to 5),
    # so the proof is that most are; a path that streams holds none.
    assert len(held_until_next(ticks)) >= 3, held_until_next(ticks)


# -- Caddy ------------------------------------------------------------------------------------


async def test_caddy_defaults_stream(gateway_with: Any, workdir: Path) -> None:
    async with gateway_with(accel_buffering_header=False) as gw:
        direct = await chat_stream(gw.url, headers=PACED)
        async with servers.caddy_variant(workdir / "d", port_of(gw.url), "defaults") as caddy:
            defaults = await chat_stream(caddy.url, headers=PACED)
        # flush_interval changes nothing for an event stream: Caddy flushes it at once
        flush_cm = servers.caddy_variant(workdir / "f", port_of(gw.url), "flush-interval-1s")
        async with flush_cm as caddy:
            flush_1s = await chat_stream(caddy.url, headers=PACED)
        port = servers.free_port(servers.HOST)
        deploy = servers.caddy_deploy_config(port, port_of(gw.url))
        async with servers.caddy(workdir / "deploy", deploy, port) as caddy:
            snippet = await chat_stream(caddy.url, headers=PACED)
    assert_streamed(defaults, direct, "caddy defaults")
    assert_streamed(flush_1s, direct, "caddy flush_interval 1s")
    assert_streamed(snippet, direct, "caddy deploy snippet")


async def test_caddy_encode_holds_the_stream_until_its_end(
    gateway_with: Any, workdir: Path
) -> None:
    async with gateway_with() as gw:
        direct = await chat_stream(gw.url, headers=PACED)
        async with servers.caddy_variant(workdir, port_of(gw.url), "encode-gzip") as caddy:
            timing = await chat_stream(caddy.url, headers=PACED)
    assert timing.content_encoding == "gzip"
    assert_burst(timing, direct)
