"""``python -m sluice.bench.choices``: the building blocks of the hot path, compared.

Three choices decide most of what one relayed chunk costs, and each is measured here with the
others held fixed:

- **ASGI server**: the same gateway app (``sluice.bench.alternatives:gateway_app``) under
  uvicorn (uvloop, httptools) and under granian (its Rust HTTP stack, uvloop);
- **upstream HTTP client**: the same gateway with its own client (httptools, the body pushed
  from the socket's read callback) or with aiohttp or httpx behind the transport contract;
- **JSON**: decoding provider frames and encoding records with orjson, msgspec and the
  standard library, in-process.

Each gateway variant runs as its own process pinned to one CPU, in front of the benchmark's
mock; clients (the benchmark's raw load generator) share the other CPU with the mock. The
figures are the gateway's CPU time per session and per relayed chunk, separated by running
streams of two lengths (1 and 128 deltas, one every 5 ms, 20 at a time): CPU per stream is
``per_session + deltas * per_chunk``. The best of three rounds counts, as the least disturbed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec
import orjson

from sluice.bench import proc
from sluice.bench.client import Endpoint, run_stream
from sluice.bench.targets import BENCH_KEY_ENV, HOST, ManagedProcess, MockProcess, gateway_config

#: (label, server, upstream client)
VARIANTS = [
    ("uvicorn + own client", "uvicorn", "sluice"),
    ("granian + own client", "granian", "sluice"),
    ("uvicorn + aiohttp", "uvicorn", "aiohttp"),
    ("uvicorn + httpx", "uvicorn", "httpx"),
]
LONG = 128
PACE_MS = 5
STREAMS = 100
CONCURRENCY = 20
ROUNDS = 3


class VariantProcess(ManagedProcess):
    """The gateway app under one ASGI server, with one upstream client."""

    name = "variant"

    def __init__(self, workdir: Path, cpus: set[int], mock_url: str, server: str, client: str):
        super().__init__(workdir, cpus)
        self.server, self.client = server, client
        self.name = f"{server}-{client}"
        self.log_path = workdir / f"{self.name}.log"
        self.config_path = workdir / f"{self.name}.toml"
        self.config_path.write_text(gateway_config(mock_url, "chat", self.port, workdir))

    def argv(self) -> list[str]:
        factory = "sluice.bench.alternatives:gateway_app"
        bindir = Path(sys.executable).parent
        if self.server == "granian":
            return [
                str(bindir / "granian"),
                "--interface", "asgi", "--loop", "uvloop", "--http", "1", "--workers", "1",
                "--no-ws", "--host", HOST, "--port", str(self.port), "--factory", factory,
            ]  # fmt: skip
        return [
            sys.executable, "-m", "uvicorn", "--factory", factory, "--host", HOST,
            "--port", str(self.port), "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--no-proxy-headers", "--log-level", "warning",
        ]  # fmt: skip

    def pids(self) -> list[int]:
        # granian serves from a worker process of its own: count the whole tree.
        own = super().pids()
        return own + [child for pid in own for child in proc.children(pid)]

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            BENCH_KEY_ENV: "bench",
            "SLUICE_BENCH_CONFIG": str(self.config_path),
            "SLUICE_BENCH_UPSTREAM": self.client,
        }


@dataclass
class VariantResult:
    label: str
    server: str
    client: str
    per_session_us: float
    per_chunk_us: float
    #: a 64-delta stream's CPU over its 68 frames, as in the benchmark's paced stream
    per_frame_us: float


async def _streams(endpoint: Endpoint, model: str) -> None:
    request = endpoint.request(model)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with gate:
            record = await run_stream(endpoint, request, 30)
            if record.error is not None:
                raise RuntimeError(f"stream failed: {record.error}")

    await asyncio.gather(*(one() for _ in range(STREAMS)))


async def _cpu_per_stream(process: ManagedProcess, endpoint: Endpoint, deltas: int) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        before = proc.total_cpu(process.pids())
        await _streams(endpoint, f"mock/{deltas}x{PACE_MS}")
        best = min(best, (proc.total_cpu(process.pids()) - before) / STREAMS)
    return best


async def measure_variant(
    workdir: Path, cpus: set[int], mock_url: str, label: str, server: str, client: str
) -> VariantResult:
    process = VariantProcess(workdir, cpus, mock_url, server, client)
    await process.start()
    try:
        endpoint = Endpoint.from_base_url(f"http://{HOST}:{process.port}/v1", "chat")
        await _streams(endpoint, "mock/4x0")  # warm-up
        short = await _cpu_per_stream(process, endpoint, 1)
        long = await _cpu_per_stream(process, endpoint, LONG)
    finally:
        process.stop()
    per_chunk = (long - short) / (LONG - 1)
    per_session = short - per_chunk
    return VariantResult(
        label,
        server,
        client,
        round(per_session * 1e6, 1),
        round(per_chunk * 1e6, 1),
        round((per_session + 64 * per_chunk) / 68 * 1e6, 1),
    )


# -- JSON ----------------------------------------------------------------------------------

#: A Chat Completions text delta and an Anthropic text delta, as providers send them.
CHAT_FRAME = (
    b'{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk",'
    b'"created":1741569952,"model":"gpt-4.1-2025-04-14","service_tier":"default",'
    b'"system_fingerprint":"fp_d8864f8b6b","choices":[{"index":0,"delta":{"content":" streaming"},'
    b'"logprobs":null,"finish_reason":null}]}'
)
MESSAGES_FRAME = (
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" streaming"}}'
)


def _ns_per_call(call: Callable[[Any], object], arg: object, n: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(n):
            call(arg)
        best = min(best, (time.perf_counter_ns() - start) / n)
    return round(best, 1)


def measure_json(n: int = 100_000) -> dict[str, dict[str, float]]:
    record = {
        "id": "op-0123456789ab",
        "state": "complete",
        "text": "word " * 200,
        "usage": {"input_tokens": 12, "output_tokens": 256},
        "telemetry": {"ttft_ms": 12.5, "tpot_ms": 20.1, "gap_p50_ms": 20.0, "gap_p99_ms": 21.3},
        "tool_calls": [],
        "cost": {"total": 0.0012, "currency": "USD", "source": "provider"},
    }
    decode_msgspec = msgspec.json.Decoder().decode
    encode_msgspec = msgspec.json.Encoder().encode
    return {
        "decode a Chat frame": {
            "orjson": _ns_per_call(orjson.loads, CHAT_FRAME, n),
            "msgspec": _ns_per_call(decode_msgspec, CHAT_FRAME, n),
            "json": _ns_per_call(json.loads, CHAT_FRAME, n),
        },
        "decode a Messages frame": {
            "orjson": _ns_per_call(orjson.loads, MESSAGES_FRAME, n),
            "msgspec": _ns_per_call(decode_msgspec, MESSAGES_FRAME, n),
            "json": _ns_per_call(json.loads, MESSAGES_FRAME, n),
        },
        "encode a session record": {
            "orjson": _ns_per_call(orjson.dumps, record, n // 10),
            "msgspec": _ns_per_call(encode_msgspec, record, n // 10),
            "json": _ns_per_call(lambda r: json.dumps(r).encode(), record, n // 10),
        },
    }


async def run() -> dict[str, Any]:
    gateway_cpus, harness_cpus = proc.cpu_layout()
    proc.pin_self(harness_cpus)
    workdir = Path(tempfile.mkdtemp(prefix="sluice-choices-"))
    mock = MockProcess(workdir, harness_cpus)
    await mock.start()
    variants = []
    try:
        for label, server, client in VARIANTS:
            print(f"  {label} ...", file=sys.stderr, flush=True)
            variants.append(
                await measure_variant(workdir, gateway_cpus, mock.url, label, server, client)
            )
    finally:
        mock.stop()
    print("  JSON ...", file=sys.stderr, flush=True)
    result: dict[str, Any] = {
        "variants": [asdict(v) for v in variants],
        "json_ns": measure_json(),
        "plan": {"long": LONG, "pace_ms": PACE_MS, "streams": STREAMS,
                 "concurrency": CONCURRENCY, "rounds": ROUNDS},
    }  # fmt: skip
    return result


def report(result: dict[str, Any]) -> str:
    lines = [f"{'gateway variant':<22}{'CPU/session':>14}{'CPU/chunk':>12}{'per frame*':>12}"]
    for v in result["variants"]:
        lines.append(
            f"{v['label']:<22}{v['per_session_us']:>11.0f} us{v['per_chunk_us']:>9.1f} us"
            f"{v['per_frame_us']:>9.1f} us"
        )
    lines += ["* a 64-delta stream's CPU over its 68 frames", ""]
    lines.append(f"{'JSON (ns per call)':<26}{'orjson':>10}{'msgspec':>10}{'json':>10}")
    for what, figures in result["json_ns"].items():
        row = "".join(f"{figures[k]:>10.0f}" for k in ("orjson", "msgspec", "json"))
        lines.append(f"{what:<26}{row}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sluice.bench.choices", description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    result = proc.run_fast(run())
    print(report(result))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
