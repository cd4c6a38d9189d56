"""The gateway's HTML pages: the shared shell, its static files, the chat page and the runbook.

Pages are rendered on the server with Jinja2 (autoescaping on) from ``sluice/web/templates``;
CSS and small hand-written ES modules are served from ``sluice/web/static`` under ``/static``.
Every page gets ``PAGE_CSP``: scripts, styles and connections only from the gateway itself, so
templates load their code from ``/static`` and use no inline ``<script>`` or ``style=``.

The chat page holds a conversation: each turn is an agent's run or a plain model's turn,
started with ``POST /api/conversations/{id}/turns``; it follows each through
``GET /chat/sessions/{id}/stream``: server-rendered, sanitised HTML of the answer, coalesced
into at most one update per ``FLUSH_INTERVAL``, each with the session log's sequence number as
its SSE id so that a reconnecting page resumes exactly (see docs/pages.md).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from sluice import events as ev
from sluice.access.control import ANONYMOUS, OPEN, Principal
from sluice.errors import ClientTooSlow, SluiceError
from sluice.gateway.chatview import ChatUpdates, ChatView
from sluice.gateway.guard import PRINCIPAL
from sluice.gateway.markdown import highlight_css, page_headings, render_markdown
from sluice.gateway.modellist import listed_models
from sluice.gateway.resume import check_within, requested_resume_id
from sluice.gateway.siblings import first_to_finish, send_body, wait_disconnect
from sluice.gateway.streaming import PING, sse_headers
from sluice.session.session import Reader, Session
from sluice.sse import encode_event

if TYPE_CHECKING:
    from sluice.gateway.app import Gateway

log = logging.getLogger("sluice.gateway")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"

#: The Content-Security-Policy of every page: a second wall behind the sanitiser.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

PAGE_HEADERS = {
    "content-security-policy": PAGE_CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


@functools.cache
def templates() -> jinja2.Environment:
    """The page templates (one environment per process; autoescaping on for everything)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_page(
    template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> Response:
    """A page from ``template`` (extending ``base.html``) with the pages' security headers.

    ``context["active_nav"]`` (``"chat"``, ``"ops"`` or ``"runbook"``) marks the current
    section in the header; ``context["who"]`` (``who_of``) names the logged-in key there.
    """
    html = (
        templates()
        .get_template(template)
        .render({"active_nav": None, "who": None, **(context or {})})
    )
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def who_of(request: Request) -> dict[str, Any]:
    """Who looks at a page, for its header and the controls it offers: the role (``open``
    while auth is off), the key's name, whether it came with a login cookie (the header then
    offers Log out), and what the role may do (a page renders only the buttons it may use)."""
    principal: Principal = request.scope.get(PRINCIPAL, ANONYMOUS)
    return {
        "role": principal.role,
        "name": None if principal.key is None else principal.key.name,
        "login": principal.via == "cookie",
        "may_control": principal.controls_all,
        "may_start": principal.may_start,
    }


def not_found_page(heading: str, message: str) -> Response:
    return render_page("not_found.html", {"heading": heading, "message": message}, status=404)


# ---------------------------------------------------------------------------------------------
# Models for the picker


def model_catalogue(gateway: Gateway, principal: Principal = OPEN) -> list[dict[str, Any]]:
    """The configured providers and the models the page can offer: a simulator provider lists
    its scenarios as ``<provider>/<scenario>``. Never a key, a key's name or a base URL. A
    client key with a model allow-list is offered only what it may use."""
    globs = principal.key.models if principal.key is not None else []
    providers = []
    for provider in gateway.settings.providers.values():
        models = listed_models(provider)
        listed = bool(models)
        if globs:
            if not listed and not any(g == "*" or g.startswith(f"{provider.name}/") for g in globs):
                continue
            models = [
                m for m in models if gateway.keys.allows_model(principal, f"{provider.name}/{m}")
            ]
            if listed and not models:
                continue
        available = not provider.needs_key or provider.api_key() is not None
        providers.append(
            {
                "name": provider.name,
                "kind": provider.kind,
                "available": available,
                "reason": None if available else "no API key is configured for this provider",
                # no list: any model name the provider serves may be typed
                "any_model": not listed,
                "models": [f"{provider.name}/{model}" for model in models],
            }
        )
    providers.sort(key=lambda p: (p["kind"] != "sim", not p["available"], p["name"]))
    return providers


# ---------------------------------------------------------------------------------------------
# The chat page's stream

#: Seconds between two updates of a page (first token, status changes and the end go at once).
FLUSH_INTERVAL = 0.1
#: Milliseconds a browser waits before reconnecting a dropped stream (the SSE ``retry`` field).
RECONNECT_MS = 1000


def live_telemetry(session: Session) -> dict[str, Any]:
    """TTFT, TPOT and token rate from the session's clock, cheaply (no percentiles)."""
    clock = session.clock
    tokens = session.output_tokens()
    ttft = None if clock.first_token is None else (clock.first_token - clock.started) * 1000
    tpot, rate = clock.pace(tokens)
    return {
        "ttft_ms": None if ttft is None else round(ttft, 1),
        "tpot_ms": None if tpot is None else round(tpot, 2),
        "token_rate": None if rate is None else round(rate, 1),
        "output_tokens": tokens,
    }


def final_telemetry(record: dict[str, Any]) -> dict[str, Any]:
    telemetry = record.get("telemetry") or {}
    usage = record.get("usage") or {}
    return {
        "ttft_ms": telemetry.get("ttft_ms"),
        "tpot_ms": telemetry.get("tpot_ms"),
        "token_rate": telemetry.get("token_rate"),
        "output_tokens": usage.get("output_tokens"),
    }


def fold(view: ChatView, entries: list[tuple[ev.Event | None, bytes]]) -> None:
    apply = view.apply
    for event, _raw in entries:
        if event is not None:
            apply(*ev.payload(event))


class ChatStream:
    """An ASGI response following one session for the chat page.

    Two sibling tasks, the first to finish cancels the other: the writer (log → view → an
    update per flush window, ``: ping`` when idle) and the disconnect watcher. The page is a
    reader of the session's log like any client: the disconnect policy applies when it leaves.
    """

    def __init__(self, session: Session, after: int) -> None:
        self.session = session
        self.after = after
        settings = session.settings
        self.heartbeat = settings.heartbeat_interval
        self.send_timeout = settings.client_send_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = self.session
        headers = sse_headers(
            session.settings.accel_buffering_header, (b"x-sluice-session-id", session.id.encode())
        )
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        view, updates = ChatView(), ChatUpdates()
        entries = session.log.entries
        after = self.after if 0 < self.after <= len(entries) else 0
        if after:
            fold(view, entries[:after])
            updates.assume_sent(view)
        position = len(entries)
        fold(view, entries[after:position])
        reader = session.attach(position)
        writer = asyncio.ensure_future(self._write(send, reader, view, updates))
        watcher = asyncio.ensure_future(wait_disconnect(receive))
        done = await first_to_finish(writer, watcher)
        error = writer.exception() if writer in done else None
        if writer in done and error is None:
            session.detach(reader, None)
        elif isinstance(error, ClientTooSlow):
            session.detach(reader, ClientTooSlow.type)
        else:
            session.detach(reader, "client_disconnected")
            if error is not None:
                raise error

    async def _send(self, send: Send, body: bytes, more: bool = True) -> None:
        await send_body(send, body, more, self.send_timeout, "page")

    async def _write(
        self, send: Send, reader: Reader, view: ChatView, updates: ChatUpdates
    ) -> None:
        session, log_ = self.session, self.session.log
        loop = asyncio.get_running_loop()
        position = reader.position
        update = updates.update(view, position) | {"telemetry": live_telemetry(session)}
        await self._send(send, b"retry: %d\n" % RECONNECT_MS + _frame(update, position))
        flushed, last_flush = position, loop.time()
        last_send = last_flush
        while True:
            now = loop.time()
            wait: float | None
            if position > flushed:
                wait = max(0.0, last_flush + FLUSH_INTERVAL - now)
            else:
                wait = max(0.0, last_send + self.heartbeat - now) if self.heartbeat else None
            if len(log_) <= position and not log_.closed:
                try:
                    async with asyncio.timeout(wait):
                        await log_.wait_beyond(position)
                except TimeoutError:
                    pass
            end = len(log_)
            if end > position:
                fold(view, log_.entries[position:end])
                position = end
                reader.advance(position)
            now = loop.time()
            closed = log_.closed and position == len(log_)
            if position > flushed and (view.urgent or closed or now - last_flush >= FLUSH_INTERVAL):
                update = updates.update(view, position) | {"telemetry": live_telemetry(session)}
                await self._send(send, _frame(update, position))
                flushed, last_flush, last_send = position, now, now
            elif self.heartbeat and now - last_send >= self.heartbeat:
                await self._send(send, PING)
                last_send = now
            if closed:
                break
        async with asyncio.timeout(self.send_timeout):
            await session.settled.wait()
        await self._send(send, _end_frame(session.record()), more=False)


def _frame(update: dict[str, Any], seq: int) -> bytes:
    return encode_event(orjson.dumps(update), event="update", id=str(seq))


def _end_frame(record: dict[str, Any]) -> bytes:
    end = {
        "state": record.get("state"),
        "finish_reason": record.get("finish_reason"),
        "error": record.get("error"),
        "cancel_reason": record.get("cancel_reason"),
        "telemetry": final_telemetry(record),
        "cost": record.get("cost"),
        "attempts": record.get("attempts"),
    }
    return encode_event(orjson.dumps(end), event="end")


async def _replay(
    gateway: Gateway, session_id: str, principal: Principal, after: int
) -> Response | None:
    """A session no longer in memory, from the store: one full update, then the end (the
    page redraws it whole, whatever it held: ``after`` is only checked)."""
    record = await gateway.store.get(session_id)
    if record is None or not principal.may_see(record.get("tenant")):
        return None
    check_within(after, record.get("events"), session_id)
    view = ChatView()
    stored = await gateway.store.get_events(session_id, 0)
    for _seq, kind, data in stored:
        view.apply(kind, orjson.loads(data))
    seq = stored[-1][0] if stored else 0
    update = ChatUpdates().update(view, seq) | {"telemetry": final_telemetry(record)}
    return Response(
        _frame(update, seq) + _end_frame(record),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-sluice-session-id": session_id},
    )


# ---------------------------------------------------------------------------------------------
# The runbook

#: Where the runbook is read from: the repository's docs (Sluice runs from a checkout).
RUNBOOK_PATH = Path(__file__).resolve().parents[3] / "docs" / "runbook.md"


@functools.lru_cache(maxsize=4)
def _rendered(path: Path, version: tuple[int, int]) -> tuple[str, list[tuple[int, str, str]]]:
    text = path.read_text(encoding="utf-8")
    return render_markdown(text, anchors=True), page_headings(text)


# ---------------------------------------------------------------------------------------------
# Routes


class Pages:
    def __init__(self, gateway: Gateway, runbook: Path = RUNBOOK_PATH) -> None:
        self.gateway = gateway
        self.runbook_path = runbook

    async def chat(self, request: Request) -> Response:
        principal: Principal = request.scope.get(PRINCIPAL, ANONYMOUS)
        return render_page(
            "chat.html",
            {
                "active_nav": "chat",
                "providers": model_catalogue(self.gateway, principal),
                "agents": self.gateway.agents.offered(principal),
                "keep_content": self.gateway.settings.keep_content,
                "who": who_of(request),
            },
        )

    async def models(self, request: Request) -> Response:
        principal: Principal = request.scope.get(PRINCIPAL, ANONYMOUS)
        return _json({"providers": model_catalogue(self.gateway, principal)})

    async def chat_stream(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        principal: Principal = request.scope.get(PRINCIPAL, ANONYMOUS)
        try:
            after = requested_resume_id(request.headers, request.query_params)
            session = self.gateway.sessions.get(session_id)
            if session is not None:
                if not principal.may_see(session.spec.tenant):
                    return _error(404, "unknown_session", f"no session {session_id!r}")
                check_within(after, len(session.log), session_id)
                return ChatStream(session, after)  # type: ignore[return-value]
            replay = await _replay(self.gateway, session_id, principal, after)
        except SluiceError as exc:
            return _error(exc.status, exc.type, exc.message)
        if replay is None:
            return _error(404, "unknown_session", f"no session {session_id!r}")
        return replay

    async def runbook(self, request: Request) -> Response:
        path = self.runbook_path
        try:
            stat = await asyncio.to_thread(path.stat)
            version = (stat.st_mtime_ns, stat.st_size)
            html, headings = await asyncio.to_thread(_rendered, path, version)
        except (FileNotFoundError, NotADirectoryError):
            return not_found_page(
                "No runbook here",
                "The runbook is read from docs/runbook.md in the Sluice repository, and this "
                "installation has no such file.",
            )
        return render_page(
            "runbook.html",
            {
                "active_nav": "runbook",
                "content": html,
                "headings": headings,
                "who": who_of(request),
            },
        )

    async def highlight_stylesheet(self, request: Request) -> Response:
        return Response(
            highlight_css(),
            media_type="text/css",
            headers={"cache-control": "public, max-age=3600"},
        )


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _error(status: int, type_: str, message: str) -> Response:
    """An error in the native API's format."""
    return _json({"error": {"type": type_, "message": message}}, status)


def page_routes(gateway: Gateway, runbook: Path = RUNBOOK_PATH) -> list[BaseRoute]:
    """The pages and their static files, to be added to the gateway's routes."""
    pages = Pages(gateway, runbook)
    return [
        Route("/", pages.chat, methods=["GET"]),
        Route("/runbook", pages.runbook, methods=["GET"]),
        Route("/api/models", pages.models, methods=["GET"]),
        Route("/chat/sessions/{session_id}/stream", pages.chat_stream, methods=["GET"]),
        Route("/static/highlight.css", pages.highlight_stylesheet, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
