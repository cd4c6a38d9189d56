"""``sluice doctor URL``: does the network path to a gateway keep its streams streaming?

The doctor opens the gateway's diagnostic stream (``/api/diagnostics/stream``, see
``sluice.gateway.diagnostics``) through whatever sits in between, notes when each event and
heartbeat arrives, and compares every event's arrival with the time the gateway stamped on it.
The offset between the two clocks is unknown but constant, so the smallest difference is the
path's own latency and anything above it is time the event was held somewhere on the way.

It reports, in words and figures: buffering (events held, bytes, how long), heartbeats,
whether the connection survived the idle period, compression, the HTTP version, and the time to
the first byte and the first event. Exit status: 0 when the path streams, 1 when it would
ruin streaming (events held back, or the connection cut while idle), 2 when the diagnosis
could not be run (no answer, not a Sluice gateway, bad arguments).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import ssl
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import orjson

from sluice.sse import SSEDecoder

DIAGNOSTIC_PATH = "/api/diagnostics/stream"

EXIT_HEALTHY = 0
EXIT_RUINS_STREAMING = 1
EXIT_NOT_DIAGNOSED = 2

#: An event held longer than this (seconds) on its way is worth a warning: a reader sees the
#: text stutter. Past ``--max-hold`` (default 1 s) the path counts as buffering.
NOTICEABLE_HOLD = 0.1
#: Heartbeats that arrived, yet with a silence longer than this many heartbeat intervals
#: between them, were held on the way (the gateway sends one 1 to 1.25 intervals after its
#: last write).
LATE_HEARTBEAT = 2.0


class DoctorError(Exception):
    """The diagnosis could not be run: no answer, a refusal, or not a Sluice gateway."""


@dataclass(slots=True)
class Arrival:
    """One event as the client saw it: the gateway's stamp and the client's clock."""

    kind: str
    seq: int
    sent_at: float
    arrived_at: float
    size: int
    payload: dict[str, Any]


@dataclass(slots=True)
class Finding:
    topic: str
    #: "ok", "warn" or "fail"
    status: str
    summary: str
    advice: str = ""


@dataclass(slots=True)
class Report:
    url: str
    http_version: str = ""
    #: the protocols the TLS front end agreed to by ALPN when offered h2 ("" for plain http)
    alpn: str = ""
    server: str = ""
    via: str = ""
    content_encoding: str = ""
    accel_buffering_header: bool | None = None
    heartbeat_interval: float | None = None
    ttfb_ms: float | None = None
    first_event_ms: float | None = None
    #: the longest time one event was held on its way (seconds, above the path's latency)
    max_hold_s: float = 0.0
    held_events: int = 0
    held_bytes: int = 0
    events_expected: int = 0
    events_received: int = 0
    #: first to last tick, at the gateway and at the client (seconds)
    sent_spread_s: float = 0.0
    arrival_spread_s: float = 0.0
    heartbeats: int = 0
    idle_s: float = 0.0
    idle_survived: bool = False
    #: the longest silence the client saw while the gateway was idle (seconds)
    longest_silence_s: float = 0.0
    ended_by: str = ""
    findings: list[Finding] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if any(f.status == "fail" for f in self.findings):
            return EXIT_RUINS_STREAMING
        return EXIT_HEALTHY

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}

    def render(self) -> str:
        """The report in plain words, one line per topic, then the verdict."""
        lines = [f"sluice doctor {self.url}"]
        width = max(len(f.topic) for f in self.findings) if self.findings else 0
        for finding in self.findings:
            mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}[finding.status]
            lines.append(f"  {finding.topic.ljust(width)}  {mark}  {finding.summary}")
            if finding.advice:
                lines.append(f"  {' ' * width}        → {finding.advice}")
        if self.exit_code == EXIT_HEALTHY:
            lines.append("verdict: this path streams (exit 0)")
        else:
            lines.append(f"verdict: this path would ruin streaming (exit {self.exit_code})")
        return "\n".join(lines)


async def diagnose(
    url: str,
    *,
    events: int = 20,
    interval: float = 0.25,
    idle: float = 20.0,
    pad: int = 600,
    max_hold: float = 1.0,
    insecure: bool = False,
    connect_timeout: float = 10.0,
) -> Report:
    """Run one diagnostic stream through ``url`` (the gateway's base URL) and judge it.

    Raises ``DoctorError`` when no diagnosis is possible.
    """
    base = diagnostic_base(url)
    query = urlencode({"events": events, "interval": interval, "idle": idle, "pad": pad})
    report = Report(url=base, idle_s=idle, events_expected=events + 2)
    if urlsplit(base).scheme == "https":
        report.alpn = await _alpn(base, insecure, connect_timeout)
    arrivals, heartbeat_times, started = await _read_stream(
        f"{base}{DIAGNOSTIC_PATH}?{query}",
        report,
        insecure=insecure,
        connect_timeout=connect_timeout,
        # the whole schedule, and room for a proxy that holds all of it until the end
        deadline=connect_timeout + events * interval + idle + 30.0,
    )
    _measure(report, arrivals, heartbeat_times, started)
    _judge(report, max_hold)
    return report


def diagnostic_base(url: str) -> str:
    """The gateway's base URL: scheme and host required; a trailing ``/`` or ``/v1`` dropped
    (the base URL an SDK is given works as it is)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DoctorError(f"{url!r} is not an http:// or https:// URL of a gateway")
    path = parts.path.rstrip("/")
    path = path.removesuffix("/v1")
    return f"{parts.scheme}://{parts.netloc}{path}"


async def _alpn(base: str, insecure: bool, within: float) -> str:
    """The protocol the TLS front end picks when offered h2 and http/1.1, as a browser does."""
    parts = urlsplit(base)
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2", "http/1.1"])
    try:
        async with asyncio.timeout(within):
            _, writer = await asyncio.open_connection(
                parts.hostname, parts.port or 443, ssl=context, server_hostname=parts.hostname
            )
    except (OSError, TimeoutError) as exc:
        raise DoctorError(f"cannot open a TLS connection to {parts.netloc}: {exc}") from exc
    try:
        chosen = writer.get_extra_info("ssl_object").selected_alpn_protocol()
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    return str(chosen or "http/1.1")


async def _read_stream(
    url: str, report: Report, *, insecure: bool, connect_timeout: float, deadline: float
) -> tuple[list[Arrival], list[float], float]:
    arrivals: list[Arrival] = []
    heartbeat_times: list[float] = []
    decoder = SSEDecoder()
    comments = _CommentCounter()
    timeout = aiohttp.ClientTimeout(connect=connect_timeout, sock_connect=connect_timeout)
    headers = {"accept": "text/event-stream", "accept-encoding": "gzip, deflate"}
    started = time.time()
    try:
        async with (
            asyncio.timeout(deadline),
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(url, headers=headers, ssl=not insecure) as response,
        ):
            report.ttfb_ms = (time.time() - started) * 1000
            version = response.version
            report.http_version = f"HTTP/{version.major}.{version.minor}" if version else "HTTP"
            report.server = response.headers.get("server", "")
            report.via = response.headers.get("via", "")
            report.content_encoding = response.headers.get("content-encoding", "")
            if response.status != 200:
                body = (await response.content.read(500)).decode(errors="replace")
                raise DoctorError(
                    f"{url} answered HTTP {response.status} (is this a Sluice gateway, at a "
                    f"version with the diagnostic stream?): {body.strip()}"
                )
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                raise DoctorError(f"{url} did not answer with an event stream")
            try:
                async for chunk in response.content.iter_any():
                    now = time.time()
                    heartbeat_times.extend(now for _ in range(comments.feed(chunk)))
                    for event in decoder.decode(chunk):
                        arrivals.append(_arrival(event.event, event.data, now))
                report.ended_by = "end of stream"
            except aiohttp.ClientPayloadError as exc:
                report.ended_by = f"the connection was cut ({_reason(exc)})"
            except aiohttp.ClientConnectionError as exc:
                report.ended_by = f"the connection was lost ({_reason(exc)})"
    except TimeoutError:
        if not report.http_version:
            raise DoctorError(f"{url} did not answer within {deadline:.0f} s") from None
        report.ended_by = f"no end of stream within {deadline:.0f} s"
    except aiohttp.ClientConnectorError as exc:
        raise DoctorError(f"cannot connect to {url}: {_reason(exc)}") from exc
    except aiohttp.ClientError as exc:
        if not report.http_version:
            raise DoctorError(f"no answer from {url}: {_reason(exc)}") from exc
        report.ended_by = f"the connection failed ({_reason(exc)})"
    return arrivals, heartbeat_times, started


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _arrival(kind: str, data: str, now: float) -> Arrival:
    try:
        payload = orjson.loads(data)
        return Arrival(
            kind, int(payload["seq"]), float(payload["sent_at"]), now, len(data), payload
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise DoctorError(
            "the stream is not Sluice's diagnostic stream (an event without seq and sent_at)"
        ) from None


class _CommentCounter:
    """Counts SSE comment lines (heartbeats) across chunk boundaries."""

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, chunk: bytes) -> int:
        lines = (self._tail + chunk).replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        self._tail = lines.pop()
        return sum(1 for line in lines if line.startswith(b":"))


def _measure(
    report: Report,
    arrivals: list[Arrival],
    heartbeat_times: list[float],
    started: float,
) -> None:
    report.events_received = len(arrivals)
    report.heartbeats = len(heartbeat_times)
    hello = next((a for a in arrivals if a.kind == "hello"), None)
    if hello is None:
        return
    report.first_event_ms = (arrivals[0].arrived_at - started) * 1000
    # The gateway's settings, as it states them in its first event.
    report.accel_buffering_header = hello.payload.get("accel_buffering_header")
    report.heartbeat_interval = hello.payload.get("heartbeat_interval")
    latency = min(a.arrived_at - a.sent_at for a in arrivals)
    holds = [(a.arrived_at - a.sent_at - latency, a) for a in arrivals]
    report.max_hold_s = max(hold for hold, _ in holds)
    held = [a for hold, a in holds if hold > NOTICEABLE_HOLD]
    report.held_events = len(held)
    report.held_bytes = sum(a.size for a in held)
    ticks = [a for a in arrivals if a.kind == "tick"]
    if len(ticks) > 1:
        report.sent_spread_s = ticks[-1].sent_at - ticks[0].sent_at
        report.arrival_spread_s = ticks[-1].arrived_at - ticks[0].arrived_at
    done = next((a for a in arrivals if a.kind == "done"), None)
    report.idle_survived = done is not None
    # The silence the client saw while the gateway was idle: from the last tick (or hello) to
    # the end, between any two arrivals, events and heartbeats alike.
    idle_from = (ticks[-1] if ticks else hello).arrived_at
    idle_to = done.arrived_at if done is not None else time.time()
    marks = sorted([idle_from, idle_to, *(t for t in heartbeat_times if idle_from < t < idle_to)])
    report.longest_silence_s = max((b - a for a, b in itertools.pairwise(marks)), default=0.0)


def _judge(report: Report, max_hold: float) -> None:
    findings = report.findings
    front = report.server or "the server"
    version = report.http_version or "?"
    if report.alpn:
        h2 = report.alpn == "h2"
        findings.append(
            Finding(
                "http",
                "ok" if h2 else "warn",
                f"{version} for this stream; the TLS front end ({front}) "
                + ("offers HTTP/2 to browsers" if h2 else "offers only HTTP/1.1"),
                ""
                if h2
                else "browsers open at most 6 streams at once per host over "
                "HTTP/1.1: enable HTTP/2 on the TLS front end (docs/proxies.md)",
            )
        )
    else:
        findings.append(
            Finding(
                "http",
                "ok",
                f"{version} over plain http ({front}); browsers use HTTP/2 only over TLS, so "
                "they open at most 6 streams at once to this host",
            )
        )
    ttfb = f"{report.ttfb_ms:,.0f} ms" if report.ttfb_ms is not None else "none"
    first = f"{report.first_event_ms:,.0f} ms" if report.first_event_ms is not None else "none"
    findings.append(
        Finding("first byte", "ok", f"response headers after {ttfb}; first event after {first}")
    )
    if report.events_received == 0:
        findings.append(
            Finding(
                "buffering",
                "fail",
                f"no event arrived ({report.ended_by})",
                "something on the path holds or drops the stream: see docs/proxies.md",
            )
        )
        return
    if report.max_hold_s > max_hold:
        cause = (
            "the gateway does not send X-Accel-Buffering: no (streams.accel_buffering_header "
            "= false), so nginx buffers; "
            if report.accel_buffering_header is False
            else ""
        )
        findings.append(
            Finding(
                "buffering",
                "fail",
                f"{report.held_events} of {report.events_received} events "
                f"({report.held_bytes:,} bytes) were held back on the way, the longest for "
                f"{report.max_hold_s:.2f} s; the ticks were sent over "
                f"{report.sent_spread_s:.2f} s and arrived over {report.arrival_spread_s:.2f} s",
                cause + "turn response buffering off for text/event-stream on every proxy "
                "(nginx: proxy_buffering off; see docs/proxies.md)",
            )
        )
    elif report.held_events:
        findings.append(
            Finding(
                "buffering",
                "warn",
                f"{report.held_events} of {report.events_received} events "
                f"({report.held_bytes:,} bytes) were held back on the way, the longest for "
                f"{report.max_hold_s * 1000:,.0f} ms (under the {max_hold:g} s limit)",
                "something coalesces writes or holds partial buffers (HAProxy: option "
                "http-no-delay; nginx: proxy_buffering off; see docs/proxies.md)",
            )
        )
    else:
        findings.append(
            Finding(
                "buffering",
                "ok",
                f"none: every event arrived within {report.max_hold_s * 1000:,.0f} ms of the "
                f"fastest; {report.sent_spread_s:.2f} s of ticks arrived over "
                f"{report.arrival_spread_s:.2f} s",
            )
        )
    interval = report.heartbeat_interval or 0.0
    # one after every interval of silence, the last one due no later than the final event
    expected = max(0, math.ceil(report.idle_s / interval) - 1) if interval else 0
    if not interval:
        findings.append(
            Finding(
                "heartbeats",
                "warn",
                "the gateway sends none (streams.heartbeat_interval = 0)",
                "an idle proxy or load balancer may cut a long wait for the first token; "
                "set streams.heartbeat_interval (15 s suits 60 s timeouts)",
            )
        )
    elif expected == 0:
        findings.append(
            Finding(
                "heartbeats",
                "warn",
                f"not tested: the idle period ({report.idle_s:g} s) is shorter than the "
                f"gateway's heartbeat interval ({interval:g} s)",
                f"run again with --idle {math.ceil(interval * 2 + 1)}",
            )
        )
    elif report.heartbeats == 0:
        findings.append(
            Finding(
                "heartbeats",
                "fail" if not report.idle_survived else "warn",
                f"none arrived in {report.idle_s:g} s of idle, though the gateway sends one "
                f"after {interval:g} s of silence",
                "something on the path drops SSE comments or holds the stream",
            )
        )
    elif report.longest_silence_s > LATE_HEARTBEAT * interval:
        # They arrived, but late: a proxy on the path holds small writes for a while. One
        # with an idle timeout between the interval and that silence would cut the stream.
        findings.append(
            Finding(
                "heartbeats",
                "warn",
                f"{report.heartbeats} arrived, but the client saw {report.longest_silence_s:.2f} s "
                f"without a byte while idle, though the gateway sends one after {interval:g} s "
                "of silence",
                "something on the path holds small writes back (a buffer flushed on a timer "
                "or when full); an idle timeout shorter than that silence would cut the stream",
            )
        )
    else:
        findings.append(
            Finding(
                "heartbeats",
                "ok",
                f"{report.heartbeats} arrived (the gateway sends one after {interval:g} s of "
                f"silence; ~{expected} expected in {report.idle_s:g} s of idle)",
            )
        )
    if report.idle_s > 0 or not report.idle_survived:
        if report.idle_survived:
            findings.append(
                Finding(
                    "idle",
                    "ok",
                    f"the connection survived {report.idle_s:g} s without an event (longest "
                    f"silence seen: {report.longest_silence_s:.2f} s)",
                )
            )
        else:
            findings.append(
                Finding(
                    "idle",
                    "fail",
                    f"the stream did not reach its end: {report.ended_by}, after "
                    f"{report.longest_silence_s:.2f} s of silence",
                    "a proxy or load balancer has an idle timeout shorter than that silence: "
                    "keep streams.heartbeat_interval below it, or raise the timeout "
                    "(nginx proxy_read_timeout, HAProxy timeout server/client)",
                )
            )
    if report.content_encoding and report.content_encoding != "identity":
        findings.append(
            Finding(
                "compression",
                "warn",
                f"the stream is compressed ({report.content_encoding}) on the way",
                "compressing token streams saves little and costs a flush per event; "
                "leave text/event-stream out of the proxy's compressed types",
            )
        )
    else:
        findings.append(Finding("compression", "ok", "none"))


def main(argv: list[str]) -> int:
    """``sluice doctor URL [options]``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="sluice doctor",
        description="Open a diagnostic stream through the path to a gateway and report whether "
        "it streams: buffering, heartbeats, idle survival, compression, HTTP version, time to "
        "first byte. Exit status: 0 it streams, 1 it would ruin streaming, 2 not diagnosed.",
    )
    parser.add_argument("url", help="the gateway's base URL, as clients reach it")
    parser.add_argument(
        "--events", type=int, default=20, help="timestamped events to send (default 20)"
    )
    parser.add_argument(
        "--interval", type=float, default=0.25, help="seconds between events (default 0.25)"
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=20.0,
        help="seconds of silence (heartbeats only) before the last event (default 20; use 75 "
        "to prove a 60 s idle timeout is covered)",
    )
    parser.add_argument(
        "--pad",
        type=int,
        default=600,
        help="bytes of padding per event (default 600: a first write over 512 bytes, which "
        "Caddy's encode needs before it compresses)",
    )
    parser.add_argument(
        "--max-hold",
        type=float,
        default=1.0,
        help="seconds an event may be held on the way before the path counts as buffering "
        "(default 1.0)",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="accept any TLS certificate (self-signed)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        report = asyncio.run(
            diagnose(
                args.url,
                events=args.events,
                interval=args.interval,
                idle=args.idle,
                pad=args.pad,
                max_hold=args.max_hold,
                insecure=args.insecure,
            )
        )
    except DoctorError as exc:
        print(f"sluice doctor: {exc}", file=sys.stderr)
        return EXIT_NOT_DIAGNOSED
    except KeyboardInterrupt:
        return EXIT_NOT_DIAGNOSED
    if args.json:
        print(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(report.render())
    return report.exit_code
