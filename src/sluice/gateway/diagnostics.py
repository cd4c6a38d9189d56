"""The diagnostic stream: timestamped SSE events on a schedule, what ``sluice doctor`` reads.

``GET /api/diagnostics/stream?events=N&interval=S&idle=S&pad=B`` answers with the same headers
and heartbeats as a session's stream, and this schedule:

- ``hello`` at once: the schedule and the gateway's stream settings (heartbeat interval, whether
  ``X-Accel-Buffering: no`` is sent);
- ``tick`` N times, one every ``interval`` seconds;
- ``idle`` seconds in which only ``: ping`` heartbeats are sent (at the gateway's
  ``streams.heartbeat_interval``, after that long without a write, as on every SSE stream);
- ``done``, and the end of the response.

``hello`` and each ``tick`` carry ``pad`` bytes of padding (a proxy may decide from the size
of the first write whether to compress). Every event's data is a JSON object with ``seq`` and
``sent_at`` (the gateway's wall clock, in seconds), so a client can tell how long each event
was held on its way. The endpoint does no upstream work and touches no session: it costs a few
timers per connection and nothing else.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import Receive, Scope, Send

from sluice.config import StreamSettings
from sluice.gateway.siblings import first_to_finish, wait_disconnect
from sluice.gateway.streaming import PING, sse_headers
from sluice.sse import encode_event

#: name → (default, lowest, highest, type) of each query parameter
PARAMETERS: dict[str, tuple[float, float, float, type]] = {
    "events": (20, 0, 1000, int),
    "interval": (0.25, 0.0, 10.0, float),
    "idle": (0.0, 0.0, 900.0, float),
    "pad": (0, 0, 65536, int),
}


class DiagnosticsError(ValueError):
    """A query parameter is missing its shape or out of its bounds."""


@dataclass(frozen=True, slots=True)
class Schedule:
    events: int
    interval: float
    idle: float
    pad: int

    @classmethod
    def from_query(cls, query: dict[str, str]) -> Schedule:
        unknown = sorted(set(query) - set(PARAMETERS))
        if unknown:
            raise DiagnosticsError(
                f"unknown parameter {unknown[0]!r}; expected {', '.join(PARAMETERS)}"
            )
        values: dict[str, Any] = {}
        for name, (default, low, high, kind) in PARAMETERS.items():
            raw = query.get(name)
            if raw is None:
                values[name] = kind(default)
                continue
            try:
                value = kind(raw)
            except ValueError:
                noun = "an integer" if kind is int else "a number"
                raise DiagnosticsError(f"{name} must be {noun}, not {raw!r}") from None
            if not low <= value <= high:  # also refuses nan
                raise DiagnosticsError(f"{name} must be between {low:g} and {high:g}")
            values[name] = value
        return cls(**values)

    @property
    def duration(self) -> float:
        return self.events * self.interval + self.idle


class DiagnosticStream:
    """The ASGI endpoint; one instance per app, holding the gateway's stream settings."""

    def __init__(self, settings: StreamSettings) -> None:
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        try:
            schedule = Schedule.from_query(query)
        except DiagnosticsError as exc:
            body = orjson.dumps({"error": {"type": "invalid_request", "message": str(exc)}})
            await send(
                {
                    "type": "http.response.start",
                    "status": 400,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        headers = sse_headers(self.settings.accel_buffering_header)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        emitter = asyncio.ensure_future(self._emit(schedule, send))
        watcher = asyncio.ensure_future(wait_disconnect(receive))
        done = await first_to_finish(emitter, watcher)
        if emitter in done and emitter.exception() is not None:
            raise emitter.exception()  # type: ignore[misc]

    async def _emit(self, schedule: Schedule, send: Send) -> None:
        loop = asyncio.get_running_loop()
        heartbeat = self.settings.heartbeat_interval
        start = last_send = loop.time()

        async def write(body: bytes, more: bool = True) -> None:
            nonlocal last_send
            await send({"type": "http.response.body", "body": body, "more_body": more})
            last_send = loop.time()

        async def wait_until(due: float) -> None:
            # Silence until ``due``, broken by a heartbeat whenever the stream has been idle
            # for a heartbeat interval: the same rule as a session's stream.
            while (now := loop.time()) < due:
                if heartbeat and last_send + heartbeat <= due:
                    await asyncio.sleep(max(0.0, last_send + heartbeat - now))
                    await write(PING)
                else:
                    await asyncio.sleep(due - now)

        padding = "." * schedule.pad
        hello = {
            "seq": 0,
            "sent_at": time.time(),
            "events": schedule.events,
            "interval": schedule.interval,
            "idle": schedule.idle,
            "pad": schedule.pad,
            "heartbeat_interval": heartbeat,
            "accel_buffering_header": self.settings.accel_buffering_header,
            "padding": padding,
        }
        await write(_frame("hello", hello))
        for seq in range(1, schedule.events + 1):
            await wait_until(start + seq * schedule.interval)
            await write(_frame("tick", {"seq": seq, "sent_at": time.time(), "padding": padding}))
        await wait_until(start + schedule.duration)
        done = {"seq": schedule.events + 1, "sent_at": time.time(), "idle": schedule.idle}
        await write(_frame("done", done), more=False)


def _frame(kind: str, data: dict[str, Any]) -> bytes:
    return encode_event(orjson.dumps(data), event=kind, id=str(data["seq"]))
