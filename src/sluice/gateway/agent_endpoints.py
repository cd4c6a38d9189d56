"""The agents' endpoints: start a run, continue a conversation, list the agents.

    GET  /api/agents                           the agents this caller may run
    POST /api/agents/{name}/runs               a run: ``prompt`` or ``messages``, and an
                                               optional ``conversation_id``
    POST /api/conversations/{id}/turns         the conversation's next turn: ``prompt`` (its
                                               agent, or ``agent``/``model`` to choose)
    GET  /api/conversations/{id}               the conversation: its messages and runs
    POST /ag-ui/agents/{name}                  a run in AG-UI: ``RunAgentInput`` in, its
                                               events streamed (``agui``)
    POST /api/agents/{name}/ui                 a run for the AI SDK's ``useChat``: the chat
                                               transport's request in, the UI message stream
                                               out (``uimessages``)
    GET  /api/agents/{name}/ui/{chat_id}/stream   the chat's run under way, streamed again
                                               from its start (204: none)

A run answers as ``POST /api/sessions`` does (its id, or the native stream at once with
``Accept: text/event-stream``); the session's endpoints (events, cancel, retry, WebSocket)
serve it. The front ends' formats start their runs with ``start_run`` too, the client's
thread or chat id as the conversation's.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sluice import events as ev
from sluice.access.control import ANONYMOUS, Principal
from sluice.agents.declare import AgentTools
from sluice.agents.run import AgentRun
from sluice.agents.tools import ToolError
from sluice.config import AgentConfig
from sluice.errors import BadRequest, Forbidden, RequestError, SluiceError
from sluice.gateway import agui, uimessages
from sluice.gateway.guard import PRINCIPAL
from sluice.gateway.presenters import NativePresenter
from sluice.gateway.responses import JSONResponse
from sluice.gateway.streaming import SessionStream
from sluice.providers import build_body
from sluice.session.session import TERMINAL_STATES, Session, SessionDeps, SessionSpec
from sluice.wire.requests import parse_native_request

if TYPE_CHECKING:
    from sluice.gateway.app import Gateway

#: A conversation's id, given by the gateway or chosen by the client (an AG-UI thread's id, a
#: chat's id): it goes into URLs and the store's keys.
CONVERSATION_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


class UnknownAgent(RequestError):
    type = "unknown_agent"
    status = 404


class UnknownConversation(RequestError):
    type = "unknown_conversation"
    status = 404


class ConversationBusy(RequestError):
    type = "conversation_busy"
    status = 409


class ConversationNotKept(RequestError):
    type = "conversation_not_kept"
    status = 409


class ToolsUnavailable(SluiceError):
    type = "tool_unavailable"
    status = 503


def new_conversation_id() -> str:
    return "cv-" + secrets.token_hex(8)


class AgentEndpoints:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.agents = gateway.settings.agents
        #: the run under way of each conversation in this process: one at a time (kept from
        #: a run's start to its end, ``run_started`` and ``run_ended``)
        self._running: dict[str, Session] = {}

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/agents", self.list_agents, methods=["GET"]),
            Route("/api/agents/{name}/runs", self.create_run, methods=["POST"]),
            Route("/api/conversations/{conversation_id}", self.get_conversation, methods=["GET"]),
            Route(
                "/api/conversations/{conversation_id}/turns",
                self.conversation_turn,
                methods=["POST"],
            ),
            Route("/ag-ui/agents/{name}", self.agui_run, methods=["POST"]),
            Route("/api/agents/{name}/ui", self.ui_run, methods=["POST"]),
            Route("/api/agents/{name}/ui/{chat_id}/stream", self.ui_resume, methods=["GET"]),
        ]

    # -- endpoints ----------------------------------------------------------------------------

    async def list_agents(self, request: Request) -> Response:
        return JSONResponse({"agents": self.offered(_principal(request))})

    def offered(self, principal: Principal) -> list[dict[str, Any]]:
        """The agents ``principal`` may run (those whose model its key allows)."""
        keys = self.gateway.keys
        listed = []
        for agent in self.agents.values():
            try:
                keys.check_model(principal, agent.model)
            except SluiceError:
                continue
            listed.append(
                {
                    "name": agent.name,
                    "model": agent.model,
                    "tools": list(agent.tools),
                    "max_steps": agent.max_steps,
                }
            )
        return listed

    async def create_run(self, request: Request) -> Response:
        gateway = self.gateway
        try:
            agent = self.agent(request.path_params["name"])
            body = await gateway.read_json(request)
            conversation_id = body.get("conversation_id")
            if conversation_id is not None and not isinstance(conversation_id, str):
                raise BadRequest("'conversation_id' must be a string")
            run = await self.start_run(request, agent, body, conversation_id)
        except SluiceError as exc:
            return gateway.reject("native", "agents", exc)
        return self._answer(request, run)

    async def conversation_turn(self, request: Request) -> Response:
        gateway = self.gateway
        conversation_id = request.path_params["conversation_id"]
        try:
            body = await gateway.read_json(request)
            if "messages" in body:
                raise BadRequest(
                    "a conversation's turn takes a 'prompt'; its history is the gateway's"
                )
            if not isinstance(body.get("prompt"), str):
                raise BadRequest("'prompt' must be a string")
            stored = await self._conversation(request, conversation_id)
            name = body.get("agent")
            model = body.get("model")
            if name is not None:
                agent = self.agent(str(name))
            elif model is not None:
                agent = model_agent(str(model))
            elif stored is not None and stored.get("agent"):
                agent = self.agent(str(stored["agent"]))
            elif stored is not None:
                agent = model_agent(str(stored["model"]))
            else:
                raise BadRequest("a new conversation's first turn names its 'agent' or 'model'")
            run = await self.start_run(request, agent, body, conversation_id)
        except SluiceError as exc:
            return gateway.reject("native", "conversations", exc)
        return self._answer(request, run)

    async def get_conversation(self, request: Request) -> Response:
        try:
            stored = await self._conversation(request, request.path_params["conversation_id"])
            if stored is None:
                raise UnknownConversation("no such conversation")
        except SluiceError as exc:
            return self.gateway.reject("native", "conversations", exc)
        return JSONResponse(stored)

    # -- the front ends' formats --------------------------------------------------------------

    async def agui_run(self, request: Request) -> Response:
        """An AG-UI run: the thread's messages, as the client sends them all, and its id as
        the conversation's; the run's events in AG-UI (``forwardedProps.disconnect_policy``
        may choose what a client that leaves does to the run)."""
        gateway = self.gateway
        try:
            agent = self.agent(request.path_params["name"])
            body = await gateway.read_json(request)
            thread_id, run_id, messages = agui.run_input(body)
            _check_id(thread_id, "threadId")
            run_body: dict[str, Any] = {"messages": messages}
            props = body.get("forwardedProps")
            if isinstance(props, dict) and "disconnect_policy" in props:
                run_body["disconnect_policy"] = props["disconnect_policy"]
            run = await self.start_run(request, agent, run_body, thread_id)
        except SluiceError as exc:
            return gateway.reject("native", "agents", exc)
        presenter = agui.AGUIPresenter(thread_id, run_id, run.id)
        return SessionStream(run, presenter, extra_headers=_conversation_header(run))  # type: ignore[return-value]

    async def ui_run(self, request: Request) -> Response:
        """A run for ``useChat``: the chat's messages, as the transport sends them all, and
        its id as the conversation's; the run as the UI message stream (a ``disconnect_policy``
        beside them, which the transport's ``body`` option adds, is the run's)."""
        gateway = self.gateway
        try:
            agent = self.agent(request.path_params["name"])
            body = await gateway.read_json(request)
            chat_id, messages = uimessages.chat_request(body)
            _check_id(chat_id, "id")
            run_body: dict[str, Any] = {"messages": messages}
            if "disconnect_policy" in body:
                run_body["disconnect_policy"] = body["disconnect_policy"]
            run = await self.start_run(request, agent, run_body, chat_id)
        except SluiceError as exc:
            return gateway.reject("native", "agents", exc)
        return self._ui_stream(run, 0)

    async def ui_resume(self, request: Request) -> Response:
        """The chat's run under way, as the UI message stream from its start (its latest
        attempt's, after a Retry); 204 when the chat has none (the AI SDK's resume)."""
        try:
            agent = self.agent(request.path_params["name"])
        except SluiceError as exc:
            return self.gateway.reject("native", "agents", exc)
        run = self._running.get(request.path_params["chat_id"])
        if (
            run is None
            or not isinstance(run, AgentRun)
            or run.state in TERMINAL_STATES
            or run.agent.name != agent.name
            or run.spec.tenant != _principal(request).tenant
        ):
            return Response(status_code=204)
        entries = run.log.entries
        after = next(
            (i + 1 for i in range(len(entries) - 1, -1, -1) if type(entries[i][0]) is ev.Retry),
            0,
        )
        return self._ui_stream(run, after)

    def _ui_stream(self, run: AgentRun, after: int) -> Response:
        headers = (uimessages.STREAM_HEADER, *_conversation_header(run))
        presenter = uimessages.UIMessagePresenter(run.id)
        return SessionStream(run, presenter, after, extra_headers=headers)  # type: ignore[return-value]

    # -- runs ---------------------------------------------------------------------------------

    def agent(self, name: str) -> AgentConfig:
        agent = self.agents.get(name)
        if agent is None:
            raise UnknownAgent(f"no agent {name!r} is configured")
        return agent

    async def start_run(
        self,
        request: Request,
        agent: AgentConfig,
        body: dict[str, Any],
        conversation_id: str | None,
        default_policy: str | None = None,
    ) -> AgentRun:
        """Start a run of ``agent`` for ``body`` (``prompt`` or ``messages``): a turn of the
        conversation ``conversation_id`` (created if new), or of a new one."""
        gateway = self.gateway
        principal = _principal(request)
        if not principal.may_start:
            raise Forbidden("this credential may not start sessions")
        keep = gateway.settings.keep_content
        if conversation_id is not None and CONVERSATION_ID.fullmatch(conversation_id) is None:
            raise BadRequest("'conversation_id' must be 1 to 128 letters, digits, or . _ : -")
        stored = None
        if conversation_id is not None:
            stored = await self._conversation(request, conversation_id)
            running = self._running.get(conversation_id)
            if running is not None and running.state not in TERMINAL_STATES:
                raise ConversationBusy(
                    f"conversation {conversation_id} has a run under way ({running.id})"
                )
        messages = body.get("messages")
        prompt = body.get("prompt")
        if messages is None:
            if not isinstance(prompt, str) or not prompt:
                raise BadRequest("send a non-empty 'prompt' or 'messages'")
            if stored is None and conversation_id is not None and not keep:
                raise ConversationNotKept(
                    "conversations are not kept here (store.keep_content = false): send the "
                    "whole conversation as 'messages'"
                )
            history = stored["messages"] if stored is not None else []
            messages = [*history, {"role": "user", "content": prompt}]
        turn = parse_native_request(
            {
                "model": agent.model,
                "messages": messages,
                **{k: body[k] for k in ("max_tokens", "temperature") if k in body},
            }
        )
        turn.model = agent.model
        turn.system = "\n\n".join(s for s in (agent.system, turn.system) if s) or None
        try:
            tools = AgentTools(await gateway.toolbox.tools(agent.tools))
        except ToolError as exc:
            raise ToolsUnavailable(f"the agent's tools are unavailable: {exc.message}") from exc
        turn.tools = tools.specs()
        conversation = None
        if keep:
            now = time.time()
            conversation = stored or {
                "id": conversation_id or new_conversation_id(),
                "tenant": principal.tenant,
                "agent": agent.name or None,
                "model": agent.model,
                "messages": [],
                "sessions": [],
                "created_at": now,
            }
            conversation = conversation | {
                "agent": agent.name or None,
                "model": agent.model,
                "messages": messages,
                "updated_at": now,
            }

        def make(session_id: str, spec: SessionSpec, deps: SessionDeps) -> AgentRun:
            route = spec.route
            return AgentRun(
                session_id,
                spec,
                deps,
                agent=agent,
                tools=tools,
                build=lambda t: build_body(route, t, None),
                conversation=conversation,
            )

        session = await gateway.start_session(
            request, turn, body, "agent", None, default_policy, make
        )
        assert isinstance(session, AgentRun)
        if session.conversation_id is not None:
            assert session.conversation is not None
            session.conversation["sessions"] = [*session.conversation["sessions"], session.id]
            await gateway.store.put_conversation(session.conversation)
        return session

    def run_started(self, session: Session) -> None:
        """A session began (or began again, retried): a run is its conversation's current."""
        if isinstance(session, AgentRun) and session.conversation_id is not None:
            self._running[session.conversation_id] = session

    def run_ended(self, session: Session) -> None:
        conversation = getattr(session, "conversation_id", None)
        if conversation is not None and self._running.get(conversation) is session:
            del self._running[conversation]

    def _answer(self, request: Request, run: AgentRun) -> Response:
        headers = {"x-sluice-session-id": run.id}
        if run.conversation_id is not None:
            headers["x-sluice-conversation-id"] = run.conversation_id
        if "text/event-stream" in request.headers.get("accept", ""):
            stream = SessionStream(run, NativePresenter(), extra_headers=_conversation_header(run))
            return stream  # type: ignore[return-value]
        return JSONResponse(
            {
                "id": run.id,
                "state": run.state,
                "agent": run.agent.name or None,
                "conversation_id": run.conversation_id,
                "events_url": f"/api/sessions/{run.id}/events",
                "record_url": f"/api/sessions/{run.id}",
            },
            status_code=201,
            headers=headers | {"location": f"/api/sessions/{run.id}"},
        )

    async def _conversation(self, request: Request, conversation_id: str) -> dict[str, Any] | None:
        """The stored conversation, if the caller's tenant owns it (another's is unknown)."""
        if CONVERSATION_ID.fullmatch(conversation_id) is None:
            raise UnknownConversation("no such conversation")
        stored: dict[str, Any] | None
        stored = await self.gateway.store.get_conversation(conversation_id)
        if stored is None:
            return None
        if stored.get("tenant") != _principal(request).tenant:
            raise UnknownConversation("no such conversation")
        return stored


def model_agent(model: str) -> AgentConfig:
    """A plain model's turn of a conversation, run as an agent with no tools and one step."""
    return AgentConfig(name="", model=model, max_steps=1)


def _check_id(conversation_id: str, field: str) -> None:
    if CONVERSATION_ID.fullmatch(conversation_id) is None:
        raise BadRequest(f"{field!r} must be 1 to 128 letters, digits, or . _ : -")


def _conversation_header(run: AgentRun) -> tuple[tuple[bytes, bytes], ...]:
    if run.conversation_id is None:
        return ()
    return ((b"x-sluice-conversation-id", run.conversation_id.encode()),)


def _principal(request: Request) -> Principal:
    principal: Principal = request.scope.get(PRINCIPAL, ANONYMOUS)
    return principal
