"""The OpenAI Responses endpoints: ``POST /v1/responses`` (streamed or not, for every provider
kind), ``GET /v1/responses/{id}`` (the response, or its stream after ``starting_after``) and
``POST /v1/responses/{id}/cancel`` (Stop).

A request to a provider that speaks Responses is relayed unchanged (passthrough); to any other,
it is translated, and the stream written by ``ResponsesStreamEncoder``. How ids and sequence
numbers map onto the session and its event log is in ``gateway.responses_api``. Errors are
OpenAI's error bodies; keys and tenants are checked as on the other provider endpoints: a
response of another tenant is one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sluice import events as ev
from sluice.access.control import ANONYMOUS, Principal
from sluice.errors import BadRequest, ResumeBeyondLog, SluiceError, UnknownSession
from sluice.gateway.guard import PRINCIPAL
from sluice.gateway.presenters import Presenter, TranslatingPresenter
from sluice.gateway.responses import JSONResponse
from sluice.gateway.responses_api import (
    ResponsesPassthroughPresenter,
    UpstreamFrames,
    last_number,
    rendered,
    replayed,
    response_id,
    session_id_of,
)
from sluice.gateway.resume import resume_id
from sluice.gateway.siblings import left_before
from sluice.gateway.streaming import SessionStream
from sluice.session.session import Session
from sluice.session.store import LIVE_STATES, Record
from sluice.wire import formats
from sluice.wire.openai_responses import ResponsesStreamEncoder
from sluice.wire.requests import parse_responses_request

if TYPE_CHECKING:
    from sluice.gateway.app import Gateway

#: the wire format these endpoints speak: its name is the sessions' ``endpoint``, the
#: upstream wire that passes through, and the error format
RESPONSES = formats.RESPONSES
ENDPOINT = RESPONSES.name


@dataclass(slots=True)
class _Found:
    """A response a client named: its session in memory, or its stored record."""

    session_id: str
    session: Session | None
    record: Record | None
    #: the response's id as its client knows it
    id: str
    #: the model as the client named it
    model: str
    created_at: int
    #: relayed unchanged from a Responses provider
    passthrough: bool


class ResponsesEndpoints:
    """``create`` is the handler of the format's client endpoint (``path``, dispatched
    directly, as every provider endpoint is); ``routes()`` are a response's own."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.path = RESPONSES.endpoints[0]

    def routes(self) -> list[BaseRoute]:
        return [
            Route(self.path + "/{response_id}", self.retrieve, methods=["GET"]),
            Route(self.path + "/{response_id}/cancel", self.cancel, methods=["POST"]),
        ]

    # -- POST /v1/responses ---------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        gateway = self.gateway
        try:
            body = await gateway.read_json(request)
            # Read leniently first: the model says whether the body goes to a Responses
            # provider unchanged (then what only such a provider acts on is its business) or
            # is translated (then it is refused, naming the field).
            turn = parse_responses_request(body, translating=False)
            route = gateway.router.resolve(turn.model, ENDPOINT)
            if route.wire != ENDPOINT:
                turn = parse_responses_request(body)
            background = body.get("background") is True
            session = await gateway.start_session(
                request,
                turn,
                body,
                ENDPOINT,
                ENDPOINT,
                default_policy="drain" if background else None,
            )
        except SluiceError as exc:
            return gateway.reject(ENDPOINT, ENDPOINT, exc)
        await session.ready
        headers = {"x-sluice-session-id": session.id}
        if session.failed_before_stream and session.error is not None:
            return gateway._session_error(session, RESPONSES, headers)
        found = _live(session)
        if turn.stream:
            return SessionStream(session, _presenter(found, -1))  # type: ignore[return-value]
        if not background:
            if await left_before(request.scope, request.receive, session.settled.wait()):
                # The client left a turn it waited for: the disconnect policy applies, as to a
                # stream; nobody reads this answer.
                session.detach(session.attach(0), "client_disconnected")
                return Response(status_code=499)
            if session.error is not None:
                return gateway._session_error(session, RESPONSES, headers)
        elif found.passthrough:
            # A background response answers at once, in progress, for the client to poll or
            # stream; relayed, once the provider's first frame has given it its id.
            log = session.log
            while not session.acc.response_id and not log.closed:
                await log.wait_beyond(len(log))
            found = _live(session)
        return JSONResponse(_live_response(found), headers=headers)

    # -- GET /v1/responses/{id} -------------------------------------------------------------

    async def retrieve(self, request: Request) -> Response:
        query = request.query_params
        try:
            found = await self._find(request)
            stream = query.get("stream", "false").lower()
            if stream not in ("true", "false"):
                raise BadRequest("'stream' must be true or false")
            if stream == "false":
                return await self._response(found)
            after = query.get("starting_after")
            return await self._stream(
                found, -1 if after is None else resume_id(after, "starting_after")
            )
        except SluiceError as exc:
            return self.gateway.reject(ENDPOINT, ENDPOINT, exc)

    async def _response(self, found: _Found) -> Response:
        headers = {"x-sluice-session-id": found.session_id}
        if found.session is not None:
            return JSONResponse(_live_response(found), headers=headers)
        events = await self._stored_events(found.session_id)
        response = replayed(events, found.id, found.model, found.created_at).response()
        return JSONResponse(response, headers=headers)

    async def _stream(self, found: _Found, after: int) -> Response:
        """The stream from its start, or after frame ``after``: followed live from the
        session's log while it is in memory, else rendered from the stored log."""
        session = found.session
        if session is not None:
            _check_within(after, _last_frame(found), found.id)
            return SessionStream(session, _presenter(found, after))  # type: ignore[return-value]
        if found.passthrough and after >= 0:
            raise BadRequest(
                f"the provider's own frames of response {found.id!r} are kept while its "
                "session is in memory, and it is no longer: stream it from its start (without "
                "starting_after), or retrieve it without stream"
            )
        events = await self._stored_events(found.session_id)
        body, encoder = rendered(events, found.id, found.model, found.created_at, after, ended=True)
        _check_within(after, encoder.frames - 1, found.id)
        return Response(
            body,
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-sluice-session-id": found.session_id},
        )

    # -- POST /v1/responses/{id}/cancel -----------------------------------------------------

    async def cancel(self, request: Request) -> Response:
        """Stop: the upstream connection is closed, and the answer is the response as it
        ended (``cancelled``); a response that had ended already is answered as it is."""
        gateway = self.gateway
        try:
            found = await self._find(request)
            if found.session is not None:
                session = gateway._controlled(request, found.session_id)
                if session.cancel("client_stop"):
                    await session.finished.wait()
            elif gateway.nodes is not None and (found.record or {}).get("state") in LIVE_STATES:
                _, owner = await gateway._remote_controlled(request, found.session_id)
                await gateway.nodes.cancel(owner, found.session_id, "client_stop")
                found = await self._find(request)
        except SluiceError as exc:
            return gateway.reject(ENDPOINT, ENDPOINT, exc)
        return await self._response(found)

    # -- finding a response -----------------------------------------------------------------

    async def _find(self, request: Request) -> _Found:
        """The response the path names, if the caller's tenant may see it."""
        rid = request.path_params["response_id"]
        principal: Principal = request.scope.get(PRINCIPAL, ANONYMOUS)
        gateway = self.gateway
        session_id = session_id_of(rid)
        session = gateway.sessions.get(session_id) if session_id else None
        if session is None:
            session = self._relayed(rid)
        if session is not None:
            if session.spec.endpoint == ENDPOINT and principal.may_see(session.spec.tenant):
                return _live(session)
            raise UnknownSession(f"no response {rid!r}")
        record = await gateway._stored_record(session_id) if session_id else None
        if (
            record is None
            or record.get("endpoint") != ENDPOINT
            or not principal.may_see(record.get("tenant"))
        ):
            raise UnknownSession(f"no response {rid!r}")
        passthrough = bool(record.get("passthrough"))
        return _Found(
            session_id=str(record["id"]),
            session=None,
            record=record,
            id=(passthrough and record.get("response_id")) or response_id(str(record["id"])),
            model=f"{record.get('provider')}/{record.get('model')}",
            created_at=int(record.get("created_at") or 0),
            passthrough=passthrough,
        )

    def _relayed(self, rid: str) -> Session | None:
        """The session in memory whose Responses provider gave its response the id ``rid``."""
        sessions = self.gateway.sessions
        for session in (*sessions.live.values(), *sessions.recent.values()):
            spec = session.spec
            if spec.endpoint == ENDPOINT and spec.passthrough and session.acc.response_id == rid:
                return session
        return None

    async def _stored_events(self, session_id: str) -> list[ev.Event | None]:
        stored = await self.gateway.store.get_events(session_id)
        return [ev.from_payload(kind, orjson.loads(data)) for _, kind, data in stored]


def _live(session: Session) -> _Found:
    spec = session.spec
    passthrough = spec.passthrough
    own = response_id(session.id)
    return _Found(
        session_id=session.id,
        session=session,
        record=None,
        id=(passthrough and session.acc.response_id) or own,
        model=spec.turn.model,
        created_at=int(session.created_at),
        passthrough=passthrough,
    )


def _presenter(found: _Found, after: int) -> Presenter:
    """How a client sees a session's log in Responses frames, those after ``after`` only."""
    session = found.session
    assert session is not None
    if found.passthrough:
        own = response_id(session.id)
        return ResponsesPassthroughPresenter(session.log.entries, own, found.model, after)
    encoder = ResponsesStreamEncoder(
        found.id, found.model, created_at=found.created_at, starting_after=after
    )
    return TranslatingPresenter(encoder)


def _live_response(found: _Found) -> dict[str, Any]:
    """The response object of a session in memory, as it stands."""
    session = found.session
    assert session is not None
    entries = session.log.entries
    if found.passthrough:
        ending = _own_ending(session)
        return UpstreamFrames(entries).response(ending, response_id(session.id), found.model)
    events = (event for event, _ in entries)
    return replayed(events, found.id, found.model, found.created_at).response()


def _own_ending(session: Session) -> ev.Error | None:
    """The error with which Sluice itself ended a relayed session, if it did."""
    for event, raw in reversed(session.log.entries):
        if event is not None and type(event) in ev.TERMINAL:
            return event if type(event) is ev.Error and not raw else None
    return None


def _last_frame(found: _Found) -> int:
    """The number of the last frame a client of this session can have had so far."""
    session = found.session
    assert session is not None
    if found.passthrough:
        presenter = _presenter(found, -1)
        rendered = b"".join(
            presenter.render(seq, event, raw)
            for seq, (event, raw) in enumerate(list(session.log.entries), 1)
        )
        return last_number(rendered)
    events = (event for event, _ in session.log.entries)
    return replayed(events, found.id, found.model, found.created_at).frames - 1


def _check_within(after: int, last: int, rid: str) -> None:
    if after > last:
        raise ResumeBeyondLog(
            f"sequence number {after} is beyond the last event of response {rid} ({last}); "
            "resume after a sequence_number this response sent"
        )
