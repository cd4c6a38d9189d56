"""The operations center's HTTP side: the ``/ops`` and session pages, and their two feeds.

- ``GET /ops``: every live and recent session, those the store holds from earlier runs
  included (rows rendered on the server from the feed's snapshot, then kept current by
  ``ops.js``);
- ``GET /ops/sessions/{id}``: one session's answer, event timeline and final telemetry, and an
  agent run's steps with each tool call's arguments, result and duration;
  ``GET /ops/sessions/{id}/summary`` is that page's final part alone (fetched when it ends);
- ``WS /ops/feed``: the operations feed (``sluice.session.opsfeed``): a snapshot, then one
  coalesced diff per flush window, as JSON text frames;
- ``WS /ops/sessions/{id}/feed``: one session's page feed, coalesced the same way.

The browser sends nothing on either socket; the server stops when the client goes. A feed the
client does not take within ``streams.client_send_timeout`` is dropped (the page reconnects and
starts from a fresh snapshot). A feed whose key is revoked or expires is closed with 4401 at its
next message (the page reloads, which leads to the login page).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from sluice.access.control import Principal
from sluice.gateway.guard import PRINCIPAL
from sluice.gateway.markdown import render_markdown
from sluice.gateway.pages import PAGE_HEADERS, not_found_page, render_page, templates, who_of
from sluice.gateway.siblings import first_to_finish
from sluice.logs import kv
from sluice.session.clusterfeed import follow_cluster
from sluice.session.opsfeed import GAP_TAIL, SessionTrail, derive, follow_session
from sluice.session.session import TERMINAL_STATES
from sluice.session.steps import RunSteps

if TYPE_CHECKING:
    from sluice.gateway.app import Gateway

log = logging.getLogger("sluice.gateway")

CLOSE_NORMAL = 1000
#: the key the feed was opened with is revoked or expired: the page logs in again
CLOSE_LOGIN_ENDED = 4401
CLOSE_UNKNOWN_SESSION = 4404

#: the states the operations center filters on, in the order of the filter
STATE_FILTERS = (
    "live",
    "starting",
    "streaming",
    "complete",
    "errored",
    "cancelled",
    "interrupted",
)

#: the sparkline's view box (ops.js draws with the same numbers)
SPARK_WIDTH, SPARK_HEIGHT = 64, 22

#: a row with every field and no session, for the template the script clones
BLANK_ROW: dict[str, Any] = {
    "id": "",
    "state": "",
    "provider": "",
    "model": "",
    "prompt": "",
    "tokens": 0,
    "limit": None,
    "limit_source": None,
    "ttft_ms": None,
    "rate": None,
    "backpressure": "",
    "gaps": [],
    "cost": None,
    "cost_source": None,
    "reason": None,
    "message": None,
    "node": None,
    "agent": None,
    "step": None,
    "steps": None,
}

BLANK_TOTALS: dict[str, Any] = {
    "live": 0,
    "sessions": 0,
    "tokens_per_s": 0,
    "error_rate": None,
    "errors_over": 0,
    "spend": 0.0,
    "unpriced": 0,
    "smoothness": [],
}


# ---------------------------------------------------------------------------------------------
# Formatting, shared by the templates (ops.js formats the same way)

#: shown for a figure not known (yet)
NONE = "\u2013"


def spark_points(gaps: list[float]) -> str:
    """An SVG polyline's points for the gaps (milliseconds), scaled to the tallest one."""
    if not gaps:
        return ""
    top = max(gaps) or 1.0
    step = SPARK_WIDTH / max(len(gaps) - 1, 1)
    return " ".join(
        f"{i * step:.1f},{SPARK_HEIGHT - 1 - (g / top) * (SPARK_HEIGHT - 2):.1f}"
        for i, g in enumerate(gaps)
    )


def fmt_seconds(value: float | None) -> str:
    """Seconds as steps.js shows them."""
    if value is None:
        return NONE
    return f"{round(value * 1000)} ms" if value < 1 else f"{value:.2f} s"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return NONE
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def fmt_rate(value: float | None) -> str:
    return NONE if value is None else f"{value:.0f} t/s"


def fmt_tokens(row: dict[str, Any]) -> str:
    limit = row.get("limit")
    if not limit:
        return str(row.get("tokens", 0))
    approx = "~" if row.get("limit_source") == "estimate" else ""
    return f"{row.get('tokens', 0)} / {approx}{limit}"


def fmt_cost(row: dict[str, Any]) -> str:
    if row.get("state") not in TERMINAL_STATES:
        return NONE
    cost = row.get("cost")
    return "unknown" if cost is None else f"${cost:.6f}"


def fmt_run(row: dict[str, Any]) -> str:
    """An agent's run: its agent and the step under way, or how many steps it ran (nothing
    for a plain session, nor for a model's turn of a conversation: one step, no tools)."""
    step, agent = row.get("step"), row.get("agent")
    if step is None or not agent:
        return ""
    if row.get("state") in TERMINAL_STATES:
        return f"{agent} · {step} step" + ("" if step == 1 else "s")
    return f"{agent} · step {step}"


def fmt_model_title(row: dict[str, Any]) -> str:
    """The model column's tooltip: ``provider/model``, and an agent run's step and steps."""
    model = f"{row['provider']}/{row['model']}" if row.get("provider") else ""
    step, agent = row.get("step"), row.get("agent")
    if step is None or not agent:
        return model
    steps = row.get("steps") or 0
    return f"agent {agent} on {model}: step {step}, {steps} step{'' if steps == 1 else 's'} ended"


def fmt_percent(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.1f} %"


def fmt_over(count: int) -> str:
    return f"of the last {count} finished" if count else "no session finished yet"


def fmt_spend(value: float) -> str:
    return f"${value:.6f}"


def fmt_unpriced(count: int) -> str:
    return f"+ {count} at unknown price" if count else "since the gateway started"


def fmt_count(count: int) -> str:
    return f"{count} session" if count == 1 else f"{count} sessions"


FORMATTERS: dict[str, Any] = {
    "fmt_count": fmt_count,
    "spark_points": spark_points,
    "spark_width": SPARK_WIDTH,
    "spark_height": SPARK_HEIGHT,
    "fmt_ms": fmt_ms,
    "fmt_rate": fmt_rate,
    "fmt_tokens": fmt_tokens,
    "fmt_cost": fmt_cost,
    "fmt_run": fmt_run,
    "fmt_model_title": fmt_model_title,
    "fmt_seconds": fmt_seconds,
    "fmt_percent": fmt_percent,
    "fmt_over": fmt_over,
    "fmt_spend": fmt_spend,
    "fmt_unpriced": fmt_unpriced,
}


def ops_routes(gateway: Gateway) -> list[BaseRoute]:
    pages = OpsPages(gateway)
    return [
        Route("/ops", pages.ops_page, methods=["GET"]),
        Route("/ops/sessions/{session_id}", pages.session_page, methods=["GET"]),
        Route("/ops/sessions/{session_id}/summary", pages.session_summary, methods=["GET"]),
        WebSocketRoute("/ops/feed", pages.ops_feed),
        WebSocketRoute("/ops/sessions/{session_id}/feed", pages.session_feed),
    ]


class OpsPages:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    # -- pages --------------------------------------------------------------------------------

    async def ops_page(self, request: Request) -> Response:
        feed = self.gateway.ops
        await feed.load_recorded(self.gateway.store)
        snapshot = feed.snapshot()
        rows = sorted(snapshot["sessions"].values(), key=lambda r: r["created"], reverse=True)
        providers = sorted(self.gateway.settings.providers)
        return render_page(
            "ops.html",
            {
                **FORMATTERS,
                "active_nav": "ops",
                "rows": rows,
                "blank_row": BLANK_ROW,
                "totals": BLANK_TOTALS | snapshot["totals"],
                "providers": providers,
                "states": STATE_FILTERS,
                "gap_tail": GAP_TAIL,
                "flush_interval": feed.settings.flush_interval,
                "who": who_of(request),
                # several processes share the bus: a column says which relays each session
                "cluster": self.gateway.settings.bus.url is not None,
            },
        )

    async def session_page(self, request: Request) -> Response:
        view = await self._session_view(request.path_params["session_id"])
        if view is None:
            return not_found_page(
                "No such session", "This session is not live and has no stored record."
            )
        return render_page("session.html", {"active_nav": "ops", "who": who_of(request), **view})

    async def session_summary(self, request: Request) -> Response:
        view = await self._session_view(request.path_params["session_id"])
        if view is None:
            return not_found_page(
                "No such session", "This session is not live and has no stored record."
            )
        html = templates().get_template("session_summary.html").render(view | {"fragment": True})
        return HTMLResponse(html, headers=PAGE_HEADERS)

    async def _session_view(self, session_id: str) -> dict[str, Any] | None:
        """The record, the answer and the timeline of a session in memory or in the store."""
        trail = SessionTrail()
        session = self.gateway.sessions.get(session_id)
        row = BLANK_ROW
        if session is not None:
            record: dict[str, Any] | None = session.record()
            trail.apply_entries(1, session.log.entries)
            row = derive(session)
        else:
            record = await self.gateway.store.get(session_id)
            if record is None:
                return None
            for seq, kind, data in await self.gateway.store.get_events(session_id, 0):
                trail.apply(seq, kind, orjson.loads(data))
        assert record is not None
        final = record["state"] in TERMINAL_STATES and (
            session is None or session.finished.is_set()
        )
        if session is None:
            row = BLANK_ROW | {
                "state": record["state"],
                "tokens": (record.get("usage") or {}).get("output_tokens", 0),
                "ttft_ms": (record.get("telemetry") or {}).get("ttft_ms"),
                "rate": (record.get("telemetry") or {}).get("token_rate"),
                "backpressure": (record.get("telemetry") or {}).get("backpressure") or "",
            }
        text = trail.text
        steps = trail.run
        if not steps.steps and record.get("steps"):
            # (a run whose stored log is gone: ``keep_content`` off)
            unfinished = "stopped" if record["state"] == "cancelled" else "failed"
            steps = RunSteps.from_record(record["steps"], unfinished)
        return {
            **FORMATTERS,
            "steps": steps.steps,
            "record": record,
            "row": row,
            "text": text,
            "answer_html": render_markdown(text) if final else "",
            "timeline": trail.timeline,
            "final": final,
            "fragment": False,
            "retryable": session is not None,
            "flush_interval": self.gateway.ops.settings.flush_interval,
        }

    # -- feeds --------------------------------------------------------------------------------

    async def ops_feed(self, websocket: WebSocket) -> None:
        await websocket.accept()
        feed = self.gateway.ops
        await feed.load_recorded(self.gateway.store)
        follow = feed.follow() if feed.node is None else follow_cluster(feed)
        async with follow as messages:
            await self._relay(websocket, messages)

    async def session_feed(self, websocket: WebSocket) -> None:
        await websocket.accept()
        session_id = websocket.path_params["session_id"]
        session = self.gateway.sessions.get(session_id)
        if session is None:
            with contextlib.suppress(WebSocketDisconnect):
                await websocket.send_text(
                    orjson.dumps(
                        {"error": {"type": "unknown_session", "message": "not in memory"}}
                    ).decode()
                )
                await websocket.close(CLOSE_UNKNOWN_SESSION)
            return
        messages = follow_session(session, self.gateway.ops.settings.flush_interval)
        await self._relay(websocket, messages)

    def _key_holds(self, principal: Principal | None) -> bool:
        """Whether the key a feed was opened with is still active: a revoked or expired key
        ends its open feeds at their next message, not only its next request."""
        key = None if principal is None else principal.key
        if key is None:
            return True
        current = self.gateway.keys.get(key.name)
        return current is not None and current.status() == "active"

    async def _relay(self, websocket: WebSocket, messages: AsyncIterator[dict[str, Any]]) -> None:
        """Send every message as a JSON text frame until the feed ends or the client leaves;
        the sender and the disconnect watcher are siblings, the first to finish ends both."""
        timeout = self.gateway.settings.streams.client_send_timeout
        principal: Principal | None = websocket.scope.get(PRINCIPAL)

        async def send() -> None:
            async for message in messages:
                if not self._key_holds(principal):
                    with contextlib.suppress(WebSocketDisconnect):
                        await websocket.close(CLOSE_LOGIN_ENDED, "the login has ended")
                    return
                async with asyncio.timeout(timeout):
                    await websocket.send_text(orjson.dumps(message).decode())
            with contextlib.suppress(WebSocketDisconnect):
                await websocket.close(CLOSE_NORMAL)

        async def watch() -> None:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass

        done = await first_to_finish(asyncio.ensure_future(send()), asyncio.ensure_future(watch()))
        for task in done:
            error = task.exception()
            if isinstance(error, TimeoutError | WebSocketDisconnect):
                log.info("ops feed client left %s", kv(reason=type(error).__name__))
            elif error is not None:
                raise error
