"""The gateway's ASGI application: provider-compatible and native endpoints, records, health.

``create_app(settings)`` builds the application. The provider endpoints (one or more per wire
format that clients may speak, from the registry ``sluice.wire.formats``), which carry nearly
all of the traffic, are dispatched straight to their handlers by ``GatewayApp``: one dict
lookup, and their ``SessionStream`` responses write to the server's own ``send``, with no
middleware wrapping the body. Everything else goes through Starlette's router. Middleware
goes around the application (``SomeMiddleware(create_app(settings))``), where it sees every
request and every byte (see ``server.RunningServer``'s ``direct_writes``); it cannot be added
inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from sluice.access.control import ANONYMOUS, KeyRing, Principal
from sluice.access.keys import open_key_store
from sluice.agents.builtin import builtin_tools
from sluice.agents.toolbox import ToolBox
from sluice.config import Settings
from sluice.distributed.backplane import build_backplane
from sluice.errors import (
    BadRequest,
    Forbidden,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    SluiceError,
    UnknownSession,
)
from sluice.gateway.admin import admin_routes
from sluice.gateway.admission import SharedAdmission
from sluice.gateway.agent_endpoints import AgentEndpoints
from sluice.gateway.diagnostics import DiagnosticStream
from sluice.gateway.guard import CORS_ORIGIN, PRINCIPAL, Guard, cors_send
from sluice.gateway.metrics import GatewayMetrics
from sluice.gateway.modellist import model_routes
from sluice.gateway.nodes import NodeLink, RemoteFollow
from sluice.gateway.openapi import openapi_endpoint
from sluice.gateway.ops import ops_routes
from sluice.gateway.pages import page_routes
from sluice.gateway.presenters import (
    NativePresenter,
    PassthroughPresenter,
    Presenter,
    TranslatingPresenter,
)
from sluice.gateway.responses import NATIVE, JSONResponse, error_response, format_of
from sluice.gateway.responses_endpoints import ResponsesEndpoints
from sluice.gateway.resume import check_within, requested_resume_id
from sluice.gateway.siblings import left_before
from sluice.gateway.streaming import SessionStream, summary_of
from sluice.gateway.upstreams import build_upstream
from sluice.gateway.websocket import session_socket_endpoint
from sluice.logs import CORRELATION_ID, SESSION_ID, kv, redact_logs
from sluice.otel import client_trace, open_telemetry
from sluice.pricing import PriceBook
from sluice.providers import SIM_HEADER_PREFIX, Router, build_body
from sluice.redact import ProviderKeys
from sluice.session.bus import Bus, MemoryBus
from sluice.session.clusterfeed import answer_watchers
from sluice.session.manager import SessionManager, new_node_id, new_session_id
from sluice.session.opsfeed import OpsFeed
from sluice.session.recovery import close_interrupted
from sluice.session.session import Session, SessionFactory, SessionNotRetryable, SessionSpec
from sluice.session.store import LIVE_STATES, Record, SessionStore, open_store
from sluice.sse import encode_event
from sluice.turn import TurnRequest
from sluice.upstream import Upstream
from sluice.wire import formats
from sluice.wire.base import WireFormat
from sluice.wire.requests import parse_native_request

log = logging.getLogger("sluice.gateway")

# ---------------------------------------------------------------------------------------------
# Errors in each endpoint's own format


#: Paths of the native and operations API, whose routing refusals are native JSON errors.
_NATIVE_PATHS = ("/api/", "/ag-ui/", "/healthz", "/metrics", "/openapi.json")


def error_format(path: str, header_names: Iterable[str] = ()) -> str | None:
    """The error format of the API ``path`` belongs to (see ``format_of``); None for pages
    (plain text)."""
    fmt = format_of(path, header_names)
    if fmt == NATIVE and not path.startswith(_NATIVE_PATHS):
        return None
    return fmt


async def _routing_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (404 for an unknown path, 405 for a method a path does not
    take) in the error format of the API the path belongs to; pages keep plain text."""
    assert isinstance(exc, HTTPException)
    fmt = error_format(request.url.path, request.headers.keys())
    if fmt is None:
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
    type_ = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request")
    headers = dict(exc.headers) if exc.headers else None
    return error_response(fmt, exc.status_code, type_, exc.detail, headers)


async def _unhandled_sluice_error(request: Request, exc: Exception) -> Response:
    """A typed error no handler answered (the store failing under a read): the endpoint's
    own error format, its status, and a log line; never a traceback to the client."""
    assert isinstance(exc, SluiceError)
    log.error("request failed %s", kv(path=request.url.path, type=exc.type, message=exc.message))
    fmt = format_of(request.url.path, request.headers.keys())
    return error_response(fmt, exc.status, exc.type, exc.message)


def _upstream_error_status(error: dict[str, Any], fmt: WireFormat) -> int:
    kind, status = error["type"], error.get("status")
    own = fmt.error_statuses.get(kind)
    if own is not None:
        return own
    if kind == "rate_limited":
        return 429
    if kind == "overloaded":
        return 503
    if kind == "unknown_model":
        return 404
    if kind == "upstream_rejected" and isinstance(status, int):
        return status
    if kind == "upstream_stalled":
        return 504
    if kind == "upstream_header_invalid":  # the gateway's own configuration, as an unset key
        return 500
    return 502


# ---------------------------------------------------------------------------------------------


class Gateway:
    """The endpoints and the objects they share; one per app."""

    def __init__(
        self,
        settings: Settings,
        store: SessionStore | None = None,
        bus: Bus | None = None,
        upstream: Upstream | None = None,
    ) -> None:
        self.settings = settings
        self.router = Router(settings)
        self.metrics = GatewayMetrics()
        self.upstream: Upstream = upstream or build_upstream(settings)
        self.store = store or open_store(settings.store_url)
        self.keys = KeyRing(open_key_store(settings.store_url))
        self.guard = Guard(settings, self.keys)
        self.guard.refused = self._refused
        node = new_node_id()
        # With ``[bus] url``, this process is a node on the shared backplane (its Redis
        # reached in the lifespan): its operations feed is tagged with its name, and its
        # operations center merges every node's (``session.clusterfeed``); admission counts
        # the sessions of every node.
        backplane = build_backplane(settings.bus) if settings.bus.url is not None else None
        self.bus = bus or (backplane.bus if backplane is not None else MemoryBus())
        self.ops = OpsFeed(self.bus, settings.ops)
        #: admission counted across processes (``[bus] url`` set), else None
        self.shared: SharedAdmission | None = None
        if backplane is not None:
            self.ops.node = node
            self.shared = SharedAdmission(backplane.limits, settings.streams)
        self.sessions = SessionManager(
            self.store,
            self.bus,
            self.upstream,
            PriceBook(settings.prices),
            settings.streams,
            on_start=self._session_started,
            on_end=self._session_finished,
            feed=self.ops,
            redaction=ProviderKeys(lambda: [p.api_key() for p in settings.providers.values()]),
            node=node,
            journal_window=settings.journal_window,
            keep_content=settings.keep_content,
        )
        #: OpenTelemetry's observer of the sessions (``[telemetry] enabled``), else None
        self.telemetry = open_telemetry(settings.telemetry, node)
        if self.telemetry is not None:
            self.sessions.observers.append(self.telemetry)
        #: the tools agents call: the configured MCP servers' (connected on first use) and
        #: the built-in ones
        self.toolbox = ToolBox(settings.mcp, builtin_tools())
        #: this process as a node among others (None: one process on its own)
        self.nodes: NodeLink | None = None
        #: agents' runs and conversations
        self.agents = AgentEndpoints(self)
        if backplane is not None:
            self.nodes = NodeLink(
                backplane, self.sessions, settings.bus, self._nodes_lost, self._take_over
            )

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.sessions.prices.warm()  # before the server accepts: a 170 ms stall otherwise
        await self.store.open()
        await self.toolbox.__aenter__()
        await self.keys.open()
        if self.nodes is not None:
            await self.nodes.start()
        await self._close_interrupted()
        pruner = asyncio.ensure_future(self._prune_forever())
        feed = asyncio.ensure_future(self.ops.run())
        keys = asyncio.ensure_future(self._keep_keys())
        journal = asyncio.ensure_future(self.sessions.journal_forever())
        shared: list[asyncio.Future[None]] = []
        if self.shared is not None:
            shared.append(asyncio.ensure_future(self.shared.keep(self.sessions.live.keys)))
        if self.ops.node is not None:
            shared.append(asyncio.ensure_future(answer_watchers(self.ops)))
        stop_redacting = redact_logs(self.sessions.redaction.latest)
        try:
            yield
        finally:
            for task in (keys, feed, pruner, *shared):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.sessions.shutdown()
            journal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await journal
            await self.toolbox.__aexit__(None, None, None)
            if self.nodes is not None:
                await self.nodes.close()
            await self.keys.close()
            await self.upstream.close()
            await self.store.close()
            if self.telemetry is not None:
                await self.telemetry.close()
            stop_redacting()

    async def _close_interrupted(self) -> None:
        """Sessions a dead process left live are closed ``interrupted`` before any request:
        on its own store (one process), every record left live is one; among nodes, those
        of the nodes that hold no lease."""
        node = self.sessions.node
        nodes = self.nodes

        async def gone(owner: str | None) -> bool:
            if owner == node:
                return False
            return nodes is None or owner is None or not await nodes.alive(owner)

        closed = await close_interrupted(
            self.store, self.sessions.prices, gone, keep_content=self.settings.keep_content
        )
        self._nodes_lost(closed)
        if closed:
            log.warning("sessions interrupted at start %s", kv(count=len(closed)))

    def _nodes_lost(self, closed: list[Record]) -> None:
        for record in closed:
            self.metrics.session_interrupted(record["provider"], record["error"]["type"])

    async def _keep_keys(self) -> None:
        """Keys added or revoked elsewhere are seen within a second; spend is written."""
        while True:
            await asyncio.sleep(self.keys.POLL_INTERVAL)
            await self.keys.tick()

    def _session_started(self, session: Session) -> None:
        self.metrics.session_started(session)
        self.agents.run_started(session)
        if self.shared is not None:
            self.shared.restarted(session.id, session.spec.admission_key)
        if self.nodes is not None:
            self.nodes.session_started(session)

    def _session_finished(self, session: Session) -> None:
        self.metrics.session_finished(session)
        self.agents.run_ended(session)
        if self.nodes is not None:
            self.nodes.session_ended(session)
        spec = session.spec
        usage = session.final_usage
        tokens = 0 if usage is None else (usage.input_tokens or 0) + (usage.output_tokens or 0)
        if self.shared is not None:
            self.shared.ended(session.id, spec.api_key, tokens)
        if spec.api_key is None:
            return
        total = (session.cost or {}).get("total")
        if total is None:
            self.keys.session_ended(spec.api_key, None, tokens)
        else:
            self.keys.session_ended(spec.api_key, max(0.0, total - spec.billed), tokens)
            spec.billed = total

    def _refused(self, path: str, type_: str) -> None:
        self.metrics.rejected.labels(_area(path), type_).inc()

    async def _prune_forever(self) -> None:
        """Retention: records and logs older than ``streams.retention`` are deleted."""
        retention = self.settings.streams.retention
        while True:
            try:
                removed = await self.sessions.prune(retention)
            except SluiceError:
                log.exception("pruning old sessions failed")
            else:
                if removed:
                    log.info("pruned old sessions %s", kv(removed=removed))
            await asyncio.sleep(min(3600.0, max(1.0, retention / 10)))

    # -- request intake -----------------------------------------------------------------------

    async def read_json(self, request: Request) -> dict[str, Any]:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if (
            declared is not None
            and declared.isascii()
            and declared.isdigit()
            and int(declared) > limit
        ):
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        except ClientDisconnect as exc:  # the server may have answered 408 already
            raise RequestTimeout("the request body did not arrive in full") from exc
        if not body:
            raise BadRequest("request body is empty; send a JSON object")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise BadRequest("request body must be a JSON object")
        return data

    async def start_session(
        self,
        request: Request,
        turn: TurnRequest,
        body: dict[str, Any],
        endpoint: str,
        client_wire: str | None,
        default_policy: str | None = None,
        make: SessionFactory | None = None,
    ) -> Session:
        """Check, admit and start a session of ``turn`` for the request's caller: ``make``
        builds it (an agent's run), else it is a plain session."""
        principal: Principal = request.scope.get(PRINCIPAL, ANONYMOUS)
        if not principal.may_start:
            raise Forbidden("this credential may not start sessions")
        route = self.router.resolve(turn.model, client_wire)
        self.keys.check_model(principal, turn.model)
        key = principal.key
        if key is not None:
            admission_key: str | None = key.name
        else:
            client = request.scope.get("client")
            admission_key = None if not client else f"address:{client[0]}"
        self._admit(principal, admission_key)
        passthrough = client_wire is not None and route.wire == client_wire
        policy = body.get(
            "disconnect_policy", default_policy or self.settings.streams.disconnect_policy
        )
        if policy not in ("cancel", "detach", "drain"):
            raise BadRequest("'disconnect_policy' must be 'cancel', 'detach' or 'drain'")
        server = request.scope.get("server") or (self.settings.host, self.settings.port)
        host = f"[{server[0]}]" if ":" in str(server[0]) else server[0]
        sim_headers = {k: v for k, v in request.headers.items() if k.startswith(SIM_HEADER_PREFIX)}
        session_id = new_session_id()
        if self.shared is not None:
            await self.shared.admit(principal, admission_key, session_id)
        spec = SessionSpec(
            route=route,
            turn=turn,
            body=build_body(route, turn, body if passthrough else None),
            url=self.router.url(route, f"http://{host}:{server[1]}"),
            headers=self.router.headers(route, session_id, sim_headers),
            endpoint=endpoint,
            passthrough=passthrough,
            disconnect_policy=policy,
            admission_key=admission_key,
            tenant=principal.tenant,
            api_key=None if key is None else key.name,
            correlation_id=CORRELATION_ID.get(),
        )
        SESSION_ID.set(session_id)  # the rest of this request's lines are about it
        if self.telemetry is not None:
            spec.trace_context = client_trace(request.headers)
        if (
            self.nodes is not None
            and endpoint == "native"
            and self.settings.streams.mid_stream_failure == "retry"
        ):
            spec.handover = orjson.dumps(
                {
                    "body": body,
                    "policy": policy,
                    "admission_key": admission_key,
                    "tenant": spec.tenant,
                    "api_key": spec.api_key,
                    "sim_headers": sim_headers,
                    "trace_context": spec.trace_context,
                    "correlation_id": spec.correlation_id,
                }
            )
        if make is not None:
            return self.sessions.launch(make(session_id, spec, self.sessions.deps()))
        return self.sessions.start(session_id, spec)

    async def _take_over(
        self, request: bytes, record: Record, stored: list[tuple[int, str, dict[str, Any]]]
    ) -> bool:
        """A whole-turn retry, here, of a session whose node was lost: its request as that
        node handed it over, its log as stored. False when its attempts are spent."""
        if int(record.get("attempts") or 1) >= self.settings.streams.turn_attempts:
            return False
        kept = orjson.loads(request)
        body = kept["body"]
        turn = parse_native_request(body)
        route = self.router.resolve(turn.model, None)
        session_id = str(record["id"])
        host = self.settings.host
        host = f"[{host}]" if ":" in host else host
        spec = SessionSpec(
            route=route,
            turn=turn,
            body=build_body(route, turn, None),
            url=self.router.url(route, f"http://{host}:{self.settings.port}"),
            headers=self.router.headers(route, session_id, kept["sim_headers"]),
            endpoint="native",
            passthrough=False,
            disconnect_policy=kept["policy"],
            admission_key=kept["admission_key"],
            tenant=kept["tenant"],
            api_key=kept["api_key"],
            handover=request,
            trace_context=kept.get("trace_context"),
            correlation_id=kept.get("correlation_id"),
        )
        self.sessions.take_over(session_id, spec, record, stored, "node_lost")
        return True

    def _admit(self, principal: Principal, admission_key: str | None) -> None:
        """Admission control: a ceiling of live streams overall; per client key (or, while
        auth is off, per client address, the one thing a caller cannot invent) a ceiling of
        its own, and the key's budget and rates."""
        streams = self.settings.streams
        if streams.max_concurrent and len(self.sessions.live) >= streams.max_concurrent:
            raise Overloaded(
                f"the gateway is at its ceiling of {streams.max_concurrent} concurrent streams; "
                "retry shortly"
            )
        live = 0 if admission_key is None else self.sessions.live_for_key(admission_key)
        key = principal.key
        if key is not None:
            if key.max_streams is None and streams.max_per_key and live >= streams.max_per_key:
                raise RateLimited(
                    f"this API key has {streams.max_per_key} streams open, its ceiling; "
                    "retry when one ends"
                )
            self.keys.admit(principal, live)
        elif streams.max_per_key and live >= streams.max_per_key:
            raise RateLimited(
                f"this client has {streams.max_per_key} streams open, its ceiling; retry when "
                "one ends"
            )

    def reject(self, fmt: str, endpoint: str, exc: SluiceError) -> Response:
        self.metrics.rejected.labels(endpoint, exc.type).inc()
        log.warning(
            "request rejected %s",
            kv(endpoint=endpoint, status=exc.status, type=exc.type, message=exc.message),
        )
        headers = None
        if isinstance(exc, Overloaded):
            headers = {"retry-after": str(max(1, round(exc.retry_after)))}
        return error_response(fmt, exc.status, exc.type, exc.message, headers)

    # -- provider-compatible endpoints --------------------------------------------------------

    def provider_endpoint(self, fmt: WireFormat) -> Endpoint:
        """The handler of ``fmt``'s client endpoints."""

        async def endpoint(request: Request) -> Response:
            return await self._provider_endpoint(request, fmt)

        endpoint.__name__ = f"{fmt.name}_endpoint"
        return endpoint

    async def _provider_endpoint(self, request: Request, fmt: WireFormat) -> Response:
        endpoint = fmt.name
        assert fmt.parse is not None and fmt.encoder is not None and fmt.render is not None
        try:
            body = await self.read_json(request)
            turn = fmt.parse(body, request.scope["path"])  # (unescaped: a model's %2F is /)
            session = await self.start_session(request, turn, body, endpoint, endpoint)
        except SluiceError as exc:
            return self.reject(endpoint, endpoint, exc)
        await session.ready
        headers = {"x-sluice-session-id": session.id}
        if session.failed_before_stream and session.error is not None:
            return self._session_error(session, fmt, headers)
        if turn.stream:
            encoder = partial(
                fmt.encoder, fmt.id_prefix + session.id, turn.model, turn.include_usage
            )
            presenter: Presenter = (
                PassthroughPresenter(encoder)
                if session.spec.passthrough
                else TranslatingPresenter(encoder())
            )
            return SessionStream(session, presenter)  # type: ignore[return-value]
        if await left_before(request.scope, request.receive, session.settled.wait()):
            # The client left a non-streaming turn: the disconnect policy applies to it as to
            # a stream (cancel by default closes the upstream); nobody reads this response.
            session.detach(session.attach(0), "client_disconnected")
            return Response(status_code=499)
        if session.error is not None:
            return self._session_error(session, fmt, headers)
        result = session.acc.result()
        if not session.spec.passthrough or not result.response_id:
            # the upstream's id only when it speaks the client's format: a translated answer
            # carries the gateway's, in the client's format (as its stream does)
            result.response_id = fmt.id_prefix + session.id
        return JSONResponse(fmt.render(result, turn.model), headers=headers)

    def _session_error(
        self, session: Session, fmt: WireFormat, headers: dict[str, str]
    ) -> Response:
        error = session.error or {}
        status = _upstream_error_status(error, fmt)
        if error.get("retry_after") is not None:
            headers = {**headers, "retry-after": str(int(error["retry_after"]))}
        return error_response(
            fmt.name,
            status,
            error.get("type", "upstream_error"),
            error.get("message", "upstream failed"),
            headers,
        )

    # -- native API ---------------------------------------------------------------------------

    async def create_session(self, request: Request) -> Response:
        try:
            body = await self.read_json(request)
            turn = parse_native_request(body)
            session = await self.start_session(request, turn, body, "native", None)
        except SluiceError as exc:
            return self.reject("native", "native", exc)
        if "text/event-stream" in request.headers.get("accept", ""):
            return SessionStream(  # type: ignore[return-value]
                session,
                NativePresenter(),
            )
        return JSONResponse(
            {
                "id": session.id,
                "state": session.state,
                "events_url": f"/api/sessions/{session.id}/events",
                "record_url": f"/api/sessions/{session.id}",
            },
            status_code=201,
            headers={"x-sluice-session-id": session.id, "location": f"/api/sessions/{session.id}"},
        )

    async def _stored_record(self, session_id: str) -> Record | None:
        """The store's record; among nodes, also that of a session just launched elsewhere."""
        if self.nodes is None:
            return await self.store.get(session_id)
        return await self.nodes.record(session_id)

    async def session_events(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        principal = _principal(request)
        try:
            after = requested_resume_id(request.headers, request.query_params)
            session = self.sessions.get(session_id)
            if session is not None and principal.may_see(session.spec.tenant):
                # once the record is final, the ``end`` event's id (one past the last) is
                # an id this stream has sent too: resuming after it is allowed, and empty
                ended = 1 if session.settled.is_set() else 0
                check_within(after, len(session.log) + ended, session_id)
                return SessionStream(  # type: ignore[return-value]
                    session,
                    NativePresenter(),
                    after,
                )
            record = None if session is not None else await self._stored_record(session_id)
            if record is None or not principal.may_see(record.get("tenant")):
                raise UnknownSession(f"no session {session_id!r}")
            if self.nodes is not None and await self.nodes.owner(record) is not None:
                # live on another node: its live log, as the owner's own follow sends it
                streams = self.settings.streams
                return RemoteFollow(  # type: ignore[return-value]
                    self.nodes,
                    session_id,
                    after,
                    heartbeat=streams.heartbeat_interval,
                    send_timeout=streams.client_send_timeout,
                    buffering_header=streams.accel_buffering_header,
                )
            events = record.get("events")
            check_within(after, events + 1 if isinstance(events, int) else None, session_id)
        except SluiceError as exc:
            return self.reject("native", "events", exc)
        stored = await self.store.get_events(session_id, after)
        frames = [encode_event(data, event=kind, id=str(seq)) for seq, kind, data in stored]
        end_id = _stored_end_id(record, stored, after)
        if after < end_id:  # else the client resumed after the end itself: nothing more
            end = orjson.dumps(summary_of(record))
            frames.append(encode_event(end, event="end", id=str(end_id)))
        return Response(
            b"".join(frames),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-sluice-session-id": session_id},
        )

    async def get_session(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        session = self.sessions.get(session_id)
        record = session.record() if session is not None else await self._stored_record(session_id)
        if record is None or not _principal(request).may_see(record.get("tenant")):
            return self.reject("native", "records", UnknownSession(f"no session {session_id!r}"))
        return JSONResponse(record)

    async def list_sessions(self, request: Request) -> Response:
        q = request.query_params
        limit_raw = q.get("limit", "50")
        if not (limit_raw.isascii() and limit_raw.isdigit()) or not 1 <= int(limit_raw) <= 1000:
            return error_response("native", 400, "invalid_request", "limit must be 1..1000")
        state, provider = q.get("state"), q.get("provider")
        principal = _principal(request)
        tenant = None if principal.sees_all else (principal.tenant or "")
        rows = {r["id"]: r for r in await self.store.query(int(limit_raw), state, provider, tenant)}
        for session in self.sessions.live.values():
            if tenant is not None and session.spec.tenant != tenant:
                continue
            record = session.record()
            if (state is None or record["state"] == state) and (
                provider is None or record["provider"] == provider
            ):
                rows[session.id] = record
        ordered = sorted(rows.values(), key=lambda r: r["created_at"], reverse=True)
        return JSONResponse({"sessions": ordered[: int(limit_raw)]})

    def _controlled(self, request: Request, session_id: str) -> Session:
        """The live or recent session that the request's principal may Stop or Retry: 404
        for another tenant's (as for an unknown id), 403 for a viewer."""
        principal = _principal(request)
        session = self.sessions.get(session_id)
        if session is None or not principal.may_see(session.spec.tenant):
            raise UnknownSession(f"no live session {session_id!r}")
        _check_controls(principal)
        return session

    async def _remote_controlled(self, request: Request, session_id: str) -> tuple[Record, str]:
        """A session another node relays (or kept, for Retry) that the request's principal
        may Stop or Retry, and that node; the same refusals as ``_controlled``."""
        principal = _principal(request)
        nodes = self.nodes
        record = None if nodes is None else await nodes.record(session_id)
        if nodes is None or record is None or not principal.may_see(record.get("tenant")):
            raise UnknownSession(f"no live session {session_id!r}")
        _check_controls(principal)
        found = await nodes.lookup(session_id)
        if found.node is None or found.node == self.sessions.node:
            raise UnknownSession(f"no live session {session_id!r}")
        return record, found.node

    async def cancel_session(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        try:
            if self.sessions.get(session_id) is None and self.nodes is not None:
                return await self._cancel_remote(request, session_id)
            session = self._controlled(request, session_id)
        except SluiceError as exc:
            return self.reject("native", "cancel", exc)
        cancelled = session.cancel("client_stop")
        if cancelled:
            await session.finished.wait()
        return JSONResponse(
            {"id": session.id, "cancelled": cancelled, "state": session.state}, status_code=200
        )

    async def _cancel_remote(self, request: Request, session_id: str) -> Response:
        """Stop a session another node relays: the command goes to that node, which closes
        the upstream; the answer waits for the session's end, as a local Stop does."""
        assert self.nodes is not None
        record, owner = await self._remote_controlled(request, session_id)
        if record.get("state") not in LIVE_STATES:
            cancelled, state = False, record.get("state")
        else:
            cancelled, state = await self.nodes.cancel(owner, session_id, "client_stop")
        if state is None:  # the owner did not answer: what the store says
            state = ((await self.store.get(session_id)) or record).get("state")
        return JSONResponse({"id": session_id, "cancelled": cancelled, "state": state})

    async def _retry_remote(self, request: Request, session_id: str) -> Response:
        """Retry a session another node kept: the command goes to that node."""
        assert self.nodes is not None
        record, owner = await self._remote_controlled(request, session_id)
        state = record.get("state")
        if state not in ("errored", "cancelled"):
            raise SessionNotRetryable(
                f"session {session_id} is {state}; only errored or cancelled sessions can be "
                "retried"
            )
        attempts = int(record.get("attempts") or 1)
        if not await self.nodes.retry(owner, session_id, attempts):
            raise UnknownSession(f"no live session {session_id!r}")
        return JSONResponse(
            {
                "id": session_id,
                "state": "starting",
                "attempt": attempts + 1,
                "events_url": f"/api/sessions/{session_id}/events",
            },
            status_code=202,
        )

    async def retry_session(self, request: Request) -> Response:
        """The recover button: a new attempt of an errored or cancelled session."""
        session_id = request.path_params["session_id"]
        try:
            if self.sessions.get(session_id) is None and self.nodes is not None:
                return await self._retry_remote(request, session_id)
            self._controlled(request, session_id)
            session = await self.sessions.retry(session_id)
        except SluiceError as exc:
            return self.reject("native", "retry", exc)
        return JSONResponse(
            {
                "id": session.id,
                "state": session.state,
                "attempt": session.attempts,
                "events_url": f"/api/sessions/{session.id}/events",
            },
            status_code=202,
        )

    # -- operations ---------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "live_sessions": len(self.sessions.live)})

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")


def _check_controls(principal: Principal) -> None:
    if not (principal.controls_all or principal.role == "client"):
        raise Forbidden("Stop and Retry need an operator's credential")


def _principal(request: Request) -> Principal:
    principal: Principal = request.scope.get(PRINCIPAL, ANONYMOUS)
    return principal


def _area(path: str) -> str:
    """The endpoint label of a refusal before routing."""
    fmt = format_of(path)
    if fmt != NATIVE:
        return fmt
    if path.startswith(("/ops", "/api/admin/", "/metrics", "/login")):
        return path.split("/", 2)[1] if path.count("/") > 1 else path.strip("/")
    return "native" if path.startswith(("/api/", "/ag-ui/")) else "pages"


def _stored_end_id(record: dict[str, Any], stored: list[Any], after: int) -> int:
    """The ``end`` event's id of a stored session: the one after its last event's."""
    count = record.get("events")
    if isinstance(count, int):
        return count + 1
    return (stored[-1][0] if stored else after) + 1  # a record stored before it kept a count


Endpoint = Callable[[Request], Awaitable[Response]]


class GatewayApp(Starlette):
    """Starlette, with a direct path for the hot endpoints.

    Starlette wraps every ``send`` of every response in its error and exception middleware
    (and each route once more): three closures per relayed chunk. The provider endpoints
    handle their own errors, so they are called directly; any other path takes the router.
    An endpoint is a path (``direct``), or a prefix under which the POSTs its format claims
    are the format's (``prefixed``: Gemini's paths name the model and the method). Each
    request and WebSocket runs with its correlation id set (``sluice.logs.CORRELATION_ID``),
    for its log lines.
    """

    def __init__(
        self,
        *,
        direct: dict[tuple[str, str], Endpoint],
        guard: Guard,
        prefixed: tuple[tuple[str, WireFormat, Endpoint], ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._direct = direct
        self._prefixed = prefixed
        self._guard = guard

    def add_middleware(self, middleware_class: Any, *args: Any, **kwargs: Any) -> None:
        """Refused: the provider endpoints are dispatched ahead of Starlette's middleware
        stack, so a middleware added inside the app would miss them. Wrap the app instead:
        ``middleware_class(app, ...)`` sees every request, and every byte of every stream."""
        raise TypeError(
            "middleware cannot be added inside the gateway's app; wrap it instead: "
            f"{getattr(middleware_class, '__name__', 'Middleware')}(app, ...)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await super().__call__(scope, receive, send)
            return
        token = CORRELATION_ID.set(correlation_id(scope))
        try:
            await self._request(kind, scope, receive, send)
        finally:
            CORRELATION_ID.reset(token)

    async def _request(self, kind: str, scope: Scope, receive: Receive, send: Send) -> None:
        if kind == "http":
            checked = self._guard.http(scope)
            if type(checked) is not Principal:
                assert isinstance(checked, Response)
                await checked(scope, receive, send)
                return
            scope[PRINCIPAL] = checked
            origin = scope.get(CORS_ORIGIN)
            if origin is not None:
                send = cors_send(send, origin)
            endpoint = self._direct.get((scope["method"], scope["path"]))
            if endpoint is None and self._prefixed and scope["method"] == "POST":
                endpoint = _under(self._prefixed, scope["path"])
            if endpoint is not None:
                scope["app"] = self
                try:
                    response = await endpoint(Request(scope, receive))
                except Exception:
                    # A bug, not a request error: the handlers answer those themselves.
                    log.exception("request failed %s", kv(path=scope["path"]))
                    fmt = format_of(scope["path"])
                    response = error_response(fmt, 500, "internal_error", "internal error")
                await response(scope, receive, send)
                return
        elif kind == "websocket":
            principal = self._guard.websocket(scope)
            if not isinstance(principal, Principal):
                await _refuse_handshake(receive, send)
                return
            scope[PRINCIPAL] = principal
        await super().__call__(scope, receive, send)


#: the request headers a client may name its own correlation id in, in order of preference
CORRELATION_HEADERS = (b"x-request-id", b"x-correlation-id")
#: what such an id may be: a short token, nothing a log line could be forged with
_CORRELATION_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def correlation_id(scope: Scope) -> str:
    """The request's correlation id: the client's ``X-Request-Id`` (or ``X-Correlation-Id``)
    when it is a short token, else a new one."""
    found: dict[bytes, bytes] = {}
    for name, value in scope.get("headers") or ():
        if name in CORRELATION_HEADERS:
            found.setdefault(name, value)
    for name in CORRELATION_HEADERS:
        value = found.get(name)
        if value is not None and _CORRELATION_ID.fullmatch(value):
            return value.decode()
    return os.urandom(8).hex()


def _under(prefixed: tuple[tuple[str, WireFormat, Endpoint], ...], path: str) -> Endpoint | None:
    for prefix, fmt, endpoint in prefixed:
        if path.startswith(prefix) and (fmt.claims is None or fmt.claims(path)):
            return endpoint
    return None


async def _refuse_handshake(receive: Receive, send: Send) -> None:
    """Refuse a WebSocket before it is accepted: the server answers the handshake with 403."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008})


def create_app(
    settings: Settings,
    store: SessionStore | None = None,
    bus: Bus | None = None,
    upstream: Upstream | None = None,
) -> GatewayApp:
    gateway = Gateway(settings, store, bus, upstream)
    # every client endpoint of every wire format clients may speak: a path, or a prefix (its
    # last character a slash) under which the paths the format claims are its own
    direct: dict[tuple[str, str], Endpoint] = {}
    prefixed: list[tuple[str, WireFormat, Endpoint]] = []
    for fmt in formats.all():
        if fmt.serves_clients:
            endpoint = gateway.provider_endpoint(fmt)
            for path in fmt.endpoints:
                if path.endswith("/"):
                    prefixed.append((path, fmt, endpoint))
                else:
                    direct["POST", path] = endpoint
    # the Responses API's endpoint is a handler of its own, beside a response's (GET, cancel)
    responses = ResponsesEndpoints(gateway)
    direct["POST", responses.path] = responses.create
    routes: list[BaseRoute] = [
        *(Route(path, endpoint, methods=[method]) for (method, path), endpoint in direct.items()),
        *responses.routes(),
        *model_routes(gateway),
        *gateway.agents.routes(),
        Route("/api/sessions", gateway.create_session, methods=["POST"]),
        Route("/api/sessions", gateway.list_sessions, methods=["GET"]),
        Route("/api/sessions/{session_id}", gateway.get_session, methods=["GET"]),
        Route("/api/sessions/{session_id}/events", gateway.session_events, methods=["GET"]),
        Route("/api/sessions/{session_id}/cancel", gateway.cancel_session, methods=["POST"]),
        Route("/api/sessions/{session_id}/retry", gateway.retry_session, methods=["POST"]),
        WebSocketRoute("/api/sessions/{session_id}/ws", session_socket_endpoint(gateway)),
        Route("/healthz", gateway.healthz, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
        Route("/metrics", gateway.metrics_endpoint, methods=["GET"]),
        Route("/api/diagnostics/stream", DiagnosticStream(settings.streams), methods=["GET"]),
        *page_routes(gateway),
        *ops_routes(gateway),
        *admin_routes(gateway),
    ]
    if settings.embed_sim:
        from sluice.sim import SimSettings, create_sim_app

        routes.append(Mount("/sim", app=create_sim_app(SimSettings(**settings.sim))))
    app = GatewayApp(
        direct=direct,
        prefixed=tuple(prefixed),
        guard=gateway.guard,
        routes=routes,
        lifespan=gateway.lifespan,
        exception_handlers={HTTPException: _routing_error, SluiceError: _unhandled_sluice_error},
    )
    app.state.gateway = gateway
    return app
