"""``sluice bench``: run the benchmark and write its table, JSON and chart."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from sluice.bench.proc import run_fast
from sluice.bench.report import ProgressBar, table, write_outputs
from sluice.bench.runner import BUILTIN_TARGETS, Plan, Runner
from sluice.bench.targets import TargetError, target_kind

DESCRIPTION = """\
Measure what the gateway adds to a stream (time to first token, inter-chunk gaps, CPU per
relayed chunk, memory per open stream, sustained streams) against the mock upstream reached
directly and through nginx, under identical load in one run."""


def _levels(text: str) -> list[int]:
    try:
        levels = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from exc
    if not levels or levels[0] < 1:
        raise argparse.ArgumentTypeError("levels must be positive integers")
    return levels


def _external(text: str) -> tuple[str, str]:
    name, sep, url = text.partition("=")
    if not sep or not name or not url.startswith("http://"):
        raise argparse.ArgumentTypeError(f"expected NAME=http://host:port/v1, got {text!r}")
    return name, url


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    p.add_argument("--quick", action="store_true", help="the short regression run (a few minutes)")
    p.add_argument(
        "--out",
        type=Path,
        help="where results.json, sweep.svg and sweep.html go "
        "(default: docs/benchmarks, or var/bench with --quick)",
    )
    p.add_argument(
        "--targets",
        default=",".join(BUILTIN_TARGETS),
        help="built-in targets to measure (direct is always measured: it is the floor); "
        "gateway-w2 and nginx-w2 run 2 worker processes on every CPU",
    )
    p.add_argument(
        "--target",
        action="append",
        type=_external,
        default=[],
        metavar="NAME=URL",
        help="another OpenAI-compatible gateway, by base URL (http://host:port/v1); it must route "
        "model 'mock/<profile>' to the mock (see --mock-port)",
    )
    p.add_argument("--format", choices=("chat", "messages"), default="chat", dest="fmt")
    p.add_argument("--sweep", type=_levels, help="concurrency levels, e.g. 50,100,200")
    p.add_argument("--step-seconds", type=float, help="duration of each sweep level")
    p.add_argument("--idle-streams", type=int, help="idle open streams for the memory figure")
    p.add_argument("--ttft-streams", type=int, help="streams in the time-to-first-token probe")
    p.add_argument("--gap-streams", type=int, help="paced streams in the gap probe at c=1")
    p.add_argument("--slow-seconds", type=float, help="duration of the slow reader (0: skip)")
    p.add_argument("--mock-port", type=int, help="fixed port for the mock (for --target)")
    p.add_argument(
        "--gateway-store",
        metavar="URL",
        help="the store of every gateway target, e.g. postgresql://… (default: SQLite in the "
        "work directory, a file per target)",
    )
    p.add_argument("--keep-workdir", action="store_true", help="keep configs and process logs")
    return p


def plan_from(args: argparse.Namespace) -> Plan:
    plan = Plan.quick_plan() if args.quick else Plan()
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n != "direct" and target_kind(n) is None]
    if unknown:
        raise TargetError(
            f"unknown target(s) {', '.join(unknown)}; built in: {', '.join(BUILTIN_TARGETS)}, "
            "and gateway-wN or nginx-wN for N workers (add others with --target NAME=URL)"
        )
    plan.targets = ["direct", *(n for n in names if n != "direct")]
    plan.external = dict(args.target)
    plan.fmt = args.fmt
    for field in ("sweep", "step_seconds", "idle_streams", "ttft_streams", "gap_streams"):
        value = getattr(args, field)
        if value is not None:
            setattr(plan, field, value)
    if args.slow_seconds is not None:
        plan.slow_seconds = args.slow_seconds
    plan.mock_port = args.mock_port
    plan.gateway_store = args.gateway_store
    return plan


def main(argv: list[str] | None = None, prog: str = "sluice bench") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["smoothness"]:
        from sluice.bench.smoothness import main as smoothness_main

        return smoothness_main(argv[1:], f"{prog} smoothness")
    args = build_parser(prog).parse_args(argv)
    command = " ".join([prog, shlex.join(argv)]).strip()
    try:
        plan = plan_from(args)
    except TargetError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    out: Path = args.out or Path("var/bench" if plan.quick else "docs/benchmarks")
    workdir = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    progress = ProgressBar()
    progress.note(f"{command}: work directory {workdir}")
    try:
        result = run_fast(Runner(plan, progress, workdir).run())
    except TargetError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        print(f"{prog}: logs kept in {workdir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print()
    print(table(result))
    paths = write_outputs(result, out, command)
    print()
    print(f"run took {result.seconds:.0f} s; wrote " + ", ".join(str(p) for p in paths))
    errors = [f"{t.name}: {e}" for t in result.targets for e in t.errors]
    floor = next(t for t in result.targets if t.name == "direct")
    probes = {"ttft probe": floor.ttft_probe, "gap probe": floor.gap_probe}
    broken = [name for name, m in probes.items() if m is None or not m.held]
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    if broken:
        print(
            f"{prog}: the direct target lost chunks or stalled in {', '.join(broken)}: "
            "the harness itself is not sound on this machine",
            file=sys.stderr,
        )
    if args.keep_workdir or errors or broken:
        print(f"logs in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if errors or broken else 0
