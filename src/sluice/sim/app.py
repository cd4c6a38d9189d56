"""The simulator's ASGI application: routing, the provider endpoints' play loop, and the record API.

The provider endpoints are hand-written ASGI so that every ``send`` can be timed (a write that
waits for a client that isn't reading is *blocked*) and so that a sibling task can watch
``receive()`` for ``http.disconnect`` and stop the generation at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs

import orjson

from sluice.sim.formats import GEMINI, ErrorKind, Exchange, Target, WireFormat, route
from sluice.sim.formats.base import estimate_tokens
from sluice.sim.formats.gemini import BEARER_REFUSED
from sluice.sim.recorder import Recorder, RequestRecord
from sluice.sim.scenarios import FAILURES, Scenario, lookup, prompt_digest, script
from sluice.sim.script import ConnectionReset, Event, Step, Transcript
from sluice.sim.settings import InvalidParameter, SimSettings, resolve_params
from sluice.sim.types import Message, Receive, Scope, Send

Headers = list[tuple[bytes, bytes]]
Emit = Callable[[tuple[Event, ...]], Awaitable[None]]

SESSION_HEADER = "x-sluice-session-id"
SCENARIO_HEADER = "x-sim-scenario"
REQUEST_ID_HEADER = b"x-sim-request-id"


class SimulatedReset(Exception):
    """Raised on purpose after the response started, so the server drops the connection.

    The server (uvicorn) logs it and closes the transport without the chunked terminator: the
    client reads every byte sent so far, then an end of stream in the middle of the body.
    """


class ClientGone(Exception):
    """The client went away: a disconnect before the body was read, or a failed ``send``."""


class _Rejected(Exception):
    """The request is answered with an error status before any script plays."""

    def __init__(self, kind: ErrorKind, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after


def route_path(scope: Scope) -> str:
    """The path relative to the app, standalone or mounted.

    Starlette's ``Mount`` (1.x) keeps the full path in ``scope["path"]`` and puts the mount
    prefix in ``root_path``; so does uvicorn with ``--root-path``. Servers that follow the
    older reading of the ASGI spec give a path without the prefix: both work.
    """
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        path = path[len(root) :]
    return path or "/"


def header_map(scope: Scope) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }


async def read_body(receive: Receive, limit: int) -> bytes:
    """The request's body; ``_Rejected`` (413) as soon as more than ``limit`` bytes of it
    are read: the rest is never read."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large(limit: int) -> _Rejected:
    return _Rejected("request_too_large", f"request body is over the limit of {limit} bytes")


async def wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def run_until_disconnect(work: Coroutine[Any, Any, None], receive: Receive) -> bool:
    """Run ``work`` beside a watcher of ``receive``; the first to finish cancels the other.

    Returns True when ``work`` finished (its exception, if any, propagates) and False when the
    client disconnected first. Both tasks are always done when this returns or raises.
    """
    worker = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        await asyncio.wait((worker, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (worker, watcher):
            task.cancel()
        await asyncio.wait((worker, watcher))
        if not watcher.cancelled():
            watcher.exception()  # retrieved: an error of receive() is of no interest here
    if worker.cancelled():
        return False
    worker.result()
    return True


class TimedSend:
    """The ``send`` of one provider response: every write is timed and counted in the record.

    A write that takes longer than the record's threshold waited for the socket to drain
    (uvicorn's ``send`` awaits the transport when the client isn't reading): it counts as
    blocked. An ``OSError`` from ``send`` means the client is gone.
    """

    __slots__ = ("_record", "_send")

    def __init__(self, send: Send, record: RequestRecord) -> None:
        self._send = send
        self._record = record

    async def __call__(self, message: Message) -> None:
        self._record.write_started()
        try:
            await self._send(message)
        except OSError as exc:
            raise ClientGone from exc
        finally:
            self._record.write_ended(time.time())

    async def start(self, status: int, headers: Headers) -> None:
        self._record.status = status
        await self({"type": "http.response.start", "status": status, "headers": headers})

    async def body(self, data: bytes, *, more: bool) -> None:
        await self({"type": "http.response.body", "body": data, "more_body": more})


async def play(steps: Iterable[Step], transcript: Transcript, emit: Emit) -> None:
    """Play a script in time: wait each step's delay, fold its events, hand them to ``emit``.

    Delays are kept against a schedule, so time lost in a slow write is caught up afterwards
    (tokens produced meanwhile go out together), as a real server's backlog would. Every step
    yields to the loop, so a disconnect is noticed within one step even at very high rates.
    """
    loop = asyncio.get_running_loop()
    due = loop.time()
    for step in steps:
        due += step.delay
        await asyncio.sleep(max(0.0, due - loop.time()))
        for event in step.events:
            transcript.observe(event)
        await emit(step.events)


async def _discard(events: tuple[Event, ...]) -> None:
    return None


class SimApp:
    """The provider simulator as an ASGI app; ``recorder`` holds the record of every request."""

    def __init__(self, settings: SimSettings | None = None) -> None:
        self.settings = settings or SimSettings()
        self.recorder = Recorder(self.settings.max_records)
        self._nonce = secrets.token_hex(4)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match scope["type"]:
            case "http":
                await self._http(scope, receive, send)
            case "lifespan":
                await _lifespan(receive, send)
            case "websocket":
                await send({"type": "websocket.close", "code": 1000})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope)
        method: str = scope["method"]
        request_id = self.recorder.new_id()
        target = route(path)
        if target is not None:
            if method != "POST":
                await _send_json(send, 405, {"error": "use POST"}, request_id, allow=b"POST")
                return
            await self._provider(target, scope, receive, send, request_id)
            return
        if path != "/healthz" and path != "/requests" and not path.startswith("/requests/"):
            await _send_json(send, 404, {"error": f"no route {path}"}, request_id)
        elif method not in ("GET", "HEAD"):
            await _send_json(send, 405, {"error": "use GET"}, request_id, allow=b"GET")
        elif path == "/healthz":
            await _send_json(send, 200, {"status": "ok", "records": len(self.recorder)}, request_id)
        elif path == "/requests":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            session = query.get("session", [None])[-1]
            records = [record.to_json() for record in self.recorder.records(session)]
            await _send_json(send, 200, records, request_id)
        else:
            record = self.recorder.get(path.removeprefix("/requests/"))
            if record is None:
                await _send_json(send, 404, {"error": "no such record"}, request_id)
            else:
                await _send_json(send, 200, record.to_json(), request_id)

    async def _provider(
        self, target: Target, scope: Scope, receive: Receive, send: Send, request_id: str
    ) -> None:
        wire = target.wire
        headers = header_map(scope)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        record = self.recorder.open(
            request_id,
            format=wire.name,
            session=headers.get(SESSION_HEADER),
            at=time.time(),
            write_block_threshold=self.settings.write_block_threshold,
        )
        record.auth = _credential(headers, query)
        record.traceparent = headers.get("traceparent")
        out = TimedSend(send, record)
        try:
            await self._answer(target, headers, query, receive, out, record)
        except ClientGone:
            now = time.time()
            record.disconnected(now)
            record.close("client_disconnected", now)
        except _Rejected as rejected:
            reply = wire.error(rejected.kind, rejected.message)
            extra: Headers = []
            if rejected.retry_after is not None:
                extra.append((b"retry-after", str(rejected.retry_after).encode()))
            if rejected.kind == "request_too_large":  # the rest of the body is not read
                extra.append((b"connection", b"close"))
            await _send_error(out, wire, record, reply.status, reply.body, extra)
            record.close("failed", time.time())
        finally:
            # Reached with the record still running only by an exception (a reset included).
            record.close("failed", time.time())

    async def _answer(
        self,
        target: Target,
        headers: Mapping[str, str],
        query: Mapping[str, list[str]],
        receive: Receive,
        out: TimedSend,
        record: RequestRecord,
    ) -> None:
        wire = target.wire
        if wire is GEMINI:
            _check_gemini(target, record.auth, query)
        limit = self.settings.max_body_bytes
        declared = headers.get("content-length", "")
        if (
            declared.isascii()
            and declared.isdigit()
            and (len(declared) > 18 or int(declared) > limit)
        ):
            raise _too_large(limit)  # refused before a byte of the body is read
        body = _parse_body(await read_body(receive, limit))
        model = body.get("model") if target.model is None else target.model
        if not isinstance(model, str) or not model:
            raise _Rejected("invalid_request", "model: field required")
        record.model = model
        record.stream = body.get("stream") is True if target.stream is None else target.stream
        scenario = _scenario(model, headers.get(SCENARIO_HEADER))
        record.scenario = scenario.value
        try:
            params = resolve_params(
                self.settings, headers, slow_start=scenario is Scenario.SLOW_START
            )
            max_tokens = wire.max_tokens(body)
        except (InvalidParameter, ValueError) as exc:
            raise _Rejected("invalid_request", str(exc)) from exc
        prompt = wire.prompt(body)
        record.input_tokens = estimate_tokens(prompt)

        plays = scenario
        if scenario in FAILURES:
            record.attempt = self.recorder.next_attempt(record.session)
            if params.fail_count is None or record.attempt <= params.fail_count:
                record.fault = scenario.value
            else:
                plays = Scenario.SUPPORT
        if record.fault == Scenario.RATE_LIMIT:
            message = "Rate limit reached for requests (simulated)."
            raise _Rejected("rate_limit", message, retry_after=params.retry_after)
        if record.fault == Scenario.OVERLOADED:
            raise _Rejected("overloaded", "Overloaded")
        conversation = None
        if plays is Scenario.AGENT:
            try:
                conversation = wire.conversation(body)
            except ValueError as exc:
                raise _Rejected("invalid_request", str(exc)) from exc

        exchange = Exchange(
            request_id=record.id,
            uid=_uid(self._nonce, record.id),
            model=model,
            created=int(record.started_at),
            input_tokens=record.input_tokens,
            body=body,
        )
        steps = script(
            plays,
            params,
            digest=prompt_digest(model, prompt),
            max_tokens=max_tokens,
            prompt=prompt,
            conversation=conversation,
        )
        if record.stream:
            await self._stream(wire, exchange, steps, receive, out, record)
        else:
            await self._complete(wire, exchange, steps, receive, out, record)

    async def _stream(
        self,
        wire: WireFormat,
        exchange: Exchange,
        steps: Iterable[Step],
        receive: Receive,
        out: TimedSend,
        record: RequestRecord,
    ) -> None:
        headers = _headers(wire, record.id, b"text/event-stream; charset=utf-8")
        headers.append((b"cache-control", b"no-cache"))
        await out.start(200, headers)
        encoder = wire.stream(exchange, record.transcript)

        async def emit(events: tuple[Event, ...]) -> None:
            if events and isinstance(events[0], ConnectionReset):
                raise SimulatedReset(f"{record.id}: connection reset (simulated)")
            data = b"".join([encoder.encode(event) for event in events])
            if data:
                await out.body(data, more=True)
            if record.first_token_at is None and record.transcript.tokens:
                record.first_token_at = time.time()

        if not await run_until_disconnect(play(steps, record.transcript, emit), receive):
            raise ClientGone
        await out.body(b"", more=False)
        finished = record.transcript.ending == "finished"
        record.close("completed" if finished else "failed", time.time())

    async def _complete(
        self,
        wire: WireFormat,
        exchange: Exchange,
        steps: Iterable[Step],
        receive: Receive,
        out: TimedSend,
        record: RequestRecord,
    ) -> None:
        """A non-streaming answer: the script plays in time, then one JSON body.

        Faults become: an error status (in-stream error), a body cut off by a dropped
        connection (reset), a cleanly ended half body (truncated), invalid JSON (malformed).
        """
        transcript = record.transcript
        if not await run_until_disconnect(play(steps, transcript, _discard), receive):
            raise ClientGone
        if transcript.ending == "error":
            raise _Rejected(*wire.stream_error)
        payload = wire.render(exchange, transcript)
        headers = _headers(wire, record.id, b"application/json")
        match transcript.ending:
            case "reset":
                headers.append((b"content-length", str(len(payload)).encode()))
                await out.start(200, headers)
                await out.body(payload[: len(payload) // 2], more=True)
                raise SimulatedReset(f"{record.id}: connection reset (simulated)")
            case "finished":
                if transcript.malformed_frames:
                    payload = payload.replace(b'":', b'" ', 1)
            case _:
                payload = payload[: len(payload) // 2]
        headers.append((b"content-length", str(len(payload)).encode()))
        await out.start(200, headers)
        await out.body(payload, more=False)
        finished = transcript.ending == "finished" and not transcript.malformed_frames
        record.close("completed" if finished else "failed", time.time())


def _credential(headers: Mapping[str, str], query: Mapping[str, list[str]]) -> str | None:
    """Where the request carried a credential (the header's name, or ``?key=``); never the
    credential itself."""
    for name in ("x-goog-api-key", "x-api-key", "authorization"):
        if headers.get(name):
            return name
    return "?key=" if query.get("key") else None


def _check_gemini(target: Target, auth: str | None, query: Mapping[str, list[str]]) -> None:
    """What Google refuses before reading a Gemini request: an API key sent as an OAuth
    bearer token, and a stream asked for without ``alt=sse`` (the simulator does not write
    the JSON-array form)."""
    if auth == "authorization":
        raise _Rejected("authentication", BEARER_REFUSED)
    if target.stream and query.get("alt", [""])[-1] != "sse":
        raise _Rejected(
            "invalid_request", "the simulator streams Gemini only as server-sent events: alt=sse"
        )


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _Rejected("invalid_request", "request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise _Rejected("invalid_request", "request body must be a JSON object")
    return body


def _scenario(model: str, override: str | None) -> Scenario:
    if override is not None:
        scenario = lookup(override)
        if scenario is None:
            raise _Rejected("invalid_request", f"{SCENARIO_HEADER}: unknown scenario {override!r}")
        return scenario
    scenario = lookup(model)
    if scenario is None:
        raise _Rejected(
            "model_not_found",
            f"The model `{model}` does not exist or you do not have access to it.",
        )
    return scenario


def _uid(nonce: str, request_id: str) -> str:
    return hashlib.blake2b(f"{nonce}:{request_id}".encode(), digest_size=16).hexdigest()


def _headers(wire: WireFormat, request_id: str, content_type: bytes) -> Headers:
    return [
        (b"content-type", content_type),
        (REQUEST_ID_HEADER, request_id.encode()),
        (wire.request_id_header.encode(), f"req_{request_id}".encode()),
    ]


async def _send_error(
    out: TimedSend,
    wire: WireFormat,
    record: RequestRecord,
    status: int,
    body: bytes,
    extra: Headers,
) -> None:
    headers = _headers(wire, record.id, b"application/json")
    headers.append((b"content-length", str(len(body)).encode()))
    headers.extend(extra)
    await out.start(status, headers)
    await out.body(body, more=False)


async def _send_json(
    send: Send, status: int, payload: Any, request_id: str, *, allow: bytes | None = None
) -> None:
    body = orjson.dumps(payload)
    headers: Headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (REQUEST_ID_HEADER, request_id.encode()),
    ]
    if allow is not None:
        headers.append((b"allow", allow))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
