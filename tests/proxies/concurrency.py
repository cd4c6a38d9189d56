"""Many streams from one page: a page in Chromium opens N EventSource streams to the gateway's
diagnostic endpoint through a TLS proxy and records when each one's first event arrived and
when it ended, and which protocol the page itself was fetched over."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.async_api import BrowserContext

PAGE = "<!doctype html><meta charset=utf-8><title>streams</title><p>streams</p>\n"

OPEN_STREAMS = """
async ([count, query]) => {
  const t0 = performance.now();
  const one = (i) => new Promise((resolve, reject) => {
    const source = new EventSource(`/api/diagnostics/stream?${query}&pad=${i}`);
    const seen = {stream: i, first: null, end: null};
    source.addEventListener("hello", () => { seen.first = performance.now() - t0; });
    source.addEventListener("done", () => {
      seen.end = performance.now() - t0;
      source.close();
      resolve(seen);
    });
    source.onerror = () => { source.close(); reject(new Error(`stream ${i} failed`)); };
  });
  const streams = await Promise.all(Array.from({length: count}, (_, i) => one(i)));
  const protocol = performance.getEntriesByType("navigation")[0].nextHopProtocol;
  return {protocol, streams};
}
"""


@dataclass
class Concurrency:
    protocol: str
    #: per stream, in the order they were opened: (first event, end) in ms since the start
    streams: list[tuple[float, float]]

    @property
    def started_before_any_ended(self) -> int:
        """How many streams had their first event before the first stream ended."""
        first_end = min(end for _, end in self.streams)
        return sum(1 for first, _ in self.streams if first < first_end)

    def figures(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "first_event_ms": [round(first) for first, _ in self.streams],
            "end_ms": [round(end) for _, end in self.streams],
            "started_before_any_ended": self.started_before_any_ended,
        }


def write_page(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "streams.html").write_text(PAGE)


async def open_streams(
    context: BrowserContext, origin: str, count: int = 8, query: str = "events=8&interval=0.25"
) -> Concurrency:
    """Load the page from ``origin`` (served at /static-test/) and open ``count`` streams."""
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        await page.goto(f"{origin}/static-test/streams.html")
        result = await page.evaluate(OPEN_STREAMS, [count, query])
    finally:
        await page.close()
    assert not errors, f"uncaught errors on the page: {errors}"
    streams = [(s["first"], s["end"]) for s in result["streams"]]
    return Concurrency(result["protocol"], streams)
