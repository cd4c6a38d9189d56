"""Idle timeouts: a proxy that cuts a response after N seconds without a byte from the gateway
kills a stream whose first token takes longer than N, unless heartbeats pass in the silence.

The proxies run with a 2 s timeout and the simulator waits 4 s before the first token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.proxies import servers
from tests.proxies.conftest import port_of
from tests.proxies.measure import StreamTiming, chat_stream

#: the first token after 4 s, then a short steady answer
SLOW_FIRST_TOKEN = {
    "x-sim-ttft": "4",
    "x-sim-token-rate": "50",
    "x-sim-output-tokens": "20",
    "x-sim-jitter": "0",
}

PROXIES = {
    "nginx proxy_read_timeout 2s": lambda workdir, port: servers.nginx_variant(
        workdir, port, "read-timeout-2s"
    ),
    "haproxy timeout server 2s": lambda workdir, port: servers.haproxy_variant(
        workdir, port, "timeout-server-2s"
    ),
}


async def through(proxy: str, gateway_with: Any, workdir: Path, heartbeat: float) -> StreamTiming:
    async with gateway_with(heartbeat_interval=heartbeat) as gw:
        direct = await chat_stream(gw.url, headers=SLOW_FIRST_TOKEN)
        assert direct.complete and direct.text
        async with PROXIES[proxy](workdir, port_of(gw.url)) as front:
            timing = await chat_stream(front.url, headers=SLOW_FIRST_TOKEN)
    if timing.complete:
        assert timing.text == direct.text
    return timing


@pytest.mark.parametrize("proxy", list(PROXIES))
async def test_a_slow_first_token_survives_a_short_idle_timeout_with_heartbeats(
    proxy: str, gateway_with: Any, workdir: Path
) -> None:
    timing = await through(proxy, gateway_with, workdir, heartbeat=0.5)
    assert timing.status == 200 and timing.complete, timing.figures()
    assert not timing.error
    # pings filled the 4 s wait, every one of them before the first token
    before_first = [t for t in timing.heartbeats if t <= timing.first]
    assert len(before_first) >= 3, timing.figures()


@pytest.mark.parametrize("proxy", list(PROXIES))
async def test_a_slow_first_token_is_cut_by_a_short_idle_timeout_without_heartbeats(
    proxy: str, gateway_with: Any, workdir: Path
) -> None:
    timing = await through(proxy, gateway_with, workdir, heartbeat=0)
    assert not timing.complete, timing.figures()
    assert timing.arrivals == [] and timing.heartbeats == []
    # the proxy answered with an error status, or cut the open response
    assert timing.status != 200 or timing.error, timing.figures()
