"""One session: a turn relayed from one upstream, from request to final record.

Lifecycle (see docs/architecture.md)::

    starting ──► streaming ──► finalizing ──► complete | errored | cancelled
        └──────────────────────────────┘ (an upstream error before the first byte, or Stop)

The pump (``run``) is the only writer: it opens the upstream and hands it a callback that,
for each body chunk as the socket delivers it, decodes it, folds it through the wire adapter
into normalised events, feeds the accumulator and the clock, and appends to the event log;
the pump's task itself only waits for the body's end. Readers (HTTP connections, the
operations center) follow the log. Sessions know nothing of HTTP serving.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sluice import events as ev
from sluice.config import StreamSettings
from sluice.errors import SluiceError, UpstreamError, UpstreamStatus, UpstreamTooLarge
from sluice.logs import CORRELATION_ID, SESSION_ID, kv
from sluice.pricing import PriceBook
from sluice.providers import Route
from sluice.redact import ProviderKeys, Redactor, scan
from sluice.session.eventlog import EventLog
from sluice.session.flag import Flag
from sluice.session.store import NewEvent, SessionStore
from sluice.session.telemetry import StreamClock
from sluice.sse import FrameTooLarge, SSEDecoder
from sluice.turn import TurnAccumulator, TurnRequest, answer_of
from sluice.upstream import Pending, Upstream, UpstreamStream
from sluice.wire import formats

log = logging.getLogger("sluice.session")


class SessionNotRetryable(SluiceError):
    type = "not_retryable"
    status = 409


STARTING, STREAMING, FINALIZING = "starting", "streaming", "finalizing"
COMPLETE, ERRORED, CANCELLED = "complete", "errored", "cancelled"
#: the state of a record whose gateway process died while relaying it, given when the next
#: one starts (``sluice.session.recovery``): a session in memory never has it
INTERRUPTED = "interrupted"
TERMINAL_STATES = (COMPLETE, ERRORED, CANCELLED, INTERRUPTED)


@dataclass(slots=True)
class SessionSpec:
    """Everything a session needs to start, decided by the endpoint that created it."""

    route: Route
    turn: TurnRequest
    body: bytes
    url: str
    headers: dict[str, str]
    #: the wire format of the client that opened the session ("chat", "messages"...), or
    #: "native"
    endpoint: str
    #: whether that client receives the upstream's bytes unchanged
    passthrough: bool
    disconnect_policy: str
    #: what the per-key ceilings count this session against: the client key's name when
    #: auth is on, else the client's address (never a key)
    admission_key: str | None = None
    #: the tenant that owns the session (None while auth is off): only its keys see it
    tenant: str | None = None
    #: the name of the client key that started it, whose spend its cost is counted in
    api_key: str | None = None
    #: the cost already counted in that key's spend (a retried session's next end adds
    #: only what the new attempt cost)
    billed: float = 0.0
    #: what another process needs to run this turn again should this one die (set where
    #: processes share a bus and the turn may be retried whole)
    handover: bytes | None = None
    #: the client's W3C trace context (``traceparent``, ``tracestate``), read only while
    #: tracing is on (docs/observability.md)
    trace_context: dict[str, str] | None = None
    #: the correlation id of the request that started it (a client's ``X-Request-Id``), on
    #: its log lines and its span
    correlation_id: str | None = None


class SessionObserver(Protocol):
    """What a session tells as it goes: the manager implements it (and passes each to the
    metrics, the operations feed, its own books and its observers: tracing). Nothing is told
    per chunk."""

    def on_state(self, session: Session) -> None:
        """The session's state changed."""

    def on_attempt(self, session: Session) -> None:
        """An upstream request is about to go out (the first, a retry of a refusal, a
        whole-turn retry, an agent's next model call): ``session.spec.headers`` are read
        after this call, so an observer may add to them (a tracer's ``traceparent``)."""

    def on_attempt_end(self, session: Session, error: UpstreamError | ev.Error | None) -> None:
        """That request ended: refused before its stream (``UpstreamError``), its stream
        ended by an error (``ev.Error``), or its stream complete (None). An attempt cut short
        by Stop or a failure of the gateway ends with the session (``on_finished``)."""

    def on_tool_end(self, session: Session, call: dict[str, Any], started: float) -> None:
        """An agent's tool execution ended: its record (``id``, ``name``, ``tool``,
        ``duration``, ``is_error``, ``error``) and when it began (``time.monotonic()``)."""

    def on_first_token(self, session: Session) -> None:
        """An attempt's first answer token is being relayed (in the pump's callback, before
        the token is written: defer anything slow)."""

    async def on_finished(self, session: Session) -> None:
        """The session's record is final and stored."""


@dataclass(slots=True, frozen=True)
class SessionDeps:
    """What a session works with, given to it rather than reached for: where its request
    goes, where its record is kept, what its tokens cost, its settings, the secrets it
    redacts, and who is told of its changes."""

    upstream: Upstream
    store: SessionStore
    prices: PriceBook
    settings: StreamSettings
    redaction: ProviderKeys
    observer: SessionObserver
    #: the process that relays the session, named in its record (the recovery at start
    #: closes the records of processes that are gone)
    node: str = "local"
    #: whether the final record and log keep what was said (``[store] keep_content``)
    keep_content: bool = True


class Reader:
    """One client connection's place in a session's log (the sequence number it has sent)."""

    __slots__ = ("position", "session")

    def __init__(self, session: Session, position: int) -> None:
        self.session = session
        self.position = position

    def advance(self, position: int) -> None:
        self.position = position
        session = self.session
        if session._held_since is not None:  # the upstream is held, maybe for this reader
            session._reader_advanced()


class _Pump:
    """One upstream response's body into its session: bytes → SSE frames → the adapter's
    events → accumulator, clock and log. ``feed`` is called from the connection's read
    callback for each piece, with no task in between; the log's readers are notified once
    the read's last piece is in (the log's ``notify`` is the upstream's ``flush``). A piece
    that is one plain text or reasoning delta (most of them) goes past the decoder and the
    adapter's fold by the adapter's ``quick``, with the same outcome. (An object rather than
    a closure: one small block per open stream instead of a cell for each captured name.)

    Secrets are redacted here, before anything reads the stream: the shortcut refuses a
    delta whose text holds a configured key or a token's shape, and every frame of the
    general path (its data, and its raw bytes, which a passthrough client receives) is
    looked at whole and redacted (``sluice.redact``, docs/security.md)."""

    __slots__ = (
        "adapter",
        "decoder",
        "drop_usage_frame",
        "limit",
        "max_events",
        "session",
        "upstream",
    )

    def __init__(self, session: Session, upstream: UpstreamStream) -> None:
        spec = session.spec
        settings = session.settings
        self.session = session
        self.upstream = upstream
        self.adapter = formats.get(session.route.wire).adapter()
        self.adapter.keys = session.redactor.keys
        self.decoder = SSEDecoder(
            keep_raw=spec.passthrough,
            max_line=settings.max_line_bytes,
            max_event=settings.max_event_bytes,
        )
        # (only a format whose usage comes in a frame of its own, as Chat's does, says so)
        self.drop_usage_frame = spec.passthrough and not spec.turn.include_usage
        self.limit = settings.buffer_events
        self.max_events = settings.max_stream_events

    def feed(self, chunk: bytes) -> None:
        """One piece of the upstream body."""
        now = time.monotonic()
        session, adapter, decoder = self.session, self.adapter, self.decoder
        entries = session.log
        delta = adapter.quick(chunk) if decoder.idle else None
        if delta is not None:
            raw = chunk if decoder.keep_raw else b""
            if type(delta) is ev.TextDelta:
                session._on_answer(delta, raw, now)
            else:
                session._on_events([delta], raw, now)
        else:
            try:
                frames = decoder.frames(chunk)
            except FrameTooLarge as exc:
                raise UpstreamTooLarge(
                    f"{exc} (streams.max_line_bytes, streams.max_event_bytes)"
                ) from None
            keys = session.redactor.keys
            for event, data, raw in frames:
                if scan(raw or data, keys):
                    redactor = session.redactor
                    data, raw = redactor.text(data), redactor.bytes(raw)
                produced = adapter.feed(event, data)
                if self.drop_usage_frame and adapter.last_was_usage_only:
                    raw = b""
                if produced:
                    session._on_events(produced, raw, now)
                elif raw:
                    entries.append(None, raw)
        if adapter.done:
            # the stream's end reaches the clients once the record is durable (``_finish``)
            entries.held = True
            self.upstream.finish()
        else:
            # (the lag counts this read's pieces before the readers have heard of them: a
            # read of more than the buffer holds the next read until they have written it)
            limit = self.limit
            held = len(entries.entries)
            if held > limit:  # (the log's bound is checked only past the buffer's)
                if held > self.max_events:
                    raise UpstreamTooLarge(
                        f"the upstream stream is over {self.max_events:,} events "
                        "(streams.max_stream_events)"
                    )
                if session._held_since is None and session._lag() > limit:
                    session._hold(self.upstream)


def _add_usage(
    earlier: tuple[ev.Usage, str] | None, usage: ev.Usage, source: str
) -> tuple[ev.Usage, str]:
    """Two attempts' usage together; a refused attempt adds nothing, and the sum is an
    estimate if either part is one."""
    if earlier is None or earlier[1] == "refused":
        return usage, source
    if source == "refused":
        return earlier
    before, before_source = earlier
    total = ev.Usage(
        input_tokens=before.input_tokens + usage.input_tokens,
        output_tokens=before.output_tokens + usage.output_tokens,
        cache_read_tokens=before.cache_read_tokens + usage.cache_read_tokens,
        cache_write_tokens=before.cache_write_tokens + usage.cache_write_tokens,
        reasoning_tokens=before.reasoning_tokens + usage.reasoning_tokens,
        final=before.final and usage.final,
    )
    estimated = "estimated" in (before_source, source)
    return total, "estimated" if estimated else "provider"


#: what a record says of the conversation, blanked under ``[store] keep_content = false``
CONTENT_FIELDS = ("prompt_preview", "prompt", "text", "reasoning", "messages")


def without_content(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with nothing of what was said: no prompt, messages, answer, reasoning,
    reasoning tokens, tool arguments or results; their lengths and names are kept."""
    for name in CONTENT_FIELDS:
        if name in record:
            record[name] = [] if name == "messages" else ""
    record["signatures"] = []
    record["tool_calls"] = [
        call | {"arguments": None, "raw_arguments": ""} for call in record.get("tool_calls", ())
    ]
    for step in record.get("steps", ()):
        step["text"] = ""
        step["tool_calls"] = [
            call | {"arguments": None, "result": "", "content": []} for call in step["tool_calls"]
        ]
    return record


class Session:
    #: tens of thousands may be live at once: no instance dict
    __slots__ = (
        "_answering",
        "_earlier_usage",
        "_final_telemetry",
        "_grace",
        "_held_since",
        "_opening",
        "_pending_error",
        "_phase",
        "_running",
        "_stored_initial",
        "_upstream",
        "acc",
        "attempt_errors",
        "attempts",
        "cancel_reason",
        "clock",
        "cost",
        "created_at",
        "deps",
        "disconnects",
        "error",
        "final_usage",
        "finished",
        "id",
        "journaled",
        "log",
        "readers",
        "ready",
        "redactor",
        "route",
        "settings",
        "settled",
        "spec",
        "state",
        "task",
        "updated_at",
        "usage_source",
    )

    def __init__(self, session_id: str, spec: SessionSpec, deps: SessionDeps) -> None:
        self.id = session_id
        self.spec = spec
        self.route = spec.route
        self.deps = deps
        self.created_at = time.time()
        self.updated_at = self.created_at
        self.state = STARTING
        self.log = EventLog()
        self.acc = TurnAccumulator()
        self.clock = StreamClock(time.monotonic())
        self.error: dict[str, Any] | None = None
        self.cancel_reason: str | None = None
        self.attempts = 1
        #: how many of the log's entries the manager has journaled to the store
        self.journaled = 0
        #: client connections currently following this session's log
        self.readers: list[Reader] = []
        #: how readers left early (client_disconnected, client_too_slow), for the record;
        #: a shared ``()`` until there is one (most sessions have none)
        self.disconnects: tuple[dict[str, Any], ...] = ()
        #: errors of earlier attempts (retried before the stream, or whole-turn retries)
        self.attempt_errors: tuple[dict[str, Any], ...] = ()
        self.settings: StreamSettings = deps.settings
        #: what is redacted from the stream, errors and record: the configured keys as they
        #: are now (the one this session's request carries among them) and token shapes
        self.redactor: Redactor = deps.redaction.current()
        #: since when the upstream read is paused for a reader that is too far behind
        self._held_since: float | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._answering = False
        self._phase: str | None = None
        self.task: asyncio.Task[None] | None = None
        #: the task has begun ``run()`` (a task cancelled before that never enters it)
        self._running = False
        self.usage_source = "provider"
        #: what the attempts before this one were billed (a refused one counts for nothing),
        #: and where that figure comes from: it counts in the record's usage and cost
        self._earlier_usage: tuple[ev.Usage, str] | None = None
        #: the usage the record and the cost stand on, fixed at finalisation
        self.final_usage: ev.Usage | None = None
        self._final_telemetry: dict[str, Any] | None = None
        self.cost: dict[str, Any] | None = None
        #: resolved once the upstream accepted the request (or failed before streaming)
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: set once the record's values are final (usage, cost, telemetry): what a client's
        #: last frame or a non-streaming answer needs; the store write may still be under way
        self.settled = Flag()
        #: set once the record is final and stored
        self.finished = Flag()
        self._upstream: UpstreamStream | None = None
        #: the first attempt's request, sent by ``begin()`` before the task runs
        self._opening: Pending | None = None
        self._pending_error: ev.Error | None = None
        self._stored_initial: asyncio.Future[None] | None = None

    # -- control ------------------------------------------------------------------------------

    def cancel(self, reason: str) -> bool:
        """Stop the session: close the upstream connection at once. False if already over."""
        if self.state in TERMINAL_STATES or self.state == FINALIZING or self.task is None:
            return False
        if self.cancel_reason is None:
            self.cancel_reason = reason
            if self._running:
                self.task.cancel()
            # else the task has not begun: cancelling it would skip ``run()`` and the record;
            # ``run()`` sees the reason as it begins and ends the session at once
        return True

    def take_over(
        self, record: dict[str, Any], stored: list[tuple[int, str, dict[str, Any]]], reason: str
    ) -> None:
        """This session was relayed by a process that died (``reason``): its log so far, as
        stored, becomes this one's (same sequence numbers), and a whole-turn retry begins,
        which ``run`` carries out. Called before the session is launched."""
        entries = self.log.entries
        for seq, kind, data in stored:
            while len(entries) < seq - 1:  # a frame that made no event
                entries.append((None, b""))
            entries.append((ev.from_payload(kind, data), b""))
        self.acc = answer_of(event for event, _ in entries)
        self.journaled = len(entries)
        self.created_at = float(record.get("created_at", self.created_at))
        self.attempts = int(record.get("attempts") or 1)
        self.attempt_errors = tuple(record.get("attempt_errors") or ())
        self._note_attempt_error(reason, "the gateway process relaying it was lost", 0.0)
        self._begin_attempt(reason, 0.0)
        self.clock = StreamClock(time.monotonic())

    def prepare_retry(self) -> None:
        """Make an errored or cancelled session live again for a new attempt (the recover
        button): same id, same log (a ``retry`` event marks the restart), fresh result."""
        if self.state not in (ERRORED, CANCELLED):
            raise SessionNotRetryable(
                f"session {self.id} is {self.state}; only errored or "
                "cancelled sessions can be retried"
            )
        reason = (self.error or {}).get("type") or self.cancel_reason or "recover"
        self.attempt_errors += ({"type": reason, "message": "recovered by request"},)
        self.log.closed = False
        self._begin_attempt(reason, 0.0)
        self.error = None
        self.cancel_reason = None
        self.cost = None
        self.final_usage = None
        self._final_telemetry = None
        self.clock = StreamClock(time.monotonic())
        self.settled = Flag()
        self.finished = Flag()
        self._running = False
        self.state = STARTING

    def _begin_attempt(self, reason: str, delay: float) -> None:
        """A new attempt of the whole turn: a ``retry`` event, and the answer starts afresh.
        What the attempt that ends here was billed is kept for the record's usage."""
        self._carry_usage()
        self.attempts += 1
        self.log.append(ev.Retry(self.attempts, reason, delay))
        self.log.notify()

    def _carry_usage(self) -> None:
        """What the model call that ends here was billed counts in the record's usage; the
        next call's answer is accumulated afresh."""
        self._earlier_usage = _add_usage(self._earlier_usage, *self.attempt_usage())
        self.acc = TurnAccumulator()
        self._answering = False
        self._phase = None

    # -- readers ------------------------------------------------------------------------------

    def attach(self, after: int) -> Reader:
        """A client connection starts following the log after sequence number ``after``."""
        reader = Reader(self, min(after, len(self.log)))
        self.readers.append(reader)
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        return reader

    def detach(self, reader: Reader, reason: str | None) -> None:
        """A reader is done. ``reason`` is None when it read to the end, else why it left
        early; the disconnect policy then decides what happens to the generation."""
        if reader in self.readers:
            self.readers.remove(reader)
        self._reader_advanced()
        if reason is None:
            return
        policy = self.spec.disconnect_policy
        self.disconnects += ({"at": time.time(), "reason": reason, "position": reader.position},)
        log.info(
            "client left %s",
            kv(
                session_id=self.id,
                reason=reason,
                policy=policy,
                state=self.state,
                readers=len(self.readers),
                position=reader.position,
            ),
        )
        if self.readers or self.state in TERMINAL_STATES:
            return
        if policy == "cancel":
            self.cancel(reason)
        elif policy == "detach" and self._grace is None:
            self._grace = asyncio.get_running_loop().call_later(
                self.settings.detach_grace, self._grace_expired
            )

    def _grace_expired(self) -> None:
        self._grace = None
        if not self.readers:
            self.cancel("detach_grace_expired")

    def _reader_advanced(self) -> None:
        """While the upstream is held: reading resumes once every reader is within half the
        buffer."""
        if self._held_since is not None and self._lag() <= self.settings.buffer_events // 2:
            self._unhold()
            if self._upstream is not None:
                self._upstream.resume()

    def _lag(self) -> int:
        """How many entries the furthest-behind reader has still to send (0 without readers).
        The pump asks on every read once a stream is past the buffer's length: one reader,
        the usual case, is read without a generator."""
        readers = self.readers
        if not readers:
            return 0
        if len(readers) == 1:
            return len(self.log.entries) - readers[0].position
        return len(self.log.entries) - min(r.position for r in readers)

    def _hold(self, upstream: UpstreamStream) -> None:
        """Backpressure: a reader is more than the buffer behind (its socket is full), so the
        upstream socket stops being read; TCP flow control takes it to the provider."""
        self._held_since = time.monotonic()
        upstream.pause()

    def _unhold(self) -> None:
        """The hold ends: its length counts as time the stream was blocked."""
        if self._held_since is not None:
            self.clock.blocked += time.monotonic() - self._held_since
            self._held_since = None

    # -- the pump -----------------------------------------------------------------------------

    def begin(self) -> None:
        """Called by the manager as it creates the task, in the caller's step: the request
        goes out now where the upstream can send it at once (a pooled connection), and the
        provider works on it while the loop turns to the task. ``ready`` is resolved in the
        read callback that brings the upstream's headers, so the caller waiting on it resumes
        in the same turn as the task, not a turn after it. Under load a turn of the loop takes
        milliseconds, and a new stream waits for each of the turns on its way to its first
        token (``docs/architecture.md``, "A new stream's way to its first token")."""
        self._opening = self._open()

    def _open(self) -> Pending:
        spec = self.spec
        self.deps.observer.on_attempt(self)
        return self.deps.upstream.open(spec.url, spec.headers, spec.body, accepted=self.ready)

    async def run(self) -> None:
        """Owned by the manager's task; finalisation is shielded so a Stop still ends with a
        stored record."""
        self._running = True
        # every line logged in this task (and the tasks it starts) names the session
        SESSION_ID.set(self.id)
        CORRELATION_ID.set(self.spec.correlation_id)
        if self.cancel_reason is not None:  # stopped before this task began
            opening, self._opening = self._opening, None
            if opening is not None:
                opening.close()
            await asyncio.shield(self._finish(CANCELLED))
            return
        self._stored_initial = asyncio.ensure_future(self.deps.store.put(self.record()))
        self._stored_initial.add_done_callback(self._initial_stored)
        try:
            await self._attempts()
        except asyncio.CancelledError:
            await asyncio.shield(self._finish(CANCELLED))
            raise
        except Exception as exc:  # a bug must still end in a record, never a silent hang
            log.exception("session failed %s", kv(session_id=self.id))
            self.state = FINALIZING  # (its end is decided: a Stop from now on is too late)
            message = self.redactor.text(f"{type(exc).__name__}: {exc}")
            self._end_with(ev.Error("internal_error", message))
            await asyncio.shield(self._finish(ERRORED))
        else:
            # The end is decided before ``_finish`` first runs (a turn of the loop later): a
            # Stop in between is refused, rather than cancelling this task with a reason that
            # a complete or errored record would then carry.
            self.state = FINALIZING
            await asyncio.shield(self._finish(ERRORED if self.error else COMPLETE))

    def _initial_stored(self, stored: asyncio.Future[None]) -> None:
        """Let go of the first write once it succeeded (a failure is kept for ``_finish``
        to report): a long stream should not hold a finished task."""
        if stored is self._stored_initial and not stored.cancelled() and not stored.exception():
            self._stored_initial = None

    async def _attempts(self) -> None:
        """Open the upstream, retrying refusals before the stream; relay; and, where the
        configuration asks, retry the whole turn after a failure mid-stream."""
        settings = self.settings
        self._status("waiting")
        deadline = time.monotonic() + settings.retry_deadline
        refused = 0
        while True:
            opening, self._opening = self._opening or self._open(), None
            try:
                upstream = await opening
            except UpstreamError as exc:
                exc.__traceback__ = None  # (no cycle through this frame: see ``_relay``)
                # the provider's error body, whose message may be its first bytes only
                exc.message = self.redactor.tail(exc.message)
                self.deps.observer.on_attempt_end(self, exc)
                refused += 1
                delay = self._backoff(refused, getattr(exc, "retry_after", None))
                if (
                    exc.retryable
                    and refused < settings.retry_attempts
                    and time.monotonic() + delay < deadline
                ):
                    self._note_attempt_error(exc.type, exc.message, delay)
                    await asyncio.sleep(delay)
                    continue
                self._fail(exc)
                return
            del opening  # not held for the stream's length
            error = await self._relay(upstream)
            self.deps.observer.on_attempt_end(self, error)
            if error is None:
                return
            if not self._may_retry_turn(error):
                self._end_with(error)
                return
            delay = self._backoff(self.attempts, error.detail.get("retry_after"))
            self._note_attempt_error(error.type, error.message, delay)
            self.log.held = False
            self._begin_attempt(error.type, delay)
            await asyncio.sleep(delay)
            refused = 0
            deadline = time.monotonic() + settings.retry_deadline

    def _may_retry_turn(self, error: ev.Error) -> bool:
        settings = self.settings
        return (
            error.retryable
            and settings.mid_stream_failure == "retry"
            and self.spec.endpoint == "native"
            and self.attempts < settings.turn_attempts
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter, never sooner than the provider's retry-after."""
        settings = self.settings
        ceiling = min(settings.retry_max_delay, settings.retry_base_delay * 2 ** (attempt - 1))
        delay = random.uniform(0, ceiling)
        return max(delay, retry_after) if retry_after is not None else delay

    def _note_attempt_error(self, kind: str, message: str, delay: float) -> None:
        message = self.redactor.text(message)
        self.attempt_errors += ({"type": kind, "message": message, "retry_in": delay},)
        log.warning(
            "upstream attempt failed, retrying %s",
            kv(
                session_id=self.id,
                type=kind,
                attempt=len(self.attempt_errors),
                delay_s=round(delay, 3),
                message=message,
            ),
        )

    async def _relay(self, upstream: UpstreamStream) -> ev.Error | None:
        """Relay one upstream response into the log. Returns the terminal error, if any, still
        unlogged: the caller decides between ending with it and retrying the turn."""
        self._upstream = upstream
        if self.clock.upstream_open is None:
            self.clock.upstream_open = time.monotonic()
        self._set_state(STREAMING)
        if not self.ready.done():
            self.ready.set_result(None)
        self._pending_error = None

        pump = _Pump(self, upstream)
        adapter = pump.adapter  # (no bound method kept in this frame, which lasts the stream)
        entries = self.log
        #: the stream reached its end: the connection may serve another request
        reusable = False
        try:
            # the log's length is the stall deadline's progress: comments and keep-alive
            # frames add nothing to it
            await upstream.start(pump.feed, entries.notify, entries.__len__)
            reusable = adapter.done
            if not reusable:
                # The body ended before the stream's own end. A last frame without its blank
                # line is dropped, as the SSE rules say (the decoder is not flushed: its
                # flush dispatches nothing); the adapter says what is missing.
                self._on_events(adapter.close(), b"", time.monotonic())
        except UpstreamError as exc:
            # Open tool calls end "incomplete"; the break itself is the terminal error, more
            # precise than the adapter's "truncated". (Its traceback goes: it would hold this
            # frame, and through the response that holds the error, the session's whole log
            # in a cycle until a full collection, which the gateway runs only when quiet.)
            exc.__traceback__ = None
            tail = [e for e in adapter.close() if type(e) is not ev.Error]
            message = self.redactor.text(exc.message)
            tail.append(ev.Error(exc.type, message, exc.retryable, exc.status))
            self._on_events(tail, b"", time.monotonic())
        except asyncio.CancelledError:
            # Stop: a tool call in progress is kept, "incomplete" with its raw arguments; the
            # cancellation itself is the terminal event (logged at finalisation).
            if not adapter.done:
                calls = [e for e in adapter.close() if type(e) is ev.ToolCallDone]
                self._on_events(calls, b"", time.monotonic())  # type: ignore[arg-type]
            raise
        finally:
            self.clock.ended = time.monotonic()
            self._unhold()
            if reusable and self._pending_error is None:
                upstream.release()
            else:
                upstream.close()
            self._upstream = None
            # What this response's last read added reaches the readers with the session's
            # end, once its record is durable; or with the next attempt's ``retry`` event.
            entries.held = True
        return self._pending_error

    def _on_events(self, produced: list[ev.Event], raw: bytes, now: float) -> None:
        """The hot path: one upstream frame's events into accumulator, clock and log."""
        acc, clock, entries = self.acc, self.clock, self.log.entries
        for event in produced:
            kind = type(event)
            if kind is ev.TextDelta or kind is ev.ToolCallDelta:
                self._on_answer(event, raw, now)  # type: ignore[arg-type]
                raw = b""
                continue
            if kind is ev.ReasoningDelta:
                clock.delta(now, False)
                if self._phase != "thinking" and not self._answering:
                    self._status("thinking")
            elif kind is ev.ToolCallStart:
                if not self._answering:
                    self._status("tool", event.name)  # type: ignore[union-attr]
            elif kind is ev.ToolCallDone:
                self._log_tool_call(event)  # type: ignore[arg-type]
            elif kind is ev.Error:
                # Held back: the caller ends the session with it or retries the turn. The
                # provider's own error frame goes to a passthrough client as it came; a frame
                # the adapter could not read never does: it is no frame of the format.
                self._pending_error = event  # type: ignore[assignment]
                if raw and event.type != "upstream_protocol":  # type: ignore[union-attr]
                    entries.append((None, raw))
                continue
            acc.apply(event)
            entries.append((event, raw))  # (EventLog.append, inline)
            raw = b""

    def _on_answer(self, event: ev.TextDelta | ev.ToolCallDelta, raw: bytes, now: float) -> None:
        """One delta of the answer (text, or a tool call's arguments): a token for the clock,
        the first one announced. The pump calls it directly for a text delta, the commonest
        event."""
        clock = self.clock
        first = clock.first_token is None
        clock.delta(now, True)
        if first:
            self.deps.observer.on_first_token(self)
        if type(event) is ev.TextDelta:
            self._answering = True
        self.acc.apply(event)
        self.log.entries.append((event, raw))

    def _status(self, phase: str, detail: str | None = None) -> None:
        self._phase = phase
        self.log.append(ev.Status(phase, detail))

    def _end_with(self, error: ev.Error) -> None:
        """The session's terminal error: into the record, the accumulator and the log."""
        redactor = self.redactor
        message, detail = redactor.text(error.message), redactor.value(error.detail)
        if message is not error.message or detail is not error.detail:
            error = ev.Error(error.type, message, error.retryable, error.status, detail)
        self._record_error(error)
        self.acc.apply(error)
        self.log.held = True  # told with the end, once the record is durable
        self.log.append(error)

    def _log_tool_call(self, done: ev.ToolCallDone) -> None:
        log.info(
            "tool call completed %s",
            kv(
                session_id=self.id,
                tool=done.name,
                call_id=done.call_id,
                status=done.status,
                parse_attempts=done.parse_attempts,
                argument_keys=",".join(sorted(done.arguments)) if done.arguments else "",
                raw_chars=len(done.raw),
            ),
        )

    def _fail(self, exc: UpstreamError) -> None:
        """The upstream refused (or was unreachable) before streaming, and no retry is left:
        the client is told with a status code."""
        error = ev.Error(exc.type, exc.message, exc.retryable, exc.status)
        if isinstance(exc, UpstreamStatus) and exc.retry_after is not None:
            error.detail["retry_after"] = exc.retry_after
        self._end_with(error)  # (``ready`` is resolved once the record is durable)

    def _record_error(self, error: ev.Error) -> None:
        detail = dict(error.detail)
        retry_after = detail.pop("retry_after", None)
        self.error = {
            "type": error.type,
            "message": error.message,
            "retryable": error.retryable,
            "status": error.status,
            "retry_after": retry_after,
            # the provider's own error object, when it sent one
            "upstream": detail or None,
        }
        log.warning(
            "session error %s",
            kv(
                session_id=self.id,
                type=error.type,
                retryable=error.retryable,
                status=error.status,
                message=error.message,
            ),
        )

    # -- the end ------------------------------------------------------------------------------

    async def _finish(self, state: str) -> None:
        """Finalise: usage, cost, telemetry; store the record and events; tell the bus."""
        if self.clock.ended is None:
            self.clock.ended = time.monotonic()
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        if self._upstream is not None:
            self._upstream.close()  # harmless after release; closes the socket on Stop
        # Nothing more reaches the readers until the record is durable: a client is never
        # told of an end that a crash could take back.
        self.log.held = True
        if state == CANCELLED:
            log.info(
                "session cancelled %s",
                kv(
                    session_id=self.id,
                    reason=self.cancel_reason,
                    upstream_tokens_at_cancel=self.acc.output_deltas,
                ),
            )
            self.log.append(ev.Error("cancelled", f"stopped: {self.cancel_reason}"))
        self._set_state(FINALIZING)
        self.final_usage = usage = self._final_usage()
        self.cost = self.deps.prices.cost(
            self.route.provider.name,
            self.route.provider.kind,
            self.route.model,
            usage,
            self.usage_source,
        ).as_dict()
        self.state = state
        self.clock.finalized = time.monotonic()
        self._final_telemetry = self.clock.summary(self.output_tokens())
        record = self.record()
        store = self.deps.store
        # The record and the log, one write. The first record's write was queued when this
        # session's task first ran; while it waits for its commit, this one replaces it
        # there (the store keeps a later put of an id after an earlier).
        events = self.stored_events() if self.deps.keep_content else []
        writes: list[Awaitable[None]] = [store.put(record, events), *self._final_writes()]
        if self._stored_initial is not None:
            writes.append(self._stored_initial)
        for outcome in await asyncio.gather(*writes, return_exceptions=True):
            if isinstance(outcome, SluiceError):
                log.error(
                    "session record not stored %s", kv(session_id=self.id, error=outcome.message)
                )
            elif isinstance(outcome, BaseException):
                raise outcome
        # The record is durable (or its failure logged): the clients' streams end now, with
        # everything they are sent final. (The store commits a final record in the loop's
        # next turn: ``SQLiteStore._flush_soon``.)
        self.log.close()
        self.settled.set()
        if not self.ready.done():
            self.ready.set_result(None)
        self.updated_at = time.time()
        self.finished.set()
        await self.deps.observer.on_finished(self)

    def _final_writes(self) -> list[Awaitable[None]]:
        """Writes besides the record that a client must find done once told of the end."""
        return []

    def _final_usage(self) -> ev.Usage:
        """This attempt's usage, plus what earlier attempts that reached the stream were
        billed; ``usage_source`` says ``estimated`` if any part of it is."""
        usage, self.usage_source = _add_usage(self._earlier_usage, *self.attempt_usage())
        return usage

    def attempt_usage(self) -> tuple[ev.Usage, str]:
        """The current attempt's usage and its source: the provider's final figure, an
        estimate, or nothing when the provider refused (or was never reached)."""
        if self.failed_before_stream:
            return ev.Usage(), "refused"
        usage = self.acc.usage
        if usage is not None and usage.final:
            return usage, "provider"
        input_tokens = usage.input_tokens if usage is not None else self._estimate_input()
        estimate = ev.Usage(input_tokens=input_tokens, output_tokens=self.acc.output_deltas)
        return estimate, "estimated"

    def _estimate_input(self) -> int:
        return math.ceil(len(self.spec.body) / 4)

    # -- views --------------------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        self.state = state
        self.updated_at = time.time()
        if log.isEnabledFor(logging.DEBUG):  # the line's fields cost more than the check
            log.debug(
                "session state %s",
                kv(
                    session_id=self.id,
                    state=state,
                    provider=self.route.label,
                    wire=self.route.wire,
                ),
            )
        self.deps.observer.on_state(self)

    @property
    def failed_before_stream(self) -> bool:
        """The upstream refused or could not be reached: nothing was streamed."""
        return self.clock.upstream_open is None and self.error is not None

    def output_tokens(self) -> int:
        usage = self.acc.usage
        if usage is not None and usage.final:
            return usage.output_tokens
        return self.acc.output_deltas

    def usage_dict(self) -> dict[str, Any] | None:
        usage = self.final_usage or self.acc.usage
        return None if usage is None else ev.payload(usage)[1] | {"source": self.usage_source}

    def telemetry(self) -> dict[str, Any]:
        """Live figures while streaming; once final, the figures computed at finalisation."""
        if self._final_telemetry is not None:
            return self._final_telemetry
        return self.clock.summary(self.output_tokens())

    def run_progress(self) -> tuple[str, int, int] | None:
        """An agent's run: its agent's name (empty for a model's turn of a conversation), the
        step under way (or the last) and how many steps ended; None for a plain session."""
        return None

    def record(self) -> dict[str, Any]:
        record = self._record()
        return record if self.deps.keep_content else without_content(record)

    def _record(self) -> dict[str, Any]:
        acc = self.acc
        return {
            "id": self.id,
            "state": self.state,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "endpoint": self.spec.endpoint,
            "provider": self.route.provider.name,
            "provider_kind": self.route.provider.kind,
            "model": self.route.model,
            "upstream_wire": self.route.wire,
            "passthrough": self.spec.passthrough,
            "disconnect_policy": self.spec.disconnect_policy,
            "tenant": self.spec.tenant,
            "api_key": self.spec.api_key,
            "node": self.deps.node,
            "max_tokens": self.spec.turn.max_tokens,
            "prompt_preview": self.redactor.text(self.spec.turn.prompt_preview()),
            "prompt": self.redactor.text(self.spec.turn.prompt_text()),
            "response_id": acc.response_id,
            "upstream_model": acc.model,
            "text": acc.text,
            "reasoning": acc.reasoning,
            # the reasoning's opaque tokens, kept so that the turn can be continued (never shown)
            "signatures": [ev.payload(s)[1] for s in acc.signatures],
            "tool_calls": [c.as_dict() for c in acc.tool_calls],
            "finish_reason": acc.finish_reason,
            "usage": self.usage_dict(),
            "cost": self.cost,
            "telemetry": self.telemetry(),
            "error": self.error,
            "cancel_reason": self.cancel_reason,
            "attempts": self.attempts,
            "attempt_errors": list(self.attempt_errors),
            "disconnects": list(self.disconnects),
            "events": len(self.log),
        }

    def stored_events(self, start: int = 0, end: int | None = None) -> list[NewEvent]:
        """The log's events (from list index ``start`` to ``end``) as the store takes them,
        JSON-ready; encoded by the store in one call. Text deltas, most of any log, are
        written out here rather than dispatched."""
        out: list[NewEvent] = []
        append, payload, text_delta = out.append, ev.payload, ev.TextDelta
        seq = start
        entries = self.log.entries
        for event, _raw in entries[start:end] if start or end is not None else entries:
            seq += 1
            if event is None:
                continue
            if type(event) is text_delta:
                append((seq, "text", {"text": event.text}))
            else:
                append((seq, *payload(event)))
        return out


#: Makes the session an endpoint starts (an agent's run is one): its id, spec and deps.
SessionFactory = Callable[[str, SessionSpec, SessionDeps], Session]
