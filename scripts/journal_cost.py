#!/usr/bin/env python3
"""What the journal costs the gateway's process, per window length: CPU time per second and
per journaled event, in-process on a SQLite store.

    .venv/bin/python scripts/journal_cost.py [--sessions 200] [--rate 50] [--seconds 5]
        [--windows 0.1,0.25,0.5,1] [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

``--sessions`` live sessions each relay ``--rate`` text deltas a second; every window the
journal queues each one's new events (JSON-ready, as ``Session.stored_events`` gives them),
as ``SessionManager.journal`` does, and the store commits them. Prints, per window, this
process's CPU time a second spent on it (a fraction of one core) and per journaled event,
against the same loop with no journal. Process CPU time, not elapsed time: the figures hold
on a busy machine better than a timing of the gateway would.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from sluice.session.store import NewEvent, SessionStore, open_store

_TICK = 0.01  # the loop adds events every 10 ms, as upstream reads would


async def _run(
    store: SessionStore, sessions: int, rate: int, seconds: float, window: float
) -> float:
    """CPU seconds a second of ``seconds`` of journaling every ``window`` (0: none)."""
    ids = [f"op-{os.getpid()}-{n}-{time.monotonic_ns()}" for n in range(sessions)]
    base = {"state": "streaming", "provider": "mock", "text": "", "usage": {}}
    await asyncio.gather(*(store.put(dict(base, id=i, created_at=time.time())) for i in ids))
    logs: dict[str, list[NewEvent]] = {i: [] for i in ids}
    journaled = dict.fromkeys(ids, 0)
    per_tick = rate * _TICK
    owed = 0.0
    pending: list[Any] = []
    started_cpu, started = time.process_time(), time.monotonic()
    next_journal = started + window
    while (now := time.monotonic()) - started < seconds:
        owed += per_tick
        while owed >= 1:
            owed -= 1
            for log in logs.values():
                log.append((len(log) + 1, "text", {"text": "abcdefghij"}))
        if window and now >= next_journal:
            next_journal += window
            for i, log in logs.items():
                start = journaled[i]
                if len(log) > start:
                    journaled[i] = len(log)
                    pending.append(store.append_events(i, log[start:]))
        await asyncio.sleep(_TICK)
    await asyncio.gather(*pending)
    cpu = time.process_time() - started_cpu
    return cpu / (time.monotonic() - started)


async def main(args: argparse.Namespace) -> None:
    windows = [float(w) for w in args.windows.split(",")]
    with tempfile.TemporaryDirectory() as work:
        url = args.postgres or f"sqlite:///{Path(work) / 'journal.db'}"
        store = open_store(url)
        await store.open()
        try:
            idle = await _run(store, args.sessions, args.rate, args.seconds, 0.0)
            events = args.sessions * args.rate
            print(
                f"{args.sessions} live sessions, {args.rate} events/s each "
                f"({events} events/s); the loop alone: {idle:.1%} of a core"
            )
            for window in windows:
                cpu = await _run(store, args.sessions, args.rate, args.seconds, window)
                extra = max(cpu - idle, 0.0)
                print(
                    f"  journal_window {window:g} s: {extra:.1%} of a core, "
                    f"{extra / events * 1e6:.2f} µs per event, "
                    f"{extra / (args.sessions / window) * 1e6:.0f} µs per session's batch"
                )
        finally:
            await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--rate", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--windows", default="0.1,0.25,0.5,1")
    parser.add_argument("--postgres", default=None)
    asyncio.run(main(parser.parse_args()))
