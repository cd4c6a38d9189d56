"""A client that reads a few bytes a second from a long stream: the upstream is paused and the
gateway process's memory stays bounded, whatever the stream's length.

The gateway runs as its own process here, so that its resident memory is its own."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

#: The bound this test holds the gateway to while one slow reader follows a 200,000-token
#: stream (documented in docs/architecture.md): growth of resident memory after the pause.
RSS_GROWTH_BOUND = 8 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[tuple[str, int]]:
    config = tmp_path / "sluice.toml"
    config.write_text(
        '[store]\nurl = "memory://"\n'
        "[streams]\nbuffer_events = 64\nclient_send_timeout = 600\n"
        '[server]\nlog_level = "warning"\n'
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise AssertionError("the gateway did not start")
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_a_slow_reader_pauses_the_upstream_and_memory_stays_bounded(
    gateway_process: tuple[str, int],
) -> None:
    url, pid = gateway_process
    async with httpx.AsyncClient(base_url=url) as http:
        response = await http.post(
            "/api/sessions",
            json={
                "model": "sim/support",
                "prompt": "a very long answer",
                "disconnect_policy": "drain",
            },
            headers={
                "x-sim-output-tokens": "200000",
                "x-sim-token-rate": "50000",
                "x-sim-jitter": "0",
            },
        )
        session_id = response.json()["id"]

        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        sock.sendall(
            f"GET /api/sessions/{session_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        )
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        received = 0

        async def read_slowly(seconds: float) -> None:
            nonlocal received
            end = loop.time() + seconds
            while loop.time() < end:
                with contextlib.suppress(BlockingIOError):
                    received += len(sock.recv(16))  # a few bytes at a time
                await asyncio.sleep(0.2)

        async def upstream() -> dict:
            rows = (await http.get("/sim/requests", params={"session": session_id})).json()
            return dict(rows[0])

        # Every buffer on the way (the kernel's socket buffers above all) fills first; then the
        # simulator's count stops climbing: the upstream is paused.
        tokens_1 = -1
        for _ in range(40):
            await read_slowly(1.0)
            tokens = (await upstream())["tokens_produced"]
            if tokens - tokens_1 < 200:
                break
            tokens_1 = tokens
        else:
            raise AssertionError("the upstream never paused")
        tokens_1, rss_1 = tokens, rss(pid)
        await read_slowly(3.0)
        sim, rss_2 = await upstream(), rss(pid)
        sock.close()

    assert received > 0
    # the upstream was paused: the simulator's writes blocked and it stopped far from the end
    assert sim["write_blocked_count"] > 0
    assert sim["tokens_produced"] < 200_000 / 2
    assert sim["tokens_produced"] - tokens_1 < 2_000
    # and the gateway holds no more than its bound, however long the stream would have been
    assert rss_2 - rss_1 < RSS_GROWTH_BOUND, (rss_1, rss_2)
