"""When each event of one stream reaches the client: a raw streaming client (aiohttp, bytes as
they arrive, decoded with Sluice's SSE decoder) that stamps every event and heartbeat."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from sluice.sse import SSEDecoder

#: A paced answer: 15 tokens, one every 200 ms, the first after 50 ms. However slow the machine,
#: the last token cannot be generated less than 2.8 s after the first.
PACED = {
    "x-sim-token-rate": "5",
    "x-sim-output-tokens": "15",
    "x-sim-jitter": "0",
    "x-sim-ttft": "0.05",
}
#: first to last token, at the least
PACED_SPAN = 14 / 5

CHAT = {
    "model": "sim/support",
    "messages": [{"role": "user", "content": "How do I reset my password?"}],
    "stream": True,
}


@dataclass
class StreamTiming:
    """One stream as the client saw it; times in seconds since the request was sent."""

    status: int = 0
    content_encoding: str = ""
    headers_at: float | None = None
    #: arrival of each content-bearing event
    arrivals: list[float] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    heartbeats: list[float] = field(default_factory=list)
    #: the ``[DONE]`` terminator arrived
    complete: bool = False
    error: str = ""
    #: who answered (the ``server`` header), how many body bytes came, and the first of them:
    #: what a failed assertion needs to tell the proxy's answer from the gateway's
    server: str = ""
    body_bytes: int = 0
    body_head: bytes = b""

    @property
    def first(self) -> float:
        return self.arrivals[0]

    @property
    def last(self) -> float:
        return self.arrivals[-1]

    @property
    def spread(self) -> float:
        """First to last content event."""
        return self.last - self.first

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def figures(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "first_event_ms": round(self.first * 1000) if self.arrivals else None,
            "spread_ms": round(self.spread * 1000) if self.arrivals else None,
            "events": len(self.arrivals),
            "heartbeats": len(self.heartbeats),
            "complete": self.complete,
            "content_encoding": self.content_encoding,
            "error": self.error,
            "server": self.server,
            "body_bytes": self.body_bytes,
            "body_head": self.body_head[:300].decode("utf-8", "replace"),
        }


async def chat_stream(
    base_url: str,
    *,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
    within: float = 60.0,
    ssl: bool = True,
) -> StreamTiming:
    """POST a streaming chat completion to ``base_url`` and stamp what arrives.

    Compressed responses are decompressed as they arrive (the client asks for gzip, as
    browsers do). A cut connection is recorded in ``error``, not raised; a hang past ``within``
    seconds raises ``TimeoutError``.
    """
    import orjson

    timing = StreamTiming()
    decoder = SSEDecoder()
    tail = b""
    started = time.monotonic()
    async with (
        asyncio.timeout(within),
        aiohttp.ClientSession() as http,
        http.post(
            f"{base_url}/v1/chat/completions",
            json=body or CHAT,
            headers={"accept-encoding": "gzip, deflate", **(headers or {})},
            ssl=ssl,
        ) as response,
    ):
        timing.status = response.status
        timing.headers_at = time.monotonic() - started
        timing.content_encoding = response.headers.get("content-encoding", "")
        timing.server = response.headers.get("server", "")
        try:
            async for chunk in response.content.iter_any():
                now = time.monotonic() - started
                if len(timing.body_head) < 300:
                    timing.body_head += chunk[: 300 - len(timing.body_head)]
                timing.body_bytes += len(chunk)
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                timing.heartbeats.extend(now for line in lines if line.startswith(b":"))
                for event in decoder.decode(chunk):
                    if event.data == "[DONE]":
                        timing.complete = True
                        continue
                    data = orjson.loads(event.data)
                    if "error" in data:
                        timing.error = f"error event: {data['error']}"
                    choices = data.get("choices") or [{}]
                    content = choices[0].get("delta", {}).get("content")
                    if content:
                        timing.arrivals.append(now)
                        timing.texts.append(content)
        except aiohttp.ClientError as exc:
            timing.error = f"{type(exc).__name__}: {exc}"
    return timing


@dataclass
class Tick:
    """One event of the diagnostic stream: when the gateway stamped it and when it arrived,
    both on the wall clock (the gateway runs in the test's process: one clock)."""

    kind: str
    seq: int
    sent_at: float
    arrived_at: float


async def diagnostic_ticks(
    base_url: str, *, within: float = 60.0, **params: float | int
) -> tuple[list[Tick], str]:
    """Read ``/api/diagnostics/stream`` with ``params``; (events, content-encoding)."""
    import orjson

    ticks: list[Tick] = []
    decoder = SSEDecoder()
    async with (
        asyncio.timeout(within),
        aiohttp.ClientSession() as http,
        http.get(
            f"{base_url}/api/diagnostics/stream",
            params={k: str(v) for k, v in params.items()},
            headers={"accept-encoding": "gzip, deflate"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
        async for chunk in response.content.iter_any():
            now = time.time()
            for event in decoder.decode(chunk):
                data = orjson.loads(event.data)
                ticks.append(Tick(event.event, data["seq"], data["sent_at"], now))
        encoding = response.headers.get("content-encoding", "")
    return ticks, encoding


def held_until_next(ticks: list[Tick]) -> list[int]:
    """The ``tick`` events that reached the client only once the next one had been sent."""
    only = [t for t in ticks if t.kind == "tick"]
    return [a.seq for a, b in itertools.pairwise(only) if a.arrived_at >= b.sent_at]
