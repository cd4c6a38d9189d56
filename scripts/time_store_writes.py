#!/usr/bin/env python3
"""CPU time of a session store's writes per session, in-process: for each of N sessions the
record when it starts, then the record with the event log (68 events, JSON-ready as the
session gives them) when it ends, as the gateway writes them (queued and group-committed on
the loop).

    .venv/bin/python scripts/time_store_writes.py [SESSIONS] [--short] [--pace N]
        [--postgres SERVER | --memory]

Long sessions (the default) have their first record committed before they end. ``--short``
sessions end within the commit interval: the first record is still queued when the final one
comes. ``--pace N`` ends N sessions a second instead of all at once (a gateway under a
steady load: smaller batches, each with the cost of its statement or commit).

The store is SQLite in a temporary file, or with ``--postgres
postgresql://postgres@127.0.0.1:5432/postgres`` a Postgres database that the script creates
on that server (``sluice_bench_<pid>``) and drops at the end; ``--memory`` is the baseline
(the same loop, the memory store).

Prints this process's CPU time per session (the gateway's cost: encoding, the driver, the
loop; the checkpoint on the SQLite store's thread counts too) and the elapsed time; with
Postgres on this machine, also the CPU time of the server's processes that served the
store's connections (read from /proc), which a gateway does not pay where the database is
on a host of its own.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sluice.session.store import MemoryStore, SessionStore, SQLiteStore, open_store


async def _admin(server: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(server)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _backend_cpu(pids: list[int]) -> float:
    """Seconds of CPU (user and system) that these processes have used, as /proc says."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


async def _backends(server: str, database: str) -> list[int]:
    import asyncpg

    connection = await asyncpg.connect(server)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1", database
        )
    finally:
        await connection.close()
    return [row[0] for row in rows]


async def run(
    store: SessionStore,
    sessions: int,
    short: bool,
    pace: float | None,
    database: tuple[str, str] | None = None,
) -> tuple[float, float, float | None]:
    await store.open()
    server_before = None
    if database is not None:
        server_before = _backend_cpu(await _backends(*database))
    record = {"state": "running", "provider": "mock", "text": "x" * 1024, "usage": {"n": 1}}
    events = [(seq, "text", {"text": "abcdefghijklmnop"}) for seq in range(1, 69)]
    ids = [f"op-{uuid.uuid4().hex[:12]}" for _ in range(sessions)]
    started, began = time.process_time(), time.perf_counter()
    starts = [store.put(dict(record, id=i, created_at=time.time())) for i in ids]
    if not short:
        await asyncio.gather(*starts)
        starts = []
    ends = [asyncio.ensure_future(start) for start in starts]
    await asyncio.sleep(0)  # the first records are queued
    for i in ids:
        final = dict(record, id=i, created_at=time.time(), state="complete")
        ends.append(store.put(final, events))
        if pace is not None:
            await asyncio.sleep(1 / pace)
    await asyncio.gather(*ends)
    cpu, elapsed = time.process_time() - started, time.perf_counter() - began
    server_cpu = None
    if database is not None and server_before is not None:
        server_cpu = _backend_cpu(await _backends(*database)) - server_before
    await store.close()
    return cpu, elapsed, server_cpu


async def main(sessions: int, short: bool, pace: float | None, server: str | None) -> None:
    if server == "memory":  # the baseline: the same loop, and a store that writes nothing
        backend = "memory"
        cpu, elapsed, server_cpu = await run(MemoryStore(), sessions, short, pace)
    elif server is None:
        with tempfile.TemporaryDirectory() as work:
            backend = "sqlite"
            cpu, elapsed, server_cpu = await run(
                SQLiteStore(str(Path(work) / "sessions.db")), sessions, short, pace
            )
    else:
        backend = "postgres"
        name = f"sluice_bench_{os.getpid()}"
        await _admin(server, f'CREATE DATABASE "{name}"')
        try:
            url = server.rsplit("/", 1)[0] + "/" + name
            cpu, elapsed, server_cpu = await run(
                open_store(url), sessions, short, pace, (server, name)
            )
        finally:
            await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    kind = ("short" if short else "long") + ("" if pace is None else f", {pace:g} a second")
    server_part = ""
    if server_cpu is not None:
        server_part = f", the server's {server_cpu / sessions * 1e6:.1f} µs"
    print(
        f"{backend}: {cpu / sessions * 1e6:.1f} µs of CPU per session{server_part}, "
        f"{elapsed / sessions * 1e6:.1f} µs elapsed ({sessions} {kind} sessions)"
    )


if __name__ == "__main__":
    argv = sys.argv[1:]
    options: dict[str, str] = {}
    for option in ("--postgres", "--pace"):
        if option in argv:
            at = argv.index(option)
            options[option] = argv[at + 1]
            del argv[at : at + 2]
    if "--memory" in argv:
        options["--postgres"] = "memory"
    args = [a for a in argv if a not in ("--short", "--memory")]
    pace = float(options["--pace"]) if "--pace" in options else None
    asyncio.run(
        main(int(args[0]) if args else 3000, "--short" in argv, pace, options.get("--postgres"))
    )
