#!/usr/bin/env python3
"""What the key check adds to a request: the guard timed in-process, and the time to first
token at one stream through two gateways, auth off and auth on, alternated stream by stream.

    .venv/bin/python scripts/auth_pairs.py [--streams 1000] [--calls 200000]

1. In-process: the guard's check of one request (a scope with a client key as a bearer
   token: the header scan, the SHA-256, the lookup) plus the endpoint's model check and the
   key's limits, timed call by call; beside it the same with auth off.
2. End to end: the benchmark's mock and two ``sluice serve`` processes on the benchmark's
   configuration, pinned where ``sluice bench`` pins the gateway, one of them with
   ``[auth] required = true`` and a client key (no limits) that every request sends. One
   stream at a time, on a new connection each, alternating (the order swapped every pair), as
   ``scripts/ttft_pairs.py`` does: the machine's drift cancels out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from ttft_pairs import first_text  # scripts/: the same client, stream for stream

from sluice.access.control import KeyRing
from sluice.access.keys import ApiKey, MemoryKeyStore, SQLiteKeyStore, make_key
from sluice.bench.client import kept_alive_request
from sluice.bench.proc import cpu_layout
from sluice.bench.targets import GatewayProcess, MockProcess
from sluice.config import Settings
from sluice.gateway.guard import Guard

WARM_UP_STREAMS = 30


def _percentiles(values: list[float]) -> str:
    values = sorted(values)

    def at(q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))]

    return f"p50 {at(0.5):.2f} µs, p90 {at(0.9):.2f} µs, p99 {at(0.99):.2f} µs"


def time_in_process(calls: int) -> None:
    """The guard, the model check and the limits, per request, auth off and on."""
    raw, key = make_key("bench")
    store = MemoryKeyStore()
    ring = KeyRing(store)

    async def prepare() -> None:
        await store.add(key)
        await ring.open()

    asyncio.run(prepare())
    headers = [
        (b"host", b"127.0.0.1:8080"),
        (b"user-agent", b"OpenAI/Python 2.8.1"),
        (b"accept", b"application/json"),
        (b"content-type", b"application/json"),
        (b"content-length", b"120"),
        (b"x-stainless-lang", b"python"),
    ]
    for auth in (False, True):
        settings = Settings()
        settings.auth.required = auth
        guard = Guard(settings, ring)
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/chat/completions",
            "headers": [*headers, (b"authorization", f"Bearer {raw}".encode())],
        }
        clock = time.perf_counter_ns
        samples = []
        for _ in range(calls):
            started = clock()
            principal = guard.http(scope)
            ring.check_model(principal, "mock/fast")  # type: ignore[arg-type]
            ring.admit(principal, 0)  # type: ignore[arg-type]
            samples.append((clock() - started) / 1000)
        name = "auth on " if auth else "auth off"
        print(f"in process, {name}: {calls} requests, {_percentiles(samples)}")


async def _require_auth(gateway: GatewayProcess, workdir: Path, key: ApiKey) -> None:
    """Turn ``[auth] required`` on in the gateway's configuration, with ``key`` in its store."""
    gateway.config_path.write_text(gateway.config_path.read_text() + "\n[auth]\nrequired = true\n")
    store = SQLiteKeyStore(str(workdir / "gateway.db"))
    await store.open()
    await store.add(key)
    await store.close()


async def end_to_end(streams: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="sluice-auth-"))
    target_cpus, harness_cpus = cpu_layout()
    os.sched_setaffinity(0, harness_cpus)
    mock = MockProcess(workdir, harness_cpus)
    await mock.start()
    raw, record = make_key("bench")
    plain = kept_alive_request("mock/fast").replace(
        b"HTTP/1.1\r\n", b"HTTP/1.1\r\nconnection: close\r\n", 1
    )
    keyed = plain.replace(b"authorization: Bearer bench", f"authorization: Bearer {raw}".encode())
    assert keyed != plain
    gateways: dict[str, tuple[GatewayProcess, bytes]] = {}
    times: dict[str, list[float]] = {"auth off": [], "auth on": []}
    try:
        for name, key, request in (("auth off", None, plain), ("auth on", record, keyed)):
            where = workdir / name.replace(" ", "-")
            where.mkdir()
            gateway = GatewayProcess(where, target_cpus, mock.url, "chat")
            if key is not None:
                await _require_auth(gateway, where, key)
            await gateway.start()
            gateways[name] = (gateway, request)
        for _ in range(WARM_UP_STREAMS):
            for gateway, request in gateways.values():
                assert await first_text(gateway.port, request) is not None, "no text"
        order = list(gateways.items())
        for index in range(streams):
            for name, (gateway, request) in order if index % 2 else order[::-1]:
                took = await first_text(gateway.port, request)
                if took is not None:
                    times[name].append(took * 1e6)
                await asyncio.sleep(0.002)
    finally:
        for gateway, _ in gateways.values():
            gateway.stop()
        mock.stop()
    for name, measured in times.items():
        print(f"end to end, {name}: {len(measured)} streams, {_percentiles(measured)}")
    off, on = statistics.median(times["auth off"]), statistics.median(times["auth on"])
    print(f"end to end, added at p50: {on - off:.1f} µs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    if args.calls:
        time_in_process(args.calls)
    if args.streams:
        asyncio.run(end_to_end(args.streams))
