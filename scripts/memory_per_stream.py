"""Python objects per open stream, by the line that allocated them: ``tracemalloc`` inside a
``sluice serve`` process, a snapshot before and one after opening held streams through it.

    .venv/bin/python scripts/memory_per_stream.py [STREAMS] [TOP] [FRAMES]

The gateway runs in front of the benchmark's mock, as in ``sluice bench``'s idle-streams
scenario (each stream is held open after its first frame). ``FRAMES`` > 1 groups by the
whole allocating stack instead of the line. Tracing slows the gateway down; the figures are
sizes, not times.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import tracemalloc
from pathlib import Path

from sluice.bench import proc
from sluice.bench.client import Endpoint, HeldStream, open_held, run_stream
from sluice.bench.targets import GatewayProcess, MockProcess

SNAPSHOT_ENV = "SLUICE_SNAPSHOT_PREFIX"


def serve_traced() -> None:
    """The gateway's side: ``sluice serve`` under tracemalloc; SIGUSR1 writes a snapshot."""
    tracemalloc.start(int(os.environ.get("SLUICE_SNAPSHOT_FRAMES", "1")))
    taken = [0]

    def snapshot(*_: object) -> None:
        taken[0] += 1
        tracemalloc.take_snapshot().dump(f"{os.environ[SNAPSHOT_ENV]}.{taken[0]}")

    signal.signal(signal.SIGUSR1, snapshot)
    from sluice.cli import main

    sys.argv = ["sluice", *sys.argv[2:]]
    main()


class TracedGateway(GatewayProcess):
    def __init__(self, *args: object, prefix: str, frames: int) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.prefix, self.frames = prefix, frames

    def argv(self) -> list[str]:
        return [sys.executable, __file__, "--serve", *super().argv()[3:]]

    def env(self) -> dict[str, str]:
        extra = {SNAPSHOT_ENV: self.prefix, "SLUICE_SNAPSHOT_FRAMES": str(self.frames)}
        return {**super().env(), **extra}


async def measure(streams: int, top: int, frames: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="sluice-memory-"))
    prefix = str(workdir / "snapshot")
    target_cpus, harness_cpus = proc.cpu_layout()
    mock = MockProcess(workdir, harness_cpus)
    await mock.start()
    gateway = TracedGateway(workdir, target_cpus, mock.url, "chat", prefix=prefix, frames=frames)
    await gateway.start(within=180.0)  # tracing slows the start too (40 s seen)
    proc.pin_self(harness_cpus)
    held: list[HeldStream] = []
    try:
        endpoint = Endpoint.from_base_url(f"http://127.0.0.1:{gateway.port}/v1", "chat")
        for _ in range(20):  # warm-up
            await run_stream(endpoint, endpoint.request("mock/fast"), 10)
        assert gateway.process is not None
        await asyncio.sleep(1)
        os.kill(gateway.process.pid, signal.SIGUSR1)
        await asyncio.sleep(2)
        opened = await asyncio.gather(
            *(open_held(endpoint, endpoint.request("mock/hold"), 30) for _ in range(streams))
        )
        held = [stream for stream in opened if isinstance(stream, HeldStream)]
        await asyncio.sleep(1)
        os.kill(gateway.process.pid, signal.SIGUSR1)
        await asyncio.sleep(3)
    finally:
        for stream in held:
            stream.close()
        gateway.stop()
        mock.stop()
    before = tracemalloc.Snapshot.load(f"{prefix}.1")
    after = tracemalloc.Snapshot.load(f"{prefix}.2")
    stats = after.compare_to(before, "traceback" if frames > 1 else "lineno")
    count = len(held)
    print(f"{count} streams held: {sum(s.size_diff for s in stats) / count / 1024:.2f} KB each")
    for stat in stats[:top]:
        where = stat.traceback.format()[-1].strip() if frames > 1 else str(stat.traceback)
        print(f"{stat.size_diff / count:8.0f} B {stat.count_diff / count:6.2f} objects  {where}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve_traced()
    else:
        args = [int(a) for a in sys.argv[1:4]]
        streams, top, frames = (args + [500, 30, 1][len(args) :])[:3]
        asyncio.run(measure(streams, top, frames))
