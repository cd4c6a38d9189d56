"""The scenarios, run against every target under identical load in one run.

1. latency at concurrency 1: a time-to-first-token probe (``fast`` streams one after another)
   and a gap probe (``paced`` streams one after another);
2. the concurrency sweep: at each level, that many workers each run ``paced`` streams back to
   back for the step's duration (their starts spread over one stream's length, so the pace
   ticks of different streams do not line up); a level is sustained when the stall rule holds;
3. idle open streams: a fresh process, its resident memory idle, then with N ``hold`` streams
   open through it;
4. a slow reader: one ``flood`` stream read through a small receive buffer, a read every half
   second; the target's resident memory is sampled while the mock pushes as fast as allowed.

The load generator (this process) and the mock share the harness CPUs; the target's processes
get the others. Each measurement reads the target's CPU time and the harness's: a measurement
in which the harness was busy more than 90% of its CPUs is flagged ``harness_bound`` (it may
have measured the harness, not the target).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from sluice.bench import proc
from sluice.bench.client import Endpoint, HeldStream, open_held, run_slow_reader, run_stream
from sluice.bench.profiles import PROFILES, Profile
from sluice.bench.stats import (
    StallRule,
    StreamRecord,
    StreamSetSummary,
    analyse,
    summarize,
    sustained,
)
from sluice.bench.targets import (
    HOST,
    GatewayProcess,
    ManagedProcess,
    MockProcess,
    NginxProcess,
    PipeProcess,
    Target,
    TargetError,
    find_nginx,
    http_get_json,
    target_kind,
)

HARNESS_BUSY = 0.90
#: Sweep levels a target may fail in a row before the rest of its sweep is skipped.
FAILURES_IN_A_ROW = 2
OPEN_AT_ONCE = 200
WARM_UP_STREAMS = 20

BUILTIN_TARGETS = ("direct", "gateway", "nginx")


@dataclass
class Plan:
    """What one run measures, and how long each part takes."""

    targets: list[str] = field(default_factory=lambda: list(BUILTIN_TARGETS))
    #: extra OpenAI-compatible targets by name: base URL (``http://host:port/v1``)
    external: dict[str, str] = field(default_factory=dict)
    fmt: str = "chat"
    sweep: list[int] = field(default_factory=lambda: [50, 100, 200, 300, 400, 500, 750, 1000])
    step_seconds: float = 8.0
    ttft_streams: int = 400
    gap_streams: int = 30
    idle_streams: int = 10_000
    slow_seconds: float = 8.0
    quick: bool = False
    mock_port: int | None = None
    #: the store of every gateway target (default: a SQLite file of its own in the workdir)
    gateway_store: str | None = None

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(
            sweep=[50, 100, 200],
            step_seconds=4.0,
            ttft_streams=150,
            gap_streams=8,
            idle_streams=1000,
            slow_seconds=4.0,
            quick=True,
        )


@dataclass
class Measurement:
    """One probe or sweep level on one target."""

    label: str
    concurrency: int
    wall_s: float
    summary: StreamSetSummary
    held: bool
    #: CPU seconds of the target's processes (None when they are unknown)
    target_cpu_s: float | None
    harness_cpu_s: float
    harness_busy: float
    harness_bound: bool

    @property
    def cpu_us_per_chunk(self) -> float | None:
        frames = self.summary.data_frames
        if self.target_cpu_s is None or not frames:
            return None
        return self.target_cpu_s / frames * 1e6

    @property
    def target_busy(self) -> float | None:
        return None if self.target_cpu_s is None else self.target_cpu_s / self.wall_s


@dataclass
class MemoryResult:
    streams_wanted: int
    streams_open: int
    failed: int
    upstream_open: int | None
    #: upstream streams still open 10 s after the clients left (None: not known)
    upstream_open_after_close: int | None
    #: seconds until the target had closed every upstream stream (None: not within 10 s)
    upstream_closed_in: float | None
    rss_idle: int
    rss_open: int
    rss_after_close: int
    open_seconds: float
    errors: dict[str, int]

    @property
    def kb_per_stream(self) -> float | None:
        if not self.streams_open:
            return None
        return (self.rss_open - self.rss_idle) / self.streams_open / 1024


@dataclass
class SlowReaderResult:
    seconds: float
    bytes_read: int
    mock_bytes_sent: int | None
    rss_start: int | None
    rss_peak: int | None
    rss_end: int | None
    upstream_closed_after: bool | None

    @property
    def rss_growth(self) -> int | None:
        if self.rss_start is None or self.rss_peak is None:
            return None
        return self.rss_peak - self.rss_start


@dataclass
class TargetResult:
    name: str
    kind: str
    base_url: str
    ttft_probe: Measurement | None = None
    gap_probe: Measurement | None = None
    sweep: list[Measurement] = field(default_factory=list)
    memory: MemoryResult | None = None
    slow_reader: SlowReaderResult | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def sustained(self) -> int:
        return sustained([(m.concurrency, m.held) for m in self.sweep])

    @property
    def load_step(self) -> Measurement | None:
        """The sweep level whose CPU per chunk is reported: the highest sustained one, or the
        first level when none held."""
        best = self.sustained
        for m in self.sweep:
            if m.concurrency == best:
                return m
        return self.sweep[0] if self.sweep else None


@dataclass
class RunResult:
    plan: Plan
    started_at: float
    seconds: float
    target_cpus: list[int]
    harness_cpus: list[int]
    open_files_limit: int
    targets: list[TargetResult]


class Progress:
    """What the runner tells as it goes; ``report.ProgressBar`` draws it."""

    def start(self, label: str, seconds: float) -> None: ...

    def update(self, detail: str) -> None: ...

    def finish(self, line: str) -> None: ...

    def note(self, line: str) -> None: ...


class _Live:
    """A measurement in progress: streams finished so far, for the progress bar."""

    def __init__(self) -> None:
        self.streams = 0
        self.failed = 0
        self.frames = 0

    def add(self, record: StreamRecord) -> StreamRecord:
        self.streams += 1
        self.frames += len(record.frames)
        if record.error is not None:
            self.failed += 1
        return record

    def detail(self) -> str:
        return f"streams {self.streams:,}  frames {self.frames:,}  failed {self.failed:,}"


@dataclass
class _Running:
    """A target with the process behind it (``None`` for direct and external targets)."""

    target: Target
    process: ManagedProcess | None = None
    restart: Callable[[], Awaitable[_Running]] | None = None


class Runner:
    def __init__(self, plan: Plan, progress: Progress, workdir: Path) -> None:
        self.plan = plan
        self.progress = progress
        self.workdir = workdir
        self.rule = StallRule(PROFILES["paced"].pace)
        self.target_cpus, self.harness_cpus = proc.cpu_layout()
        self.mock: MockProcess | None = None
        self._processes: list[ManagedProcess] = []

    # -- the run ------------------------------------------------------------------------------

    async def run(self) -> RunResult:
        plan = self.plan
        started_wall, started = time.time(), time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Each idle stream through a proxy holds two sockets there; leave room for the rest.
        files = proc.raise_open_files(max(4 * plan.idle_streams + 4096, 65536))
        ceiling = proc.streams_through_a_proxy(files)
        if plan.idle_streams > ceiling:
            self.progress.note(
                f"the open-file limit is {files:,} and cannot be raised here: a proxy holds two "
                f"sockets per stream, so about {ceiling:,} of the {plan.idle_streams:,} idle "
                "streams can be open through one; the rest will fail"
            )
        affinity = os.sched_getaffinity(0)
        proc.pin_self(self.harness_cpus)
        try:
            running = await self._start_all()
            results = {
                r.target.name: TargetResult(r.target.name, r.target.kind, r.target.base_url)
                for r in running
            }
            await self._latency(running, results)
            await self._sweep(running, results)
            running = await self._memory(running, results)
            await self._slow_readers(running, results)
        finally:
            for process in reversed(self._processes):
                process.stop()
            proc.pin_self(affinity)
        return RunResult(
            plan=plan,
            started_at=started_wall,
            seconds=time.monotonic() - started,
            target_cpus=sorted(self.target_cpus),
            harness_cpus=sorted(self.harness_cpus),
            open_files_limit=files,
            targets=list(results.values()),
        )

    async def _start_all(self) -> list[_Running]:
        plan = self.plan
        self.mock = mock = MockProcess(self.workdir, self.harness_cpus)
        if plan.mock_port:
            mock.port = plan.mock_port
        self._processes.append(mock)
        self.progress.note(f"starting the mock on port {mock.port}")
        await mock.start()
        running = [_Running(Target("direct", f"{mock.url}/v1", "direct"))]
        for name in plan.targets:
            if name == "direct":
                continue
            match target_kind(name):
                case ("gateway", workers):
                    variant = name.removeprefix("gateway-")
                    running.append(
                        await self._start_gateway(workers, variant == "redis", variant == "otel")
                    )
                case ("nginx", workers):
                    running.append(await self._start_nginx(workers))
                case ("python-pipe", _):
                    running.append(await self._start_pipe())
                case _:
                    known = ", ".join(BUILTIN_TARGETS)
                    raise TargetError(
                        f"unknown target {name!r} (built in: {known}, -wN, gateway-redis, "
                        "gateway-otel, python-pipe)"
                    )
        for name, url in plan.external.items():
            running.append(_Running(Target(name, url.rstrip("/"), "external")))
        return running

    def _cpus(self, workers: int) -> set[int]:
        """One process on the target's CPUs; several on every CPU (the harness's too)."""
        return self.target_cpus if workers <= 1 else self.target_cpus | self.harness_cpus

    async def _start_gateway(
        self, workers: int = 1, redis: bool = False, otel: bool = False
    ) -> _Running:
        assert self.mock is not None
        cpus = self._cpus(workers)
        process = GatewayProcess(
            self.workdir,
            cpus,
            self.mock.url,
            self.plan.fmt,
            workers,
            self.plan.gateway_store,
            redis,
            otel,
        )
        self._processes.append(process)
        self.progress.note(f"starting {process.name} on port {process.port}")
        logged = process.log_path.stat().st_size if process.log_path.exists() else 0
        await process.start("/healthz")
        if workers > 1:
            await self._every_worker_up(process, workers, logged)
        url = f"http://{HOST}:{process.port}/v1"
        target = Target(process.name, url, "gateway", process.pids)
        return _Running(target, process, lambda: self._start_gateway(workers, redis, otel))

    async def _every_worker_up(self, process: ManagedProcess, workers: int, logged: int) -> None:
        """Wait until the supervisor has ``workers`` children and each has started serving
        (its log line about the client bounds, past ``logged`` bytes of the log), so that
        no measurement waits on a start."""
        for _ in range(600):
            started = process.log_path.read_bytes()[logged:].count(b"client bounds")
            if len(process.pids()) == workers + 1 and started >= workers:
                return
            await asyncio.sleep(0.05)
        raise TargetError(f"{process.name}: {workers} workers not up within 30 s")

    async def _start_nginx(self, workers: int = 1) -> _Running:
        assert self.mock is not None
        binary = find_nginx()
        cpus = self._cpus(workers)
        process = NginxProcess(self.workdir, cpus, self.mock.port, binary, workers)
        self._processes.append(process)
        self.progress.note(f"starting {process.name} ({binary}) on port {process.port}")
        await process.start("/healthz")  # the mock's health answer, through nginx
        url = f"http://{HOST}:{process.port}/v1"
        target = Target(process.name, url, "nginx", process.pids)
        return _Running(target, process, lambda: self._start_nginx(workers))

    async def _start_pipe(self) -> _Running:
        assert self.mock is not None
        process = PipeProcess(self.workdir, self.target_cpus, self.mock.port)
        self._processes.append(process)
        self.progress.note(f"starting {process.name} on port {process.port}")
        await process.start("/healthz")  # the mock's health answer, through the pipe
        url = f"http://{HOST}:{process.port}/v1"
        target = Target(process.name, url, "pipe", process.pids)
        return _Running(target, process, self._start_pipe)

    # -- measuring ----------------------------------------------------------------------------

    def _endpoint(self, target: Target) -> Endpoint:
        return Endpoint.from_base_url(target.base_url, self.plan.fmt)

    def _harness_cpu(self) -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        mock = self.mock.pids() if self.mock is not None else []
        return usage.ru_utime + usage.ru_stime + proc.total_cpu(mock)

    async def _measure(
        self,
        target: Target,
        label: str,
        concurrency: int,
        body: Callable[[_Live], Awaitable[list[StreamRecord]]],
        profile: Profile,
        expected_seconds: float,
    ) -> Measurement:
        live = _Live()
        self.progress.start(f"{target.name:<10} {label}", expected_seconds)
        ticker = asyncio.ensure_future(self._tick(live))
        pids = target.pids()
        # The load generator keeps every frame it reads: a cyclic collection over them would
        # pause it for tens of milliseconds mid-measurement, a stall of its own. Collect
        # between measurements instead.
        gc.collect()
        gc.disable()
        cpu0, harness0, t0 = proc.total_cpu(pids), self._harness_cpu(), time.monotonic()
        try:
            records = await body(live)
        finally:
            gc.enable()
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        wall = time.monotonic() - t0
        target_cpu = proc.total_cpu(pids) - cpu0 if pids else None
        harness_cpu = self._harness_cpu() - harness0
        summary = summarize(analyse(r, profile.deltas) for r in records)
        busy = harness_cpu / wall / max(1, len(self.harness_cpus))
        # The gap limit is about paced streams; an unpaced one is held when nothing was lost.
        held = self.rule.holds(summary) if profile.pace else not (summary.lost or summary.failed)
        measurement = Measurement(
            label=label,
            concurrency=concurrency,
            wall_s=wall,
            summary=summary,
            held=held,
            target_cpu_s=target_cpu,
            harness_cpu_s=harness_cpu,
            harness_busy=busy,
            # One stream at a time keeps the harness busy by design; only load can saturate it.
            harness_bound=concurrency > 1 and busy > HARNESS_BUSY,
        )
        self.progress.finish(_describe(target.name, measurement))
        return measurement

    async def _tick(self, live: _Live) -> None:
        while True:
            self.progress.update(live.detail())
            await asyncio.sleep(0.2)

    def _timeout(self, profile: Profile) -> float:
        return profile.duration * 3 + 10

    async def _sequential(self, target: Target, profile: Profile, count: int) -> Measurement:
        endpoint = self._endpoint(target)
        request = endpoint.request(f"mock/{profile.name}")
        timeout = self._timeout(profile)

        async def body(live: _Live) -> list[StreamRecord]:
            return [live.add(await run_stream(endpoint, request, timeout)) for _ in range(count)]

        label = f"c=1 {profile.name} x{count}"
        expected = count * (profile.duration + 0.005)
        return await self._measure(target, label, 1, body, profile, expected)

    async def _closed_loop(self, target: Target, level: int, seconds: float) -> Measurement:
        profile = PROFILES["paced"]
        endpoint = self._endpoint(target)
        request = endpoint.request("mock/paced")
        timeout = self._timeout(profile)
        loop = asyncio.get_running_loop()

        async def body(live: _Live) -> list[StreamRecord]:
            records: list[StreamRecord] = []
            stop_at = loop.time() + seconds

            async def worker(i: int) -> None:
                await asyncio.sleep(profile.duration * i / level)
                while True:  # every worker runs at least one stream, however short the step
                    records.append(live.add(await run_stream(endpoint, request, timeout)))
                    if loop.time() >= stop_at:
                        break

            await asyncio.gather(*(worker(i) for i in range(level)))
            return records

        expected = seconds + profile.duration
        return await self._measure(target, f"sweep c={level}", level, body, profile, expected)

    # -- scenarios ----------------------------------------------------------------------------

    async def _latency(self, running: list[_Running], results: dict[str, TargetResult]) -> None:
        for r in running:
            result = results[r.target.name]
            await self._warm_up(r.target)
            result.ttft_probe = await self._guard(
                result,
                "ttft probe",
                self._sequential(r.target, PROFILES["fast"], self.plan.ttft_streams),
            )
            result.gap_probe = await self._guard(
                result,
                "gap probe",
                self._sequential(r.target, PROFILES["paced"], self.plan.gap_streams),
            )

    async def _warm_up(self, target: Target) -> None:
        """A few streams first, so that no figure includes a process's first-use costs
        (imports, pools, caches)."""
        endpoint = self._endpoint(target)
        request = endpoint.request("mock/fast")
        for _ in range(WARM_UP_STREAMS):
            await run_stream(endpoint, request, 10)

    async def _sweep(self, running: list[_Running], results: dict[str, TargetResult]) -> None:
        failures = {r.target.name: 0 for r in running}
        for level in self.plan.sweep:
            for r in running:
                name = r.target.name
                if failures[name] >= FAILURES_IN_A_ROW:
                    continue
                result = results[name]
                m = await self._guard(
                    result,
                    f"sweep c={level}",
                    self._closed_loop(r.target, level, self.plan.step_seconds),
                )
                if m is not None:
                    result.sweep.append(m)
                failures[name] = 0 if m is not None and m.held else failures[name] + 1
                if failures[name] >= FAILURES_IN_A_ROW:
                    self.progress.note(f"{name}: {FAILURES_IN_A_ROW} levels failed in a row")
                # let sockets in TIME_WAIT and the target's finalisation settle between steps
                await asyncio.sleep(0.5)

    async def _fresh(self, r: _Running) -> _Running:
        """The same target on a new process, so that memory freed by earlier scenarios (and
        kept by the allocator) cannot hide what the next one costs."""
        if r.process is None or r.restart is None:
            return r
        r.process.stop()
        return await r.restart()

    async def _memory(
        self, running: list[_Running], results: dict[str, TargetResult]
    ) -> list[_Running]:
        """Idle streams through a fresh process of each target that has one."""
        if self.plan.idle_streams <= 0:
            return running
        fresh: list[_Running] = []
        for r in running:
            if r.process is None:
                fresh.append(r)
                continue
            r = await self._fresh(r)
            fresh.append(r)
            result = results[r.target.name]
            result.base_url = r.target.base_url
            try:
                result.memory = await self._idle_streams(r.target, self.plan.idle_streams)
            except (OSError, TargetError) as exc:
                result.errors.append(f"idle streams: {exc}")
                self.progress.note(f"{r.target.name}: idle streams failed: {exc}")
            finally:
                # Whatever it still holds upstream must not weigh on the next target.
                if r.process is not None:
                    r.process.stop()
        return fresh

    async def _idle_streams(self, target: Target, count: int) -> MemoryResult:
        endpoint = self._endpoint(target)
        fast, hold = endpoint.request("mock/fast"), endpoint.request("mock/hold")
        for _ in range(WARM_UP_STREAMS):
            await run_stream(endpoint, fast, 10)
        await asyncio.sleep(1.0)
        pids = target.pids()
        rss_idle = proc.total_rss(pids)
        upstream_before = await self._mock_counter("streams_open") or 0
        live = _Live()
        self.progress.start(f"{target.name:<10} idle streams x{count:,}", count / 800 + 2)
        ticker = asyncio.ensure_future(self._tick(live))
        gate = asyncio.Semaphore(OPEN_AT_ONCE)
        held: list[HeldStream] = []
        failed: list[StreamRecord] = []

        async def one() -> None:
            async with gate:
                opened = await open_held(endpoint, hold, 60)
            if isinstance(opened, HeldStream):
                held.append(opened)
                live.add(opened.record)
            else:
                failed.append(live.add(opened))

        t0 = time.monotonic()
        try:
            await asyncio.gather(*(one() for _ in range(count)))
            open_seconds = time.monotonic() - t0
            await asyncio.sleep(1.0)
            rss_open = proc.total_rss(pids)
            upstream_open = await self._mock_counter("streams_open")
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            for stream in held:
                stream.close()
        closed_at = time.monotonic()
        closed_in: float | None = None
        still_open = upstream_open
        while time.monotonic() - closed_at < 10:
            await asyncio.sleep(0.25)
            still_open = await self._mock_counter("streams_open")
            if still_open is not None and still_open <= upstream_before:
                closed_in = time.monotonic() - closed_at
                break
        rss_after = proc.total_rss(pids)
        errors = summarize(analyse(r, 0) for r in failed).errors
        result = MemoryResult(
            streams_wanted=count,
            streams_open=len(held),
            failed=len(failed),
            upstream_open=upstream_open,
            upstream_open_after_close=None
            if still_open is None
            else max(0, still_open - upstream_before),
            upstream_closed_in=closed_in,
            rss_idle=rss_idle,
            rss_open=rss_open,
            rss_after_close=rss_after,
            open_seconds=open_seconds,
            errors=errors,
        )
        kb = result.kb_per_stream
        self.progress.finish(
            f"{target.name:<10} idle streams: {len(held):,} open, {len(failed):,} failed, "
            f"RSS {rss_idle / 2**20:.1f} -> {rss_open / 2**20:.1f} MB"
            + (f" ({kb:.1f} KB/stream)" if kb is not None else "")
        )
        return result

    async def _slow_readers(
        self, running: list[_Running], results: dict[str, TargetResult]
    ) -> None:
        if self.plan.slow_seconds <= 0:
            return
        for r in running:
            r = await self._fresh(r)
            result = results[r.target.name]
            try:
                result.slow_reader = await self._slow_reader(r.target, self.plan.slow_seconds)
            except (OSError, TargetError) as exc:
                result.errors.append(f"slow reader: {exc}")
                self.progress.note(f"{r.target.name}: slow reader failed: {exc}")

    async def _slow_reader(self, target: Target, seconds: float) -> SlowReaderResult:
        endpoint = self._endpoint(target)
        request = endpoint.request("mock/flood")
        await self._warm_up(target)
        await asyncio.sleep(0.5)
        pids = target.pids()
        sent0 = await self._mock_counter("bytes_sent")
        rss_start = proc.total_rss(pids) if pids else None
        peak = rss_start
        self.progress.start(f"{target.name:<10} slow reader", seconds)

        async def sample() -> None:
            nonlocal peak
            while True:
                await asyncio.sleep(0.25)
                if pids and peak is not None:
                    peak = max(peak, proc.total_rss(pids))
                self.progress.update(f"RSS {(peak or 0) / 2**20:.1f} MB")

        sampler = asyncio.ensure_future(sample())
        try:
            read = await run_slow_reader(endpoint, request, seconds, interval=0.5)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        sent1 = await self._mock_counter("bytes_sent")
        rss_end = proc.total_rss(pids) if pids else None
        closed = None
        for _ in range(20):  # did the target close its upstream once the reader left?
            await asyncio.sleep(0.25)
            closed = await self._mock_counter("streams_open") == 0
            if closed:
                break
        result = SlowReaderResult(
            seconds=read.seconds,
            bytes_read=read.bytes_read,
            mock_bytes_sent=None if sent0 is None or sent1 is None else sent1 - sent0,
            rss_start=rss_start,
            rss_peak=peak,
            rss_end=rss_end,
            upstream_closed_after=closed,
        )
        growth = result.rss_growth
        self.progress.finish(
            f"{target.name:<10} slow reader: read {read.bytes_read / 1024:.0f} KB, mock sent "
            f"{(result.mock_bytes_sent or 0) / 2**20:.1f} MB"
            + (f", RSS +{growth / 2**20:.1f} MB" if growth is not None else "")
        )
        return result

    async def _mock_counter(self, name: str) -> int | None:
        if self.mock is None:
            return None
        try:
            stats = orjson.loads(await http_get_json(self.mock.port, "/stats"))
        except (OSError, TimeoutError, orjson.JSONDecodeError):
            return None
        value = stats.get(name)
        return value if isinstance(value, int) else None

    async def _guard(
        self,
        result: TargetResult,
        what: str,
        measurement: Awaitable[Measurement],
    ) -> Measurement | None:
        """Run one measurement; a target that breaks is noted, and the run goes on."""
        try:
            m = await measurement
        except (OSError, TargetError, ValueError) as exc:
            result.errors.append(f"{what}: {exc}")
            self.progress.note(f"{result.name}: {what} failed: {exc}")
            return None
        return m


def _describe(name: str, m: Measurement) -> str:
    s = m.summary
    parts = [f"{name:<10} {m.label:<20} {s.streams:>6,} streams"]
    if s.ttft.p99 is not None and s.ttft.p50 is not None:
        parts.append(f"ttft p50 {s.ttft.p50 * 1e3:7.2f} p99 {s.ttft.p99 * 1e3:7.2f} ms")
    if s.gap.max is not None:
        parts.append(f"gap max {s.gap.max * 1e3:6.1f} ms")
    if m.cpu_us_per_chunk is not None:
        parts.append(f"{m.cpu_us_per_chunk:6.1f} us/chunk")
    parts.append(f"lost {s.lost}")
    parts.append("held" if m.held else "FAILED")
    if m.harness_bound:
        parts.append(f"(harness {m.harness_busy:.0%} busy)")
    return "  ".join(parts)


def default_workdir() -> Path:
    base = Path(os.environ.get("TMPDIR", "/tmp"))
    return base / f"sluice-bench-{os.getpid()}"
