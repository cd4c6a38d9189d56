#!/usr/bin/env python3
"""Where a stream's time to first token goes inside the gateway, step by step.

    .venv/bin/python scripts/ttft_steps.py [--streams 1000] [--model mock/fast]

Starts the benchmark's mock and one ``sluice serve`` on the benchmark's configuration, pinned
where ``sluice bench`` pins the gateway, with eight of its methods wrapped to note a
``perf_counter_ns`` each time they are called: the connection's ``connection_made``, its
``data_received`` and ``on_message_complete``, the application's ``__call__``, the entry to
``Gateway.start_session`` and its return, the upstream connection's ``request`` and
``data_received``, and the write of a response's body to the client. Then it runs the
time-to-first-token probe of ``sluice bench`` (the ``fast`` stream, or the profile
``--model`` names, one at a time, each on a new connection as soon as the last ended) and
prints, for every stream, the time between consecutive steps up to the first write to the
client: p50, p10 and p90.

Two more steps are outside the gateway's marks, and are timed against the clients' own
clock (``perf_counter`` is the system's monotonic clock, the same in every process): from the
client's start of its connect to the gateway's ``connection_made``, and from the gateway's
first write to the client's read of its first frame. The wrappers cost about a microsecond a
call; the clients' own time to first token is printed below them.

With ``--calls``, the gateway also counts the function calls it makes (Python functions and
built-in ones, by ``sys.setprofile``) from each ``connection_made`` to its upstream request's
write, whatever runs in between, and the script prints their number per stream and the
functions called most. The profile hook slows every call, so the steps' times of such a run
are not the gateway's.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import functools
import itertools
import os
import runpy
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sluice.stats import percentiles

#: the steps, in the order a stream passes them
STEPS = (
    ("conn_made", "the connection is made"),
    ("req_data", "its first bytes are read"),
    ("req_complete", "the request is parsed"),
    ("app_call", "the application is called"),
    ("ss_in", "start_session is entered"),
    ("up_request", "the upstream request is written"),
    ("ss_out", "start_session returns"),
    ("up_data", "the upstream's first bytes are read"),
    ("client_write", "the first write to the client"),
)
MARKS_ENV = "SLUICE_TTFT_STEPS_OUT"
CALLS_ENV = "SLUICE_TTFT_STEPS_CALLS"
WARM_UP_STREAMS = 50
IN_ALL = "connection made -> first write, in all"


def _child() -> None:
    """In the gateway's process: wrap the steps, keep their marks, and run ``sluice``."""
    from sluice.gateway import app, server
    from sluice.upstream import _Connection

    marks: list[tuple[int, str]] = []
    now = time.perf_counter_ns

    def mark(cls: Any, name: str, label: str) -> None:
        method = getattr(cls, name)

        @functools.wraps(method)
        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            marks.append((now(), label))
            return method(self, *args, **kwargs)

        setattr(cls, name, wrapped)

    resets: list[Callable[[], None]] = [marks.clear]
    dumps: list[Callable[[], None]] = []
    if os.environ.get(CALLS_ENV):
        reset, dump_calls = _count_calls(server._Protocol, _Connection)
        resets.append(reset)
        dumps.append(dump_calls)
    mark(server._Protocol, "connection_made", "conn_made")
    mark(server._Protocol, "data_received", "req_data")
    mark(server._Protocol, "on_message_complete", "req_complete")
    mark(_Connection, "request", "up_request")
    mark(_Connection, "data_received", "up_data")
    mark(server._Hook, "write", "client_write")
    call = app.GatewayApp.__call__
    start_session = app.Gateway.start_session

    async def called(self: Any, scope: Any, receive: Any, send: Any) -> None:
        marks.append((now(), "app_call"))
        await call(self, scope, receive, send)

    async def starting(self: Any, *args: Any, **kwargs: Any) -> Any:
        marks.append((now(), "ss_in"))
        session = await start_session(self, *args, **kwargs)
        marks.append((now(), "ss_out"))
        return session

    app.GatewayApp.__call__ = called  # type: ignore[method-assign]
    app.Gateway.start_session = starting  # type: ignore[method-assign]

    def dump() -> None:
        with open(os.environ[MARKS_ENV], "w") as out:
            out.writelines(f"{t} {label}\n" for t, label in marks)

    dumps.insert(0, dump)
    signal.signal(signal.SIGUSR1, lambda *_: [reset() for reset in resets])
    signal.signal(signal.SIGUSR2, lambda *_: [dump() for dump in dumps])
    sys.argv = ["sluice", *sys.argv[2:]]
    runpy.run_module("sluice.cli", run_name="__main__")


def _count_calls(protocol: Any, upstream: Any) -> tuple[Callable[[], None], Callable[[], None]]:
    """Count every call from a ``connection_made`` of ``protocol`` to the next ``request``
    of ``upstream``; returns what resets the counts and what writes them beside the marks."""
    counts: dict[str, int] = {}
    on = [False]
    streams = [0]

    def profile(frame: Any, event: str, arg: Any) -> None:
        if not on[0]:
            return
        if event == "call":
            code = frame.f_code
            where = "/".join(Path(code.co_filename).parts[-2:])
            name = f"{code.co_qualname} ({where})"
        elif event == "c_call":
            owner = getattr(arg, "__self__", None)
            kind = "" if owner is None else f"{type(owner).__name__}."
            name = f"{kind}{getattr(arg, '__name__', repr(arg))} (built-in)"
        else:
            return
        counts[name] = counts.get(name, 0) + 1

    def switch(cls: Any, method_name: str, state: bool) -> None:
        method = getattr(cls, method_name)

        @functools.wraps(method)
        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            if state and not on[0]:
                streams[0] += 1
            on[0] = state
            return method(self, *args, **kwargs)

        setattr(cls, method_name, wrapped)

    switch(protocol, "connection_made", True)
    switch(upstream, "request", False)

    def reset() -> None:
        counts.clear()
        streams[0] = 0

    def dump() -> None:
        with open(os.environ[MARKS_ENV] + ".calls", "w") as out:
            out.write(f"{streams[0]}\tstreams\n")
            out.writelines(f"{n}\t{name}\n" for name, n in counts.items())

    sys.setprofile(profile)
    return reset, dump


def steps(lines: list[str]) -> dict[str, list[float]]:
    """Microseconds between consecutive steps, per stream: a stream's marks run from its
    ``conn_made`` to the next one's; the first of each label counts."""
    streams: list[dict[str, int]] = []
    for line in lines:
        t, label = line.split()
        if label == "conn_made":
            streams.append({})
        if streams and label not in streams[-1]:
            streams[-1][label] = int(t)
    order = [label for label, _ in STEPS]
    names = [f"-> {what}" for _, what in STEPS[1:]]
    out: dict[str, list[float]] = {name: [] for name in names}
    out[IN_ALL] = []
    for stream in streams:
        if not all(label in stream for label in order):
            continue
        times = [stream[label] for label in order]
        if times != sorted(times):
            continue
        for name, (start, end) in zip(names, itertools.pairwise(times), strict=True):
            out[name].append((end - start) / 1000)
        out[IN_ALL].append((times[-1] - times[0]) / 1000)
    return out


async def main(args: argparse.Namespace) -> None:
    from sluice.bench.client import Endpoint, run_stream
    from sluice.bench.proc import cpu_layout
    from sluice.bench.targets import GatewayProcess, MockProcess

    workdir = Path(tempfile.mkdtemp(prefix="sluice-ttft-steps-"))
    marks_path = workdir / "marks.txt"

    class Instrumented(GatewayProcess):
        def argv(self) -> list[str]:
            python, _, _, *rest = super().argv()  # python -m sluice.cli …
            return [python, __file__, "--child", *rest]

        def env(self) -> dict[str, str]:
            calls = {CALLS_ENV: "1"} if args.calls else {}
            return {**super().env(), MARKS_ENV: str(marks_path), **calls}

    target_cpus, harness_cpus = cpu_layout()
    os.sched_setaffinity(0, harness_cpus)
    mock = MockProcess(workdir, harness_cpus)
    await mock.start()
    gateway = Instrumented(workdir, target_cpus, mock.url, "chat")
    clients: list[tuple[float, float]] = []  # (start of the connect, first frame read)
    try:
        await gateway.start()
        pid = gateway.pids()[0]
        endpoint = Endpoint.from_base_url(f"http://127.0.0.1:{gateway.port}/v1", "chat")
        request = endpoint.request(args.model)
        for _ in range(WARM_UP_STREAMS):
            await run_stream(endpoint, request, 10)
        os.kill(pid, signal.SIGUSR1)
        await asyncio.sleep(0.2)
        for _ in range(args.streams):
            record = await run_stream(endpoint, request, 10)
            if record.frames:
                clients.append((record.started, record.frames[0][0]))
        os.kill(pid, signal.SIGUSR2)
        for _ in range(50):
            await asyncio.sleep(0.1)
            if marks_path.exists() and marks_path.stat().st_size:
                break
        await asyncio.sleep(0.3)  # the dump is one write, but may still be under way
    finally:
        gateway.stop()
        mock.stop()
    lines = marks_path.read_text().splitlines()
    measured = steps(lines)
    measured.update(outside(lines, clients))
    measured["the client connects -> its first frame"] = [(read - at) * 1e6 for at, read in clients]
    print(f"{len(measured[IN_ALL])} streams of {args.streams} with every step in order")
    print(f"{'step':<40} {'p50':>8} {'p10':>8} {'p90':>8}  (µs)")
    for name, values in measured.items():
        if values:
            figures = " ".join(f"{p or 0:8.1f}" for p in percentiles(values, 50, 10, 90))
            print(f"{name:<40} {figures}")
    if args.calls:
        _print_calls(Path(f"{marks_path}.calls"))


def _print_calls(path: Path) -> None:
    counts: dict[str, int] = {}
    for line in path.read_text().splitlines():
        number, _, name = line.partition("\t")
        counts[name] = int(number)
    streams = max(counts.pop("streams", 0), 1)
    total = sum(counts.values())
    python = sum(n for name, n in counts.items() if not name.endswith("(built-in)"))
    print(
        f"\ncalls from connection_made to the upstream write: {total / streams:.0f} per stream, "
        f"{python / streams:.0f} of them to functions written in Python"
    )
    print(f"(over {streams} streams; {len(counts)} functions), those called most, per stream:")
    for name, calls in sorted(counts.items(), key=lambda item: -item[1])[:25]:
        print(f"{calls / streams:8.1f}  {name}")


def outside(lines: list[str], clients: list[tuple[float, float]]) -> dict[str, list[float]]:
    """The two steps outside the gateway, in µs: from each client's start to the next
    ``connection_made``, and from the first write to the client after it to the client's
    first frame."""
    made = [int(t) / 1e9 for t, label in (line.split() for line in lines) if label == "conn_made"]
    writes = [
        int(t) / 1e9 for t, label in (line.split() for line in lines) if label == "client_write"
    ]
    before: list[float] = []
    after: list[float] = []
    for started, read in clients:
        i = bisect.bisect_left(made, started)
        if i == len(made):
            continue
        j = bisect.bisect_left(writes, made[i])
        if j == len(writes) or writes[j] > read:
            continue
        before.append((made[i] - started) * 1e6)
        after.append((read - writes[j]) * 1e6)
    return {
        "the client connects -> connection made": before,
        "the first write -> the client reads it": after,
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child()
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--streams", type=int, default=1000)
        parser.add_argument("--model", default="mock/fast")
        parser.add_argument("--calls", action="store_true", help="also count the calls")
        asyncio.run(main(parser.parse_args()))
