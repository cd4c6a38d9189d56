#!/usr/bin/env python3
"""CPU time of the SQLite store's writes per session, in-process: for each of N sessions the
record when it starts, then the record with the event log (68 events, JSON-ready as the
session gives them) when it ends, as the gateway writes them (queued and group-committed on
the loop).

    .venv/bin/python scripts/time_store_writes.py [SESSIONS] [--short]

Long sessions (the default) have their first record committed before they end. ``--short``
sessions end within the commit interval: the first record is still queued when the final one
comes.

Prints the process's CPU time per session. The checkpoint (on the store's thread) runs too.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sluice.session.store import SQLiteStore


async def main(sessions: int, short: bool) -> None:
    with tempfile.TemporaryDirectory() as work:
        store = SQLiteStore(str(Path(work) / "sessions.db"))
        await store.open()
        record = {"state": "running", "provider": "mock", "text": "x" * 1024, "usage": {"n": 1}}
        events = [(seq, "text", {"text": "abcdefghijklmnop"}) for seq in range(1, 69)]
        ids = [f"op-{uuid.uuid4().hex[:12]}" for _ in range(sessions)]
        started = time.process_time()
        starts = [store.put(dict(record, id=i, created_at=time.time())) for i in ids]
        if not short:
            await asyncio.gather(*starts)
            starts = []
        ends = [asyncio.ensure_future(start) for start in starts]
        await asyncio.sleep(0)  # the first records are queued
        for i in ids:
            final = dict(record, id=i, created_at=time.time(), state="complete")
            ends.append(store.put(final, events))
        await asyncio.gather(*ends)
        cpu = time.process_time() - started
        await store.close()
    kind = "short" if short else "long"
    print(f"{cpu / sessions * 1e6:.1f} µs of CPU per session ({sessions} {kind} sessions)")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--short"]
    asyncio.run(main(int(args[0]) if args else 3000, "--short" in sys.argv[1:]))
