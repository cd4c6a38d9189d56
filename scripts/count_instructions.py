#!/usr/bin/env python3
"""The instructions the gateway executes for a fixed load, counted by valgrind's callgrind.

CPU time depends on what else the machine runs (on a shared virtual machine, by a quarter or
more from one run to the next); the count of instructions does not. It is the instrument for
a change to the hot path whose effect is smaller than that noise.

    .venv/bin/python scripts/count_instructions.py [--streams 100] [--concurrency 10]
        [--model mock/paced] [--provider-key KEY] [--out var/bench/instructions]

Starts the benchmark's mock, and ``sluice serve`` on the benchmark's configuration under
callgrind; sends warm-up streams, then counts from the first of ``--streams`` streams (a
closed loop of ``--concurrency`` clients, Chat Completions) to the last. Prints the
instructions in all and under httptools' ``on_body`` callback: each relayed chunk's way from
the upstream's parser into the session's log (before commit ``9a78a11``, which moved the
readers' notification to the end of the read, also its way on to the client's socket). With
the paced model each chunk arrives on its own, so that part is the same from run to run
within about 1.5%; the whole varies more, as the timers' and the store's work follows the
clock, and valgrind slows the gateway some fifty times.

``--otel`` turns the gateway's telemetry on, exporting its spans and metrics over OTLP/HTTP to
the mock (``gateway-otel`` of the benchmark): the export thread's instructions count too.

``--provider-key`` gives the gateway that value as the mock provider's key instead of the
benchmark's ``bench`` (too short to be a secret, so nothing is looked for); a realistic key
counts the redactor's look for it in each delta (docs/security.md).

Needs valgrind (``callgrind_control``, ``callgrind_annotate``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from sluice.bench.client import kept_alive_request, stream_kept_alive
from sluice.bench.proc import cpu_layout
from sluice.bench.targets import BENCH_KEY_ENV, HOST, GatewayProcess, MockProcess

WARM_UP_STREAMS = 20


class _CountedGateway(GatewayProcess):
    def __init__(
        self, workdir: Path, cpus: set[int], mock_url: str, key: str | None, otel: bool = False
    ) -> None:
        super().__init__(workdir, cpus, mock_url, "chat", otel=otel)
        self.counts = workdir / "callgrind.out"
        self.key = key

    def env(self) -> dict[str, str]:
        env = super().env()
        if self.key is not None:
            env[BENCH_KEY_ENV] = self.key
        return env

    def argv(self) -> list[str]:
        return [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={self.counts}",
            "--instr-atstart=no",  # switched on once warm: the start runs at full speed
            *super().argv(),
        ]


async def _streams(port: int, streams: int, concurrency: int, model: str) -> int:
    """Run ``streams`` streaming requests, ``concurrency`` at a time on kept-alive
    connections; return the number of SSE frames received."""
    request = kept_alive_request(model)
    frames = 0

    async def client(count: int) -> None:
        nonlocal frames
        reader, writer = await asyncio.open_connection(HOST, port)
        for _ in range(count):
            received = await stream_kept_alive(reader, writer, request)
            frames += received  # (not ``frames += await``: that reads frames before waiting)
        writer.close()

    counts = [streams // concurrency + (i < streams % concurrency) for i in range(concurrency)]
    await asyncio.gather(*(client(n) for n in counts if n))
    return frames


async def _callgrind_control(*args: str) -> None:
    control = await asyncio.create_subprocess_exec(
        "callgrind_control", *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    if await control.wait() != 0:
        raise SystemExit(f"count_instructions: callgrind_control {' '.join(args)} failed")


def _inclusive(counts: Path) -> dict[str, int]:
    report = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", "--auto=no", str(counts)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: dict[str, int] = {}
    for key, pattern in (("total", "PROGRAM TOTALS"), ("on_body", r"parser_cb_on_body ")):
        match = re.search(r"^\s*([\d,]+) .*" + pattern, report, re.MULTILINE)
        if match:
            found[key] = int(match.group(1).replace(",", ""))
    return found


async def main(args: argparse.Namespace) -> None:
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if shutil.which(tool) is None:
            raise SystemExit(f"count_instructions: {tool} is not installed (Debian: valgrind)")
    workdir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="sluice-cg-"))
    workdir.mkdir(parents=True, exist_ok=True)
    target_cpus, harness_cpus = cpu_layout()  # as the benchmark pins them
    mock = MockProcess(workdir, harness_cpus)
    await mock.start()
    gateway = _CountedGateway(workdir, target_cpus, mock.url, args.provider_key, args.otel)
    try:
        await gateway.start(within=120.0)
        pid = str(gateway.pids()[0])
        await _streams(gateway.port, WARM_UP_STREAMS, 1, args.model)
        await _callgrind_control("-i", "on", pid)
        started = time.monotonic()
        frames = await _streams(gateway.port, args.streams, args.concurrency, args.model)
        await _callgrind_control("-d", pid)
        took = time.monotonic() - started
    finally:
        gateway.stop()
        mock.stop()
    dumps = sorted(workdir.glob("callgrind.out.*"), key=os.path.getmtime)
    if not dumps:
        raise SystemExit(f"count_instructions: no callgrind dump in {workdir}")
    found = _inclusive(dumps[-1])
    print(
        f"{args.streams} streams ({args.model}, {args.concurrency} at a time), "
        f"{frames} frames, {took:.0f} s"
    )
    for key in ("total", "on_body"):
        n = found.get(key, 0)
        print(
            f"  {key:8} {n / 1e6:9.1f} M instructions"
            f"  {n / args.streams / 1e3:9.1f} k per stream"
            f"  {n / max(frames, 1) / 1e3:7.1f} k per frame"
        )
    print(f"  counts: {dumps[-1]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--model", default="mock/paced")
    parser.add_argument(
        "--provider-key", default=None, help="the mock provider's key (default: 'bench')"
    )
    parser.add_argument(
        "--otel", action="store_true", help="telemetry on, exporting to the mock over OTLP/HTTP"
    )
    parser.add_argument("--out", default="", help="where the counts go (default: a temp dir)")
    asyncio.run(main(parser.parse_args()))
