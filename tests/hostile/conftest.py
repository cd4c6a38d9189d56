"""The gateway as a process of its own (its resident memory is its own), a hostile origin in
a thread, and a sampler of the gateway's memory."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.hostile.origin import HostileOrigin

#: the gateway's ``streams.keep_finished_bytes`` here
KEEP_FINISHED_BYTES = 8 * 1024 * 1024
#: a key with a typographic quote pasted into it: outside latin-1
BAD_KEY = "sk-\u201cpasted\u201d"


#: each case's memory figures, printed after the tests: (case, grew, after), in bytes
FIGURES: list[tuple[str, int, int]] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("hostile upstream: the gateway's resident memory, per case")
    terminalreporter.write_line(f"{'case':<28}  {'grew by (peak)':>14}  {'after':>10}")
    for case, grew, after in FIGURES:
        terminalreporter.write_line(
            f"{case:<28}  {grew / 2**20:>11.1f} MB  {after / 2**20:>7.1f} MB"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@dataclass
class GatewayProcess:
    url: str
    pid: int
    origin: HostileOrigin


@pytest.fixture(scope="module")
def origin() -> Iterator[HostileOrigin]:
    server = HostileOrigin()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def hostile_gateway(
    origin: HostileOrigin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    home = tmp_path_factory.mktemp("hostile")
    config = home / "sluice.toml"
    base = f"http://127.0.0.1:{origin.port}/v1"
    # The defaults, but for three: a stall deadline of 2 s (60 s by default) and 20,000 events
    # a stream (200,000), so that those cases end within seconds, and 8 MB of finished
    # sessions kept in memory (64 MB), so that the storm's return is seen against a smaller
    # budget; the other bounds are the defaults (docs/configuration.md).
    config.write_text(
        # the production store: ``memory://`` keeps every event of every session
        f'[store]\nurl = "sqlite:///{home}/sluice.db"\n'
        "[streams]\nstall_timeout = 2.0\nmax_stream_events = 20000\nretry_base_delay = 0.05\n"
        f"keep_finished_bytes = {KEEP_FINISHED_BYTES}\n"
        '[server]\nlog_level = "warning"\n'
        f'[providers.hostile]\nkind = "openai"\nbase_url = "{base}"\n'
        'api_key_env = "SLUICE_HOSTILE_KEY"\n'
        f'[providers.badkey]\nkind = "openai"\nbase_url = "{base}"\n'
        'api_key_env = "SLUICE_BAD_KEY"\n'
    )
    port = free_port()
    env = {**os.environ, "SLUICE_HOSTILE_KEY": "sk-plain", "SLUICE_BAD_KEY": BAD_KEY}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise AssertionError("the gateway did not start")
        yield GatewayProcess(url, proc.pid, origin)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class MemorySampler:
    """The gateway's resident memory, sampled every 10 ms while a case runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = rss(pid)
        self.peak = self.baseline
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss(self.pid))
            await asyncio.sleep(0.01)

    def __enter__(self) -> MemorySampler:
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, rss(self.pid))

    async def settled(self, margin: int, within: float = 10.0) -> int:
        """The resident memory once it is back within ``margin`` of the baseline (a bounded
        wait: the allocator gives memory back as the gateway's idle work runs); the last
        figure otherwise, for the assertion to show."""
        deadline = time.monotonic() + within
        now = rss(self.pid)
        while now - self.baseline > margin and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            now = rss(self.pid)
        return now
