#!/usr/bin/env python3
"""CPU time the live log costs the gateway's process per relayed event: the in-process log and
the Redis one (Redis on loopback), against no log at all.

    .venv/bin/python scripts/live_log_cpu.py [--redis URL] [--sessions 1,50,200]
        [--batch 1,4] [--windows 0,0.005,0.02] [--seconds 4] [--pace 0.02]

Each of S sessions is a task that appends a batch of k text events (one upstream read) every
``pace`` seconds, as a paced stream's reads come, for ``seconds``; every session starts and
finishes as a session does. The process's CPU time (user and system, ``time.process_time``:
this process only, not Redis's) is divided by the events appended. "added" is the figure minus
the same run with no log (the tasks, their sleeps and the events' tuples cost that much alone);
"added/write" is the added CPU per write to Redis (one round trip).
Wall-clock pacing on a shared machine: the figures move by some percent from run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from sluice.config import BusSettings
from sluice.distributed.backplane import open_backplane
from sluice.distributed.livelog import LiveLog, NewEvent


class NoLog:
    """The baseline: appends that do nothing."""

    def start(self, session_id: str, node_id: str) -> None:
        return None

    def append(self, session_id: str, batch: Sequence[NewEvent]) -> None:
        return None

    async def finish(self, session_id: str, summary: Any, ttl: float) -> None:
        return None


async def run(
    log: LiveLog | NoLog, sessions: int, batch: int, seconds: float, pace: float
) -> tuple[float, int, int]:
    """CPU seconds, events and batches appended."""
    counts = [0, 0]
    stop = time.monotonic() + seconds

    async def session(n: int) -> None:
        session_id = f"op-bench-{n}-{secrets.token_hex(3)}"
        log.start(session_id, "node-bench")
        seq = 0
        while time.monotonic() < stop:
            events = [(seq + i, "text", {"text": "a word "}) for i in range(1, batch + 1)]
            seq += batch
            log.append(session_id, events)
            counts[0] += batch
            counts[1] += 1
            await asyncio.sleep(pace)
        await log.finish(session_id, {"state": "complete"}, ttl=5)

    cpu = time.process_time()
    await asyncio.gather(*(session(n) for n in range(sessions)))
    return time.process_time() - cpu, counts[0], counts[1]


async def main(args: argparse.Namespace) -> None:
    sessions = [int(s) for s in args.sessions.split(",")]
    batches = [int(b) for b in args.batch.split(",")]
    windows = [float(w) for w in args.windows.split(",")]
    prefix = f"sluice-bench-{os.getpid()}:"
    print(
        f"{'backend':<16}{'S':>5}{'k':>4}{'events':>9}{'µs/event':>10}{'added':>8}"
        f"{'µs/batch':>10}{'writes':>8}{'added/write':>12}"
    )
    for s in sessions:
        for k in batches:
            base_cpu, base_events, _ = await run(NoLog(), s, k, args.seconds, args.pace)
            base = base_cpu / base_events * 1e6
            print(f"{'none':<16}{s:>5}{k:>4}{base_events:>9}{base:>10.2f}{'':>8}{base * k:>10.2f}")
            kinds: list[tuple[str, BusSettings]] = [("memory", BusSettings())]
            kinds += [
                (f"redis w={w:g}", BusSettings(url=args.redis, prefix=prefix, append_window=w))
                for w in windows
            ]
            for name, settings in kinds:
                plane = await open_backplane(settings)
                try:
                    cpu, events, reads = await run(plane.log, s, k, args.seconds, args.pace)
                    writes = getattr(plane.log, "windows_written", 0)
                finally:
                    await plane.close()
                    await _clean(args.redis, prefix)
                per_event = cpu / events * 1e6
                per_write = (per_event - base) * events / writes if writes else 0.0
                print(
                    f"{name:<16}{s:>5}{k:>4}{events:>9}{per_event:>10.2f}"
                    f"{per_event - base:>8.2f}{cpu / reads * 1e6:>10.2f}{writes:>8}"
                    f"{per_write:>12.0f}"
                )


async def _clean(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        for first in range(0, len(keys), 500):
            done: Awaitable[Any] = client.delete(*keys[first : first + 500])
            await done
    finally:
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--sessions", default="1,50,200")
    parser.add_argument("--batch", default="1,4")
    parser.add_argument("--windows", default="0,0.005,0.02")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--pace", type=float, default=0.02)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(parser.parse_args()))
