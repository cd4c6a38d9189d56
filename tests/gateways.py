"""Gateways as processes of their own: ``sluice serve`` on a configuration file, this checkout's
code, its output in a log file; ready once ``/healthz`` answers, terminated (or killed) after.
Used where a test needs what only a process shows: a ``kill -9``, several nodes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from sluice.bench.targets import wait_ready

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Node:
    """One gateway process, and a client of it."""

    port: int
    process: subprocess.Popen[bytes]
    http: httpx.AsyncClient

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def owns(self, record: dict[str, Any]) -> bool:
        """Whether ``record`` names this process as its node (its name holds the pid)."""
        return f"-{self.process.pid}-" in str(record.get("node"))

    async def kill(self) -> None:
        """``kill -9``: nothing of the process runs after."""
        os.kill(self.process.pid, signal.SIGKILL)
        await asyncio.to_thread(self.process.wait, 10)


@asynccontextmanager
async def gateway_node(workdir: Path, name: str, config: str, port: int) -> AsyncIterator[Node]:
    """``sluice serve`` on ``config`` (which names ``port``), ready to answer."""
    path = workdir / f"{name}.toml"
    path.write_text(config)
    process = spawn_node(path, workdir / f"{name}.log")
    try:
        try:
            await wait_ready(port, "/healthz", 30.0, process)
        except Exception as exc:
            raise RuntimeError(f"{name}: {exc}\n{(workdir / f'{name}.log').read_text()}") from exc
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=30) as http:
            yield Node(port, process, http)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 15)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, 10)


def spawn_node(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """``sluice serve`` on ``config``, this checkout's code, its output in ``log_path``."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "sluice.cli", "serve", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=log_path.parent,
            env=env,
        )
