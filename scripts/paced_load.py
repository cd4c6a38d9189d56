#!/usr/bin/env python3
"""The gateway's CPU per relayed frame under a steady load, split into user and system time.

    .venv/bin/python scripts/paced_load.py [--concurrency 200] [--seconds 10] [--model mock/paced]
        [--journal-window SECONDS] [--store URL] [--pipe]

Starts the benchmark's mock and ``sluice serve`` on the benchmark's configuration, pinned as
``sluice bench`` pins them, sends 20 warm-up streams, then runs ``--concurrency`` clients, each
streaming back to back on one kept-alive connection (Chat Completions) for ``--seconds``, their
starts spread over one stream's length. Prints the gateway's CPU per frame the clients
received: in all, user and system (``/proc/<pid>/stat``), and the scheduler's own count
(``/proc/<pid>/task/*/schedstat``), to which the kernel scales the other two.

``--pipe`` measures the benchmark's ``python-pipe`` instead of the gateway: the floor of any
relay in Python (``sluice.bench.pipe``).

Lighter than a sweep level of ``sluice bench`` (no gap or time-to-first-token figures), for
interleaved before/after runs: run it from another checkout with ``PYTHONPATH=<it>/src``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from sluice.bench.client import kept_alive_request, stream_kept_alive
from sluice.bench.proc import cpu_layout
from sluice.bench.targets import HOST, GatewayProcess, MockProcess, PipeProcess

WARM_UP_STREAMS = 20
_TICKS = os.sysconf("SC_CLK_TCK")


def _times(pid: int) -> tuple[float, float, float]:
    """User and system seconds (tick-sampled, scaled) and the scheduler's exact seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    exact = sum(
        int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        for task in os.listdir(f"/proc/{pid}/task")
    )
    return int(fields[11]) / _TICKS, int(fields[12]) / _TICKS, exact / 1e9


async def _load(port: int, concurrency: int, seconds: float, model: str, spread: float) -> int:
    """Frames received by ``concurrency`` clients streaming back to back for ``seconds``
    (each client at least one stream)."""
    request = kept_alive_request(model)
    end = time.monotonic() + seconds
    frames = 0

    async def client(index: int) -> None:
        nonlocal frames
        await asyncio.sleep(index * spread / concurrency)
        reader, writer = await asyncio.open_connection(HOST, port)
        while True:
            received = await stream_kept_alive(reader, writer, request)
            frames += received  # (not ``frames += await``: that reads frames before waiting)
            if time.monotonic() >= end:
                break
        writer.close()

    await asyncio.gather(*(client(i) for i in range(concurrency)))
    return frames


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="sluice-load-"))
    target_cpus, harness_cpus = cpu_layout()
    mock = MockProcess(workdir, harness_cpus)
    await mock.start()
    gateway: GatewayProcess | PipeProcess
    if args.pipe:
        gateway = PipeProcess(workdir, target_cpus, mock.port)
    else:
        gateway = GatewayProcess(workdir, target_cpus, mock.url, "chat", store_url=args.store)
        if args.journal_window is not None:
            config = gateway.config_path.read_text()
            window = f"[store]\njournal_window = {args.journal_window}\n"
            gateway.config_path.write_text(config.replace("[store]\n", window, 1))
    try:
        await gateway.start()
        pid = gateway.pids()[0]
        for _ in range(WARM_UP_STREAMS):
            await _load(gateway.port, 1, 0, args.model, 0)
        user0, system0, exact0 = _times(pid)
        started = time.monotonic()
        frames = await _load(gateway.port, args.concurrency, args.seconds, args.model, 1.3)
        took = time.monotonic() - started
        user1, system1, exact1 = _times(pid)
    finally:
        gateway.stop()
        mock.stop()
    per = 1e6 / max(frames, 1)
    print(
        f"c={args.concurrency} {args.model}: {frames} frames in {took:.1f} s, {gateway.name} "
        f"{(exact1 - exact0) / took:.0%} busy"
    )
    print(
        f"  CPU per frame {(user1 - user0 + system1 - system0) * per:.1f} µs "
        f"(user {(user1 - user0) * per:.1f}, system {(system1 - system0) * per:.1f}), "
        f"scheduler's count {(exact1 - exact0) * per:.1f} µs"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--model", default="mock/paced")
    parser.add_argument(
        "--journal-window", type=float, help="the gateway's [store] journal_window (seconds)"
    )
    parser.add_argument(
        "--store", help="the gateway's [store] url (default: SQLite in the work directory)"
    )
    parser.add_argument(
        "--pipe", action="store_true", help="measure python-pipe (sluice.bench.pipe) instead"
    )
    asyncio.run(main(parser.parse_args()))
