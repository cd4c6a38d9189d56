#!/usr/bin/env python3
"""Time to first token at one stream through the mock directly, nginx and the gateway, in turn.

    .venv/bin/python scripts/ttft_targets.py [--streams 600] [--model mock/fast]

Starts the benchmark's mock, nginx and one ``sluice serve`` on the benchmark's configurations,
pinned where ``sluice bench`` pins them, warms each up, then runs one stream at a time on a
new connection each, through the three in turn (direct, gateway, nginx, direct, …), and
prints each one's time from the connect to the first frame, p50 and p90, and its p50 above
direct's. Unlike the benchmark's probe, which always asks for the ``fast`` stream, any
profile of the mock can be asked for: ``mock/4x3`` sends its first delta with the role chunk
and the next 3 ms later, so the client's read of the first frame never waits behind the
mock's writes of the rest (the mock shares its CPU with the clients).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from sluice.bench.client import Endpoint, run_stream
from sluice.bench.proc import cpu_layout
from sluice.bench.targets import GatewayProcess, MockProcess, NginxProcess, find_nginx
from sluice.stats import percentiles

WARM_UP_STREAMS = 30


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="sluice-ttft-targets-"))
    target_cpus, harness_cpus = cpu_layout()
    os.sched_setaffinity(0, harness_cpus)
    mock = MockProcess(workdir, harness_cpus)
    await mock.start()
    gateway = GatewayProcess(workdir, target_cpus, mock.url, "chat")
    nginx = NginxProcess(workdir, target_cpus, mock.port, find_nginx())
    times: dict[str, list[float]] = {"direct": [], "gateway": [], "nginx": []}
    try:
        await gateway.start()
        await nginx.start()
        ports = {"direct": mock.port, "gateway": gateway.port, "nginx": nginx.port}
        endpoints = {
            name: Endpoint.from_base_url(f"http://127.0.0.1:{port}/v1", "chat")
            for name, port in ports.items()
        }
        for endpoint in endpoints.values():
            for _ in range(WARM_UP_STREAMS):
                await run_stream(endpoint, endpoint.request("mock/fast"), 10)
        requests = {name: endpoint.request(args.model) for name, endpoint in endpoints.items()}
        for _ in range(args.streams):
            for name, endpoint in endpoints.items():
                record = await run_stream(endpoint, requests[name], 10)
                if record.frames:
                    times[name].append((record.frames[0][0] - record.started) * 1e6)
    finally:
        gateway.stop()
        nginx.stop()
        mock.stop()
    floor = percentiles(times["direct"], 50)[0] or 0.0
    for name, measured in times.items():
        p50, p90 = (p or 0.0 for p in percentiles(measured, 50, 90))
        print(
            f"{args.model} {name:<8} {len(measured)} streams: p50 {p50:,.0f} µs, "
            f"p90 {p90:,.0f} µs, p50 above direct's {p50 - floor:,.0f} µs"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=600)
    parser.add_argument("--model", default="mock/fast")
    asyncio.run(main(parser.parse_args()))
