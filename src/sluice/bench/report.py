"""What a run shows: a progress bar while it runs, then the figures as a terminal table, a JSON
file and an SVG chart of the sweep (also wrapped in an HTML page). No dependency: the chart is
hand-written SVG.

The figures, per target, are read against ``direct`` (the mock with nothing in between):

- added time to first token, p50 and p99 (target minus direct, at concurrency 1);
- added inter-chunk gap, p50 and p99 (at concurrency 1): the percentiles of each gap minus
  the gap the mock put between the same two deltas, target minus direct;
- added time in flight per delta, p50 and p99 (arrival minus send, target minus direct);
- CPU per relayed chunk: the target's process CPU time over the SSE frames its clients got,
  at concurrency 1 and at the highest sustained sweep level;
- resident memory per idle open stream, above the idle process, and in all with N open;
- sustained streams: the highest sweep level at which the stall rule held, and every level
  below it too.
"""

from __future__ import annotations

import html
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from sluice.bench.runner import Measurement, Progress, RunResult, TargetResult
from sluice.bench.stats import Distribution
from sluice.bench.targets import target_kind


class ProgressBar(Progress):
    """A one-line bar redrawn with ``\\r`` on a terminal; plain lines otherwise."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._label = ""
        self._seconds = 1.0
        self._t0 = 0.0
        self._last = 0.0

    def start(self, label: str, seconds: float) -> None:
        self._label, self._seconds, self._t0 = label, max(seconds, 0.1), time.monotonic()
        if not self.tty:
            self.stream.write(f"  {label} ...\n")
            self.stream.flush()

    def update(self, detail: str) -> None:
        if not self.tty:
            return
        elapsed = time.monotonic() - self._t0
        done = min(elapsed / self._seconds, 1.0)
        width = 24
        filled = int(done * width)
        bar = "#" * filled + "." * (width - filled)
        line = f"\r  {self._label:<32} [{bar}] {done:4.0%} {elapsed:5.1f}s  {detail}"
        columns = shutil.get_terminal_size((120, 20)).columns
        self.stream.write(line[: columns - 1].ljust(columns - 1))
        self.stream.flush()

    def finish(self, line: str) -> None:
        self._clear()
        self.stream.write(f"  {line}\n")
        self.stream.flush()

    def note(self, line: str) -> None:
        self._clear()
        self.stream.write(f"- {line}\n")
        self.stream.flush()

    def _clear(self) -> None:
        if self.tty:
            columns = shutil.get_terminal_size((120, 20)).columns
            self.stream.write("\r" + " " * (columns - 1) + "\r")


# ---------------------------------------------------------------------------------------------
# The figures


@dataclass
class Figures:
    """One target's headline figures (times in the unit of each name; ``None`` = not measured)."""

    target: str
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    added_ttft_p50_us: float | None = None
    added_ttft_p99_us: float | None = None
    gap_p50_ms: float | None = None
    gap_p99_ms: float | None = None
    added_gap_p50_us: float | None = None
    added_gap_p99_us: float | None = None
    added_in_flight_p50_us: float | None = None
    added_in_flight_p99_us: float | None = None
    cpu_us_per_chunk_c1: float | None = None
    cpu_us_per_chunk_load: float | None = None
    cpu_load_level: int | None = None
    sustained_streams: int | None = None
    #: SSE frames the clients received per second at the highest sustained level
    relayed_chunks_per_s: float | None = None
    kb_per_idle_stream: float | None = None
    idle_streams: int | None = None
    rss_idle_mb: float | None = None
    rss_with_idle_streams_mb: float | None = None
    slow_reader_rss_growth_mb: float | None = None
    slow_reader_mock_sent_mb: float | None = None
    slow_reader_read_kb: float | None = None


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def figures(result: RunResult) -> list[Figures]:
    by_name = {t.name: t for t in result.targets}
    floor = by_name.get("direct")
    return [_figures(t, floor) for t in result.targets]


def _figures(t: TargetResult, floor: TargetResult | None) -> Figures:
    f = Figures(t.name)
    none = Distribution(0, None, None, None)
    floor_ttft = floor.ttft_probe.summary.ttft if floor and floor.ttft_probe else none
    floor_gap = floor.gap_probe.summary if floor and floor.gap_probe else None
    if t.ttft_probe is not None:
        ttft = t.ttft_probe.summary.ttft
        f.ttft_p50_ms, f.ttft_p99_ms = _scaled(ttft.p50, 1e3), _scaled(ttft.p99, 1e3)
        added = ttft.minus(floor_ttft)
        f.added_ttft_p50_us, f.added_ttft_p99_us = _scaled(added.p50, 1e6), _scaled(added.p99, 1e6)
    if t.gap_probe is not None:
        s = t.gap_probe.summary
        f.gap_p50_ms, f.gap_p99_ms = _scaled(s.gap.p50, 1e3), _scaled(s.gap.p99, 1e3)
        if floor_gap is not None:
            jitter = s.jitter.minus(floor_gap.jitter)
            flight = s.in_flight.minus(floor_gap.in_flight)
            f.added_gap_p50_us = _scaled(jitter.p50, 1e6)
            f.added_gap_p99_us = _scaled(jitter.p99, 1e6)
            f.added_in_flight_p50_us = _scaled(flight.p50, 1e6)
            f.added_in_flight_p99_us = _scaled(flight.p99, 1e6)
        f.cpu_us_per_chunk_c1 = t.gap_probe.cpu_us_per_chunk
    load = t.load_step
    if load is not None:
        f.cpu_us_per_chunk_load = load.cpu_us_per_chunk
        f.cpu_load_level = load.concurrency
    if t.sweep:
        f.sustained_streams = t.sustained
        if load is not None and load.held and load.wall_s > 0:
            f.relayed_chunks_per_s = load.summary.data_frames / load.wall_s
    if t.memory is not None:
        f.kb_per_idle_stream = t.memory.kb_per_stream
        f.idle_streams = t.memory.streams_open
        f.rss_idle_mb = t.memory.rss_idle / 2**20
        f.rss_with_idle_streams_mb = t.memory.rss_open / 2**20
    if t.slow_reader is not None:
        sr = t.slow_reader
        f.slow_reader_rss_growth_mb = _scaled(sr.rss_growth, 1 / 2**20)
        f.slow_reader_mock_sent_mb = _scaled(sr.mock_bytes_sent, 1 / 2**20)
        f.slow_reader_read_kb = sr.bytes_read / 1024
    return f


@dataclass
class Goal:
    name: str
    value: float | None
    limit: float
    unit: str
    at_least: bool = False
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.limit if self.at_least else self.value <= self.limit


def goals(f: Figures, idle_streams_planned: int) -> list[Goal]:
    """The issue's goals, read off the gateway's figures."""
    rss_10k: float | None = f.rss_with_idle_streams_mb
    note = ""
    if idle_streams_planned != 10_000 and f.rss_idle_mb is not None and f.kb_per_idle_stream:
        rss_10k = f.rss_idle_mb + f.kb_per_idle_stream * 10_000 / 1024
        note = f"extrapolated from {f.idle_streams:,} streams"
    return [
        Goal("added TTFT p99, c=1", f.added_ttft_p99_us, 1000, "us"),
        Goal("added inter-chunk gap p99, c=1", f.added_gap_p99_us, 50, "us"),
        Goal(
            "CPU per relayed chunk",
            f.cpu_us_per_chunk_load,
            20,
            "us",
            note=f"at c={f.cpu_load_level}" if f.cpu_load_level else "",
        ),
        Goal("sustained streams at 50 chunks/s", f.sustained_streams, 500, "", at_least=True),
        Goal("  stretch", f.sustained_streams, 1000, "", at_least=True),
        Goal("memory per open stream above idle", f.kb_per_idle_stream, 20, "KB"),
        Goal("RSS with 10,000 idle streams", rss_10k, 300, "MB", note=note),
    ]


# ---------------------------------------------------------------------------------------------
# The terminal table


def _num(value: float | None, digits: int = 1, width: int = 8) -> str:
    if value is None:
        return "-".rjust(width)
    if abs(value) >= 10_000:
        return f"{value:,.0f}".rjust(width)
    return f"{value:,.{digits}f}".rjust(width)


def table(result: RunResult) -> str:
    rows = figures(result)
    lines: list[str] = []
    header = (
        f"{'target':<10} {'TTFT p50':>8} {'p99':>8} {'+TTFT p50':>9} {'p99':>8} "
        f"{'+gap p50':>8} {'p99':>8} {'+flight p50':>11} {'p99':>8} "
        f"{'CPU c=1':>8} {'CPU load':>8} {'sustain':>7} {'KB/strm':>8} {'RSS N':>8}"
    )
    units = (
        f"{'':<10} {'ms':>8} {'ms':>8} {'us':>9} {'us':>8} {'us':>8} {'us':>8} {'us':>11} "
        f"{'us':>8} {'us/chnk':>8} {'us/chnk':>8} {'streams':>7} {'':>8} {'MB':>8}"
    )
    lines += [header, units, "-" * len(header)]
    for f in rows:
        lines.append(
            f"{f.target:<10} {_num(f.ttft_p50_ms, 2)} {_num(f.ttft_p99_ms, 2)} "
            f"{_num(f.added_ttft_p50_us, 0, 9)} {_num(f.added_ttft_p99_us, 0)} "
            f"{_num(f.added_gap_p50_us, 0)} {_num(f.added_gap_p99_us, 0)} "
            f"{_num(f.added_in_flight_p50_us, 0, 11)} {_num(f.added_in_flight_p99_us, 0)} "
            f"{_num(f.cpu_us_per_chunk_c1)} {_num(f.cpu_us_per_chunk_load)} "
            f"{_num(f.sustained_streams, 0, 7)} {_num(f.kb_per_idle_stream)} "
            f"{_num(f.rss_with_idle_streams_mb)}"
        )
    lines.append("")
    lines.append(sweep_table(result))
    if any(target_kind(f.target) not in (None, (f.target, 1)) for f in rows):
        lines.append("")
        lines.append(workers_table(result))
    gateway = next((f for f in rows if f.target == "gateway"), None)
    if gateway is not None:
        lines.append("")
        lines.append("gateway goals")
        for g in goals(gateway, result.plan.idle_streams):
            verdict = {True: "met", False: "NOT met", None: "not measured"}[g.met]
            op = ">=" if g.at_least else "<="
            value = "-" if g.value is None else f"{g.value:,.1f} {g.unit}".strip()
            note = f"  ({g.note})" if g.note else ""
            lines.append(
                f"  {g.name:<36} {value:>14}  goal {op} {g.limit:,.0f} {g.unit:<3} {verdict}{note}"
            )
    return "\n".join(lines)


def workers_table(result: RunResult) -> str:
    """One worker against several: the relayed chunks per second at the highest level each
    sustained, and the worst gap there; the ratio is to the same proxy with one worker."""
    rows = figures(result)
    by_name = {f.target: f for f in rows}
    held = {t.name: t.load_step for t in result.targets}
    lines = [
        f"{'workers':<12} {'sustain':>7} {'chunks/s':>9} {'gap max':>8} {'lost':>5} {'x one':>6}",
        f"{'':<12} {'streams':>7} {'':>9} {'ms':>8} {'':>5} {'':>6}",
    ]
    for f in rows:
        kind = target_kind(f.target)
        if kind is None:
            continue
        one = by_name.get(kind[0])
        ratio = (
            f.relayed_chunks_per_s / one.relayed_chunks_per_s
            if one and one.relayed_chunks_per_s and f.relayed_chunks_per_s
            else None
        )
        step = held.get(f.target)
        gap = _scaled(step.summary.gap.max, 1e3) if step is not None else None
        lost = step.summary.lost if step is not None else None
        lines.append(
            f"{f.target:<12} {_num(f.sustained_streams, 0, 7)} "
            f"{_num(f.relayed_chunks_per_s, 0, 9)} {_num(gap)} "
            f"{'-' if lost is None else lost:>5} {_num(ratio, 2, 6)}"
        )
    return "\n".join(lines)


def sweep_table(result: RunResult) -> str:
    lines = [
        f"{'sweep':<10} {'c':>6} {'streams':>8} {'lost':>6} {'gap p99':>8} {'gap max':>8} "
        f"{'TTFT p99':>9} {'CPU':>8} {'busy':>6} {'harness':>8}  held",
        f"{'':<10} {'':>6} {'':>8} {'':>6} {'ms':>8} {'ms':>8} {'ms':>9} {'us/chnk':>8} "
        f"{'':>6} {'busy':>8}",
    ]
    for t in result.targets:
        for m in t.sweep:
            s = m.summary
            busy = m.target_busy
            lines.append(
                f"{t.name:<10} {m.concurrency:>6} {s.streams:>8,} {s.lost:>6,} "
                f"{_num(_scaled(s.gap.p99, 1e3))} {_num(_scaled(s.gap.max, 1e3))} "
                f"{_num(_scaled(s.ttft.p99, 1e3), 1, 9)} {_num(m.cpu_us_per_chunk)} "
                f"{'-' if busy is None else f'{busy:.0%}':>6} {m.harness_busy:>8.0%}  "
                + ("yes" if m.held else "no")
                + (" (harness-bound)" if m.harness_bound else "")
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# JSON


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _measurement(m: Measurement | None) -> dict[str, Any] | None:
    if m is None:
        return None
    data = asdict(m)
    data["cpu_us_per_chunk"] = m.cpu_us_per_chunk
    data["target_busy"] = m.target_busy
    return data


def to_json(result: RunResult, command: str) -> dict[str, Any]:
    rows = figures(result)
    gateway = next((f for f in rows if f.target == "gateway"), None)
    return {
        "command": command,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(result.started_at)),
        "seconds": round(result.seconds, 1),
        "machine": machine(),
        "target_cpus": result.target_cpus,
        "harness_cpus": result.harness_cpus,
        "open_files_limit": result.open_files_limit,
        "plan": asdict(result.plan),
        "figures": [asdict(f) for f in rows],
        "goals": (
            [{**asdict(g), "met": g.met} for g in goals(gateway, result.plan.idle_streams)]
            if gateway
            else []
        ),
        "targets": [
            {
                "name": t.name,
                "kind": t.kind,
                "base_url": t.base_url,
                "sustained": t.sustained if t.sweep else None,
                "ttft_probe": _measurement(t.ttft_probe),
                "gap_probe": _measurement(t.gap_probe),
                "sweep": [_measurement(m) for m in t.sweep],
                "memory": None
                if t.memory is None
                else {**asdict(t.memory), "kb_per_stream": t.memory.kb_per_stream},
                "slow_reader": None
                if t.slow_reader is None
                else {**asdict(t.slow_reader), "rss_growth": t.slow_reader.rss_growth},
                "errors": t.errors,
            }
            for t in result.targets
        ],
    }


def write_outputs(result: RunResult, out: Path, command: str, prefix: str = "") -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    data = to_json(result, command)
    paths = [out / f"{prefix}results.json", out / f"{prefix}sweep.svg", out / f"{prefix}sweep.html"]
    paths[0].write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    svg = sweep_svg(result)
    paths[1].write_text(svg)
    paths[2].write_text(sweep_html(result, svg, command))
    return paths


# ---------------------------------------------------------------------------------------------
# The chart

COLORS = {
    "direct": "#6b7280",
    "gateway": "#2563eb",
    "nginx": "#16a34a",
    "gateway-w2": "#7c3aed",
    "nginx-w2": "#65a30d",
}
_EXTRA_COLORS = ["#d97706", "#9333ea", "#db2777", "#0891b2"]


def _color(name: str, index: int) -> str:
    return COLORS.get(name, _EXTRA_COLORS[index % len(_EXTRA_COLORS)])


Series = list[tuple[str, str, list[tuple[int, float | None, bool]]]]


def _panel(
    x: float,
    y: float,
    w: float,
    h: float,
    title: str,
    levels: list[int],
    series: Series,
    *,
    log: bool = False,
    limit: tuple[float, str] | None = None,
) -> list[str]:
    """One small chart: levels on x (evenly spaced), one line per target; a failed level is
    drawn as a hollow point; ``limit`` is a dashed horizontal line with its label."""
    import math

    left, bottom, top, right = 52.0, 34.0, 26.0, 12.0
    pw, ph = w - left - right, h - top - bottom
    values = [v for _, _, pts in series for _, v, _ in pts if v is not None and v > 0]
    if limit is not None:
        values.append(limit[0])
    if not values:
        values = [1.0]
    if log:
        lo = 10 ** math.floor(math.log10(min(values)))
        hi = 10 ** math.ceil(math.log10(max(values)))
        if hi <= lo:
            hi = lo * 10

        def ypos(v: float) -> float:
            v = max(v, lo)
            return (
                y
                + top
                + ph
                - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * ph
            )

        ticks = [lo * 10**i for i in range(round(math.log10(hi / lo)) + 1)]
    else:
        lo, hi = 0.0, _nice(max(values) * 1.1)

        def ypos(v: float) -> float:
            return y + top + ph - (v - lo) / (hi - lo) * ph

        ticks = [hi * i / 4 for i in range(5)]

    def xpos(level: int) -> float:
        if len(levels) == 1:
            return x + left + pw / 2
        return x + left + levels.index(level) / (len(levels) - 1) * pw

    out = [
        f'<text x="{x + left}" y="{y + 16}" class="title">{html.escape(title)}</text>',
        f'<rect x="{x + left}" y="{y + top}" width="{pw}" height="{ph}" class="frame"/>',
    ]
    for tick in ticks:
        ty = ypos(tick)
        label = f"{tick:g}" if tick < 10_000 else f"{tick:.0e}"
        out.append(
            f'<line x1="{x + left}" x2="{x + left + pw}" y1="{ty:.1f}" y2="{ty:.1f}" class="grid"/>'
        )
        out.append(f'<text x="{x + left - 6}" y="{ty + 4:.1f}" class="ytick">{label}</text>')
    for level in levels:
        out.append(
            f'<text x="{xpos(level):.1f}" y="{y + top + ph + 16}" class="xtick">{level}</text>'
        )
    out.append(
        f'<text x="{x + left + pw / 2}" y="{y + h - 2}" class="xlabel">concurrent streams</text>'
    )
    if limit is not None:
        ly = ypos(limit[0])
        out.append(
            f'<line x1="{x + left}" x2="{x + left + pw}" y1="{ly:.1f}" y2="{ly:.1f}" '
            'class="limit"/>'
        )
        out.append(
            f'<text x="{x + left + pw - 4}" y="{ly - 4:.1f}" class="limitlabel">'
            f"{html.escape(limit[1])}</text>"
        )
    for _, color, pts in series:
        drawn = [(xpos(lv), ypos(v), held) for lv, v, held in pts if v is not None and v > 0]
        if len(drawn) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in drawn)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for px, py, held in drawn:
            fill = color if held else "white"
            out.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{fill}" '
                f'stroke="{color}" stroke-width="1.5"/>'
            )
    return out


def _nice(value: float) -> float:
    import math

    if value <= 0:
        return 1.0
    exponent = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exponent:
            return step * exponent
    return 10 * exponent


def sweep_svg(result: RunResult) -> str:
    levels = sorted({m.concurrency for t in result.targets for m in t.sweep}) or [0]

    def series(pick: Any) -> Series:
        return [
            (t.name, _color(t.name, i), [(m.concurrency, pick(m), m.held) for m in t.sweep])
            for i, t in enumerate(result.targets)
        ]

    w, h = 460.0, 250.0
    parts: list[str] = []
    parts += _panel(
        0, 30, w, h, "inter-chunk gap, max (ms)", levels,
        series(lambda m: _scaled(m.summary.gap.max, 1e3)),
        log=True, limit=(40.0, "stall limit 40 ms"),
    )  # fmt: skip
    parts += _panel(
        w, 30, w, h, "inter-chunk gap, p99 (ms)", levels,
        series(lambda m: _scaled(m.summary.gap.p99, 1e3)),
        limit=(40.0, "40 ms"),
    )  # fmt: skip
    parts += _panel(
        0, 30 + h, w, h, "time to first token, p99 (ms)", levels,
        series(lambda m: _scaled(m.summary.ttft.p99, 1e3)), log=True,
    )  # fmt: skip
    parts += _panel(
        w, 30 + h, w, h, "target CPU per relayed chunk (µs)", levels,
        series(lambda m: m.cpu_us_per_chunk), limit=(20.0, "goal 20 µs"),
    )  # fmt: skip
    legend: list[str] = []
    for i, t in enumerate(result.targets):
        lx = 52 + i * 130
        legend.append(
            f'<rect x="{lx}" y="{2 * h + 44}" width="12" height="12" fill="{_color(t.name, i)}"/>'
        )
        sustained = f" (sustained {t.sustained})" if t.sweep else ""
        legend.append(
            f'<text x="{lx + 16}" y="{2 * h + 54}" class="legend">'
            f"{html.escape(t.name + sustained)}</text>"
        )
    legend.append(
        f'<text x="{52 + len(result.targets) * 130}" y="{2 * h + 54}" class="legend">'
        "hollow point: level not sustained</text>"
    )
    title = f"Sluice bench: concurrency sweep, {result.plan.fmt} streams of 64 deltas every 20 ms"
    style = (
        "text{font-family:system-ui,sans-serif;font-size:11px;fill:#111}"
        ".title{font-weight:600;font-size:12px}.heading{font-weight:700;font-size:14px}"
        ".frame{fill:none;stroke:#9ca3af}.grid{stroke:#e5e7eb}"
        ".ytick{text-anchor:end;fill:#4b5563}.xtick{text-anchor:middle;fill:#4b5563}"
        ".xlabel{text-anchor:middle;fill:#4b5563}"
        ".limit{stroke:#dc2626;stroke-dasharray:5 4}.limitlabel{text-anchor:end;fill:#dc2626}"
    )
    total_h = 2 * h + 70
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w:.0f}" height="{total_h:.0f}" '
            f'viewBox="0 0 {2 * w:.0f} {total_h:.0f}">',
            f"<style>{style}</style>",
            f'<rect width="{2 * w:.0f}" height="{total_h:.0f}" fill="white"/>',
            f'<text x="52" y="20" class="heading">{html.escape(title)}</text>',
            *parts,
            *legend,
            "</svg>",
        ]
    )


def sweep_html(result: RunResult, svg: str, command: str) -> str:
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>Sluice bench</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2em}pre{font-size:12px}</style>"
        "</head><body>\n"
        f"<h1>Sluice bench</h1>\n<p><code>{html.escape(command)}</code></p>\n{svg}\n"
        f"<pre>{html.escape(table(result))}</pre>\n</body></html>\n"
    )
