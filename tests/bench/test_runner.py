"""The runner end to end, on a few streams: the mock as a process, each target for real.

Bounds only, never timings: a busy machine may be slow, never wrong.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from sluice.bench.cli import build_parser, plan_from
from sluice.bench.report import figures, table, write_outputs
from sluice.bench.runner import Plan, Runner, RunResult
from sluice.bench.targets import TargetError, find_nginx, gateway_config


class Quiet:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def start(self, label: str, seconds: float) -> None: ...

    def update(self, detail: str) -> None: ...

    def finish(self, line: str) -> None:
        self.lines.append(line)

    def note(self, line: str) -> None:
        self.lines.append(line)


def tiny_plan(targets: list[str], **overrides: object) -> Plan:
    plan = Plan(
        targets=targets,
        sweep=[3],
        step_seconds=0.5,
        ttft_streams=5,
        gap_streams=1,
        idle_streams=0,
        slow_seconds=0,
    )
    for key, value in overrides.items():
        setattr(plan, key, value)
    return plan


async def run(plan: Plan, tmp_path: Path) -> RunResult:
    return await Runner(plan, Quiet(), tmp_path).run()  # type: ignore[arg-type]


async def test_direct_streams_arrive_whole_and_the_figures_are_written(tmp_path: Path) -> None:
    result = await run(tiny_plan(["direct"], slow_seconds=0.5), tmp_path / "work")
    (direct,) = result.targets
    assert direct.errors == []
    assert direct.ttft_probe is not None and direct.gap_probe is not None
    assert direct.ttft_probe.summary.streams == 5
    gap = direct.gap_probe.summary
    assert (gap.streams, gap.lost, gap.failed, gap.tokens) == (1, 0, 0, 64)
    assert gap.gap.n == 63
    assert gap.ttft.p50 is not None and 0 < gap.ttft.p50 < 5
    assert direct.gap_probe.target_cpu_s is None  # the mock is the harness, not a target
    (level,) = direct.sweep
    assert level.concurrency == 3 and level.summary.streams >= 3 and level.summary.lost == 0
    assert direct.slow_reader is not None and direct.slow_reader.bytes_read > 0
    assert direct.slow_reader.upstream_closed_after

    paths = write_outputs(result, tmp_path / "out", "python -m sluice.bench (test)")
    data = orjson.loads(paths[0].read_bytes())
    assert data["figures"][0]["target"] == "direct"
    assert data["figures"][0]["added_ttft_p99_us"] == 0
    assert paths[1].read_text().startswith("<svg")
    assert "direct" in table(result)


async def test_the_gateway_relays_whole_streams_and_is_measured(tmp_path: Path) -> None:
    result = await run(tiny_plan(["direct", "gateway"], idle_streams=20), tmp_path)
    gateway = next(t for t in result.targets if t.name == "gateway")
    assert gateway.errors == []
    assert gateway.gap_probe is not None
    gap = gateway.gap_probe.summary
    assert (gap.lost, gap.failed, gap.tokens) == (0, 0, 64)
    assert gateway.gap_probe.target_cpu_s is not None and gateway.gap_probe.target_cpu_s >= 0
    assert gateway.memory is not None
    assert gateway.memory.streams_open == 20 and gateway.memory.failed == 0
    assert gateway.memory.upstream_open == 20
    row = next(f for f in figures(result) if f.target == "gateway")
    assert row.added_ttft_p50_us is not None
    assert row.cpu_us_per_chunk_load is not None and row.cpu_us_per_chunk_load > 0


async def test_two_workers_of_the_gateway_and_of_nginx_are_measured_beside_one(
    tmp_path: Path,
) -> None:
    plan = tiny_plan(["direct", "gateway", "gateway-w2", "nginx", "nginx-w2"], sweep=[6])
    result = await run(plan, tmp_path)
    by_name = {t.name: t for t in result.targets}
    for name in ("gateway-w2", "nginx-w2"):
        target = by_name[name]
        assert target.errors == []
        assert target.sweep and target.sweep[0].summary.lost == 0
        assert target.sweep[0].summary.streams >= 6
    rows = {f.target: f for f in figures(result)}
    for name in ("gateway", "gateway-w2", "nginx", "nginx-w2"):
        assert rows[name].relayed_chunks_per_s is not None
        assert rows[name].relayed_chunks_per_s > 0
    printed = table(result)
    assert "chunks/s" in printed and "gateway-w2" in printed.split("workers", 1)[1]
    config = (tmp_path / "gateway-w2.toml").read_text()
    assert "[bus]" in config and "[bus]" not in (tmp_path / "gateway.toml").read_text()
    assert "worker_processes 2;" in (tmp_path / "nginx-w2" / "nginx.conf").read_text()


def test_an_unknown_worker_target_is_refused_by_name() -> None:
    args = build_parser("sluice bench").parse_args(["--targets", "gateway-w2,nginx-x2"])
    with pytest.raises(TargetError, match="nginx-x2"):
        plan_from(args)
    args = build_parser("sluice bench").parse_args(["--targets", "gateway-w3,nginx-w2"])
    assert plan_from(args).targets == ["direct", "gateway-w3", "nginx-w2"]


async def test_nginx_is_found_or_installed_and_relays_whole_streams(tmp_path: Path) -> None:
    assert find_nginx()  # runs scripts/ensure-nginx.sh when nginx is missing; raises if it fails
    result = await run(tiny_plan(["direct", "nginx"], idle_streams=20), tmp_path)
    nginx = next(t for t in result.targets if t.name == "nginx")
    assert nginx.errors == []
    assert nginx.gap_probe is not None
    assert nginx.gap_probe.summary.lost == 0 and nginx.gap_probe.summary.tokens == 64
    assert nginx.memory is not None and nginx.memory.streams_open == 20
    assert nginx.sweep and nginx.sweep[0].summary.lost == 0


def test_a_proxy_holds_two_sockets_per_stream_under_the_open_file_limit() -> None:
    from sluice.bench.proc import OWN_FILES, streams_through_a_proxy

    # This machine's hard limit: 20,000 descriptors, so not quite 10,000 streams.
    assert streams_through_a_proxy(20_000) == (20_000 - OWN_FILES) // 2 < 10_000
    assert streams_through_a_proxy(65_536) > 10_000
    assert streams_through_a_proxy(10) == 0


def test_the_gateway_targets_take_the_store_named_on_the_command_line(tmp_path: Path) -> None:
    args = build_parser("sluice bench").parse_args(["--gateway-store", "memory://"])
    plan = plan_from(args)
    assert plan.gateway_store == "memory://"
    named = gateway_config("http://127.0.0.1:1", "chat", 1, tmp_path, None, "g", "memory://")
    assert 'url = "memory://"' in named and "sqlite" not in named
    default = gateway_config("http://127.0.0.1:1", "chat", 1, tmp_path, None, "g")
    assert f'url = "sqlite:///{tmp_path}/g.db"' in default


async def test_the_gateway_with_telemetry_on_is_measured_exporting_to_the_mock(
    tmp_path: Path,
) -> None:
    result = await run(tiny_plan(["direct", "gateway-otel"]), tmp_path)
    traced = next(t for t in result.targets if t.name == "gateway-otel")
    assert traced.errors == []
    assert traced.gap_probe is not None and traced.gap_probe.summary.lost == 0
    assert traced.sweep and traced.sweep[0].summary.lost == 0
    row = next(f for f in figures(result) if f.target == "gateway-otel")
    assert row.cpu_us_per_chunk_load is not None and row.cpu_us_per_chunk_load > 0
    assert "[telemetry]\nenabled = true" in (tmp_path / "gateway-otel.toml").read_text()
    # its spans and metrics reached the mock at its shutdown (an exporter logs each failure)
    log = (tmp_path / "gateway-otel.log").read_text()
    assert "Failed to export" not in log and "Traceback" not in log
