"""``sluice serve`` under ``ulimit -n 1024``, flooded with more idle connections than it has
descriptors: it keeps serving, and says so in its log and its metrics."""

from __future__ import annotations

import asyncio
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

#: a generous bound on any wait for the gateway: a hang fails the test, a busy machine does not
WAIT = 60.0
FLOOD = 1100


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _limit_descriptors() -> None:  # in the child, before exec: ``ulimit -n 1024``
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = _free_port()
    config = tmp_path / "sluice.toml"
    config.write_text(
        f"""
[server]
host = "127.0.0.1"
port = {port}
header_timeout = 300.0   # the flood stays for the whole test: only the ceiling makes room
log_level = "info"

[store]
url = "sqlite:///{tmp_path}/sluice.db"

[sim]
token_rate = 2000.0
ttft = 0.01
jitter = 0.0
output_tokens = 60
"""
    )
    log = tmp_path / "gateway.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "sluice.cli", "serve", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            preexec_fn=_limit_descriptors,
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "sluice gateway listening on ..."
        assert b"listening on" in line, log.read_text()
        yield f"http://127.0.0.1:{port}", log
    finally:
        process.terminate()
        try:
            process.wait(WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_flooded_past_its_descriptors_the_gateway_still_streams_and_logs_it(
    served: tuple[str, Path],
) -> None:
    url, log = served
    port = int(url.rsplit(":", 1)[1])
    flood = []
    try:
        async with asyncio.timeout(WAIT):
            for _ in range(FLOOD):  # connections that never send a byte
                flood.append(await asyncio.open_connection("127.0.0.1", port))
        async with httpx.AsyncClient(base_url=url, timeout=WAIT) as http:
            text = ""
            async with http.stream(
                "POST",
                "/v1/chat/completions",
                json={
                    "model": "sim/support",
                    "stream": True,
                    "messages": [{"role": "user", "content": "refunds?"}],
                },
            ) as response:
                assert response.status_code == 200
                async for chunk in response.aiter_text():
                    text += chunk
            assert text.rstrip().endswith("data: [DONE]")
            assert '"finish_reason":"stop"' in text.replace(" ", "")
            metrics = (await http.get("/metrics")).text
    finally:
        for _reader, writer in flood:
            writer.close()
    assert "sluice_client_connection_ceiling 480.0" in metrics  # (1024 - 64) / 2
    shed = next(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('sluice_client_connections_closed_total{reason="shed"}')
    )
    assert shed >= FLOOD - 480
    logged = log.read_text()
    assert "client bounds descriptor_limit=1024" in logged
    assert logged.index("client connections near the ceiling") < logged.index(
        "client connections at the ceiling"
    )
    assert "ceiling=480" in logged
