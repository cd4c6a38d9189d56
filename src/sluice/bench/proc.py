"""Processes as the benchmark sees them: CPU time and resident memory read from ``/proc``,
CPU pinning, the open-file limit, child processes, and the event loop the harness runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import subprocess
from collections.abc import Coroutine, Iterable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the whole process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size (``VmRSS``) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0  # a zombie has no VmRSS line


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (nginx's workers under its master)."""
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                found.extend(int(p) for p in (task / "children").read_text().split())
    return found


def total_cpu(pids: Iterable[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += cpu_seconds(pid)
    return total


def total_rss(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += rss_bytes(pid)
    return total


def cpu_layout() -> tuple[set[int], set[int]]:
    """(CPUs for the process under test, CPUs for the mock and the load generator).

    With more than one CPU available, the target gets the first and the harness the others,
    so neither steals the other's time; with one, both share it.
    """
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return set(available), set(available)
    return {available[0]}, set(available[1:])


def pin_self(cpus: set[int]) -> None:
    os.sched_setaffinity(0, cpus)


def raise_open_files(wanted: int) -> int:
    """Raise this process's open-file limit (inherited by its children) to ``wanted`` if it
    can; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    with contextlib.suppress(ValueError, OSError):
        # Raising the hard limit needs privilege (we run as root in CI); fall back to it.
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(wanted, hard)))
        return wanted
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


#: descriptors a proxy under test holds besides its streams' sockets (listening sockets, logs,
#: the event loop's epoll, the store's files), with room to spare
OWN_FILES = 64


def streams_through_a_proxy(open_files: int) -> int:
    """How many streams one proxy process can hold open under this open-file limit: each holds
    two sockets there, the client's and the upstream's."""
    return max(0, (open_files - OWN_FILES) // 2)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def spawn(
    argv: Sequence[str],
    cpus: set[int],
    *,
    env: dict[str, str] | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    cwd: str | Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child pinned to ``cpus`` from its first instruction: the child inherits the
    affinity of the thread that forks it, so this thread takes ``cpus`` for the moment."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        return subprocess.Popen(
            list(argv), env=env, stdout=stdout, stderr=stderr, cwd=cwd, start_new_session=True
        )
    finally:
        os.sched_setaffinity(0, before)


def stop(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Terminate, then kill if it will not go; harmless on a process already gone."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_fast(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    result: T = uvloop.run(main)
    return result
