"""``sluice bench smoothness``: how smooth each provider's streams are, side by side.

Reads the sessions a store has recorded (``--store``, a gateway's own), groups them by
provider and model, and compares their smoothness figures (``sluice.session.smoothness``):
a table, ``smoothness.json`` and a chart, ``smoothness.svg``. Without ``--store`` it records
a sample first: a gateway with its simulator on a temporary store streams
``--sessions`` answers for each of the simulator's wire formats in its steady (``support``)
and ``bursty`` scenarios, at a provider's pace, and those are compared.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sluice.stats import percentiles

#: the sample's providers (the simulator in each wire format) and scenarios
SAMPLE_PROVIDERS = {"sim-chat": "chat", "sim-messages": "messages", "sim-responses": "responses"}
SAMPLE_SCENARIOS = ("support", "bursty")
#: a provider's pace for the sample: tokens per second, and the simulator's jitter
SAMPLE_PACE = {"token_rate": 80.0, "ttft": 0.05, "jitter": 0.3, "output_tokens": 80}


@dataclass
class Group:
    """The recorded sessions of one provider and model."""

    provider: str
    model: str
    smoothness: list[float] = field(default_factory=list)
    gap_ratio: list[float] = field(default_factory=list)
    burst_share: list[float] = field(default_factory=list)
    stalls: int = 0

    def add(self, telemetry: dict[str, Any]) -> None:
        if telemetry.get("smoothness") is None:
            return
        self.smoothness.append(float(telemetry["smoothness"]))
        if telemetry.get("gap_ratio") is not None:
            self.gap_ratio.append(float(telemetry["gap_ratio"]))
        self.burst_share.append(float(telemetry.get("burst_share") or 0.0))
        self.stalls += int(telemetry.get("stalls") or 0)

    def summary(self) -> dict[str, Any]:
        p10, p50, p90 = percentiles(self.smoothness, 10, 50, 90)
        (ratio,) = percentiles(self.gap_ratio, 50)
        (burst,) = percentiles(self.burst_share, 50)
        n = len(self.smoothness)
        return {
            "provider": self.provider,
            "model": self.model,
            "sessions": n,
            "smoothness_p10": p10,
            "smoothness_p50": p50,
            "smoothness_p90": p90,
            "gap_ratio_p50": ratio,
            "burst_share_p50": burst,
            "stalls_per_session": round(self.stalls / n, 3) if n else None,
        }


def compare(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each provider and model's figures over its recorded ``records``, smoothest first."""
    groups: dict[tuple[str, str], Group] = {}
    for record in records:
        key = (str(record.get("provider", "")), str(record.get("model", "")))
        group = groups.setdefault(key, Group(*key))
        group.add(record.get("telemetry") or {})
    rows = [g.summary() for g in groups.values() if g.smoothness]
    rows.sort(key=lambda r: (-(r["smoothness_p50"] or 0), r["provider"], r["model"]))
    return rows


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'provider':<16} {'model':<16} {'sessions':>8} {'smooth p50':>10} {'p10-p90':>11} "
        f"{'gap p99/p50':>11} {'burst':>6} {'stalls':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        spread = f"{_num(r['smoothness_p10'])}-{_num(r['smoothness_p90'])}"
        lines.append(
            f"{r['provider'][:16]:<16} {r['model'][:16]:<16} {r['sessions']:>8} "
            f"{_num(r['smoothness_p50']):>10} {spread:>11} {_num(r['gap_ratio_p50']):>11} "
            f"{_num(r['burst_share_p50']):>6} {_num(r['stalls_per_session']):>7}"
        )
    return "\n".join(lines)


def chart(rows: list[dict[str, Any]]) -> str:
    """One bar per provider and model: its median smoothness, its p10 to p90 as a whisker."""
    left, width, bar, gap, top = 260, 420, 18, 10, 40
    height = top + len(rows) * (bar + gap) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 40}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<text x="{left}" y="20" font-weight="bold">stream smoothness, 1/(1+cv) of the gaps '
        "between tokens (1: an even pace)</text>",
    ]
    for tick in range(0, 11, 2):
        x = left + width * tick / 10
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 5}" x2="{x:.1f}" y2="{height - 30}" stroke="#ddd"/>'
            f'<text x="{x:.1f}" y="{height - 15}" text-anchor="middle">{tick / 10:.1f}</text>'
        )
    for i, r in enumerate(rows):
        y = top + i * (bar + gap)
        label = html.escape(f"{r['provider']} / {r['model']} ({r['sessions']})")
        p50 = r["smoothness_p50"] or 0.0
        p10, p90 = r["smoothness_p10"] or p50, r["smoothness_p90"] or p50
        mid = y + bar / 2
        parts.append(
            f'<text x="{left - 8}" y="{mid + 4:.1f}" text-anchor="end">{label}</text>'
            f'<rect x="{left}" y="{y}" width="{width * p50:.1f}" height="{bar}" fill="#4a7ebb"/>'
            f'<line x1="{left + width * p10:.1f}" y1="{mid:.1f}" x2="{left + width * p90:.1f}" '
            f'y2="{mid:.1f}" stroke="#222" stroke-width="2"/>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


async def record_sample(workdir: Path, sessions: int) -> str:
    """Stream the sample through a gateway with its simulator; returns its store's URL."""
    import httpx

    from sluice.config import ProviderConfig, load_settings
    from sluice.gateway.app import create_app
    from sluice.gateway.server import RunningServer

    store_url = f"sqlite:///{workdir}/smoothness.db"
    settings = load_settings(None, store_url=store_url)
    settings.sim = dict(SAMPLE_PACE)
    for name, wire in SAMPLE_PROVIDERS.items():
        settings.providers[name] = ProviderConfig(name, "sim", wire=wire)
    app = create_app(settings)
    async with (
        RunningServer(app) as server,
        httpx.AsyncClient(base_url=server.url, timeout=60) as http,
    ):
        jobs = [
            http.post(
                "/v1/chat/completions",
                json={
                    "model": f"{provider}/{scenario}",
                    "messages": [{"role": "user", "content": "How do refunds work?"}],
                    "stream": False,
                },
            )
            for provider in SAMPLE_PROVIDERS
            for scenario in SAMPLE_SCENARIOS
            for _ in range(sessions)
        ]
        for response in await asyncio.gather(*jobs):
            response.raise_for_status()
    return store_url


async def recorded(store_url: str, limit: int) -> list[dict[str, Any]]:
    from sluice.session.store import open_store

    store = open_store(store_url)
    await store.open()
    try:
        return await store.query(limit=limit, state="complete")
    finally:
        await store.close()


def main(argv: list[str], prog: str = "sluice bench smoothness") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--store", help="the store whose recorded sessions to compare")
    parser.add_argument("--limit", type=int, default=5000, help="newest sessions to read")
    parser.add_argument("--sessions", type=int, default=8, help="sample sessions per kind")
    parser.add_argument("--out", type=Path, default=Path("var/bench"), help="output directory")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sluice-smoothness-") as tmp:
        store_url = args.store or asyncio.run(record_sample(Path(tmp), args.sessions))
        rows = compare(asyncio.run(recorded(store_url, args.limit)))
    if not rows:
        print(f"{prog}: no complete session with timing in the store", file=sys.stderr)
        return 1
    print(table(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "smoothness.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "smoothness.svg").write_text(chart(rows) + "\n")
    print(f"\nwrote {args.out / 'smoothness.json'}, {args.out / 'smoothness.svg'}")
    return 0
