#!/usr/bin/env python3
"""Time to first token at one stream, through two checkouts of the gateway, request by request.

    .venv/bin/python scripts/ttft_pairs.py OTHER_SRC [--streams 1000] [--model mock/fast]

Starts the benchmark's mock and two ``sluice serve`` processes on the benchmark's
configuration, both pinned where ``sluice bench`` pins the gateway: one from this checkout,
one with ``PYTHONPATH=OTHER_SRC`` (the ``src`` directory of another checkout, with its
compiled module built or copied in). Then, one stream at a time on a new connection each,
it alternates between the two (in turn order swapped every pair), and prints each one's time
from the connect to the first text delta, p50, p90 and p99.

A change worth 50 µs at one stream is smaller than the drift of this virtual machine from
one minute to the next; alternating the two gateways stream by stream cancels the drift,
which separate runs of ``sluice bench`` cannot.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from sluice.bench.client import kept_alive_request
from sluice.bench.proc import cpu_layout
from sluice.bench.targets import HOST, GatewayProcess, MockProcess

WARM_UP_STREAMS = 30
#: a text delta's mark in the mock's Chat Completions chunks (its role chunk's delta starts
#: with the role)
FIRST_TEXT = b'"delta":{"content":"'


class _Checkout(GatewayProcess):
    """The gateway, run from the checkout whose ``src`` is ``source`` (None: this one)."""

    def __init__(self, workdir: Path, cpus: set[int], mock_url: str, source: str | None) -> None:
        super().__init__(workdir, cpus, mock_url, "chat")
        self.source = source

    def env(self) -> dict[str, str]:
        env = super().env()
        if self.source is not None:
            env["PYTHONPATH"] = self.source
        return env


async def first_text(port: int, request: bytes) -> float | None:
    """Seconds from the connect to the first text delta; the stream is read to its end."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(request)
    received, first = b"", None
    try:
        while not received.endswith(b"0\r\n\r\n"):
            piece = await reader.read(65536)
            if not piece:
                break
            received += piece
            if first is None and FIRST_TEXT in received:
                first = time.perf_counter() - started
    finally:
        writer.close()
    return first


def _summary(name: str, times: list[float]) -> str:
    times = sorted(times)

    def at(q: float) -> float:
        return times[min(len(times) - 1, int(q * len(times)))] * 1e6

    figures = ", ".join(f"p{round(q * 100)} {at(q):.0f} µs" for q in (0.5, 0.9, 0.99))
    return f"{name}: {len(times)} streams, {figures}"


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="sluice-pairs-"))
    target_cpus, harness_cpus = cpu_layout()
    os.sched_setaffinity(0, harness_cpus)
    mock = MockProcess(workdir, harness_cpus)
    await mock.start()
    gateways: dict[str, _Checkout] = {}
    request = kept_alive_request(args.model).replace(
        b"HTTP/1.1\r\n", b"HTTP/1.1\r\nconnection: close\r\n", 1
    )
    times: dict[str, list[float]] = {"this checkout": [], args.other: []}
    try:
        for name, source in (("this checkout", None), (args.other, args.other)):
            (workdir / str(len(gateways))).mkdir()
            gateway = _Checkout(workdir / str(len(gateways)), target_cpus, mock.url, source)
            await gateway.start()
            gateways[name] = gateway
        for _ in range(WARM_UP_STREAMS):
            for gateway in gateways.values():
                await first_text(gateway.port, request)
        order = list(gateways.items())
        for index in range(args.streams):
            for name, gateway in order if index % 2 else order[::-1]:
                took = await first_text(gateway.port, request)
                if took is not None:
                    times[name].append(took)
                await asyncio.sleep(0.002)  # each gateway's core idle between its streams
    finally:
        for gateway in gateways.values():
            gateway.stop()
        mock.stop()
    for name, measured in times.items():
        print(_summary(name, measured))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", help="the src directory of the other checkout")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--model", default="mock/fast")
    asyncio.run(main(parser.parse_args()))
