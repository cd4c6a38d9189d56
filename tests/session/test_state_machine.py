"""The session's lifecycle, one transition per test, against a real upstream on loopback.

    starting ──► streaming ──► finalizing ──► complete | errored | cancelled
        └──────────────────────────────┘ (an upstream error before the first byte, or Stop)

Each test drives a ``Session`` (its own ``SessionDeps``: the gateway's ``UpstreamClient``
talking to ``ScriptedUpstream``, a real store, a price table) and checks what its observer was
told, its record and what the store holds, its log's events in order, and its flags. Waits
are on events and flags, bounded by a timeout that only a hang reaches.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sluice import events as ev
from sluice.config import Price, ProviderConfig, StreamSettings
from sluice.errors import UpstreamError
from sluice.pricing import PriceBook
from sluice.providers import Route, build_body
from sluice.redact import ProviderKeys
from sluice.session.session import (
    CANCELLED,
    COMPLETE,
    ERRORED,
    STARTING,
    Reader,
    Session,
    SessionDeps,
    SessionNotRetryable,
    SessionSpec,
)
from sluice.session.store import MemoryStore, SessionStore, SQLiteStore
from sluice.sim import SimSettings, sim_server
from sluice.turn import Message, TextPart, TurnRequest
from sluice.upstream import UpstreamClient

from .scripted import (
    CLOSE,
    HOLD,
    OPENING,
    Reply,
    ScriptedUpstream,
    answer,
    ending,
    error_body,
    frame,
    words,
)

#: a bound on every wait: reached only by a hang
PATIENCE = 10.0
BODY = b'{"model":"model-x","messages":[{"role":"user","content":"hello there"}],"stream":true}'
#: dollars per million tokens: 5 in and 2 out cost 5 * 1 + 2 * 2 = 9 micro-dollars
PRICES = PriceBook({"scripted/model-x": Price(input=1.0, output=2.0)})


class Recorder:
    """The session's observer: what it was told, in order."""

    def __init__(self, fail_on_first_token: bool = False) -> None:
        self.states: list[str] = []
        self.first_tokens: list[str] = []
        self.finished: list[str] = []
        #: each upstream request as it goes ("open") and how it ended (an error type, "ok")
        self.attempts: list[str] = []
        self._fail_on_first_token = fail_on_first_token

    def on_state(self, session: Session) -> None:
        self.states.append(session.state)

    def on_attempt(self, session: Session) -> None:
        self.attempts.append("open")
        # the request's headers are read after this: what an observer adds goes out with it
        session.spec.headers["x-attempt"] = str(self.attempts.count("open"))

    def on_attempt_end(self, session: Session, error: UpstreamError | ev.Error | None) -> None:
        self.attempts.append("ok" if error is None else error.type)

    def on_tool_end(self, session: Session, call: dict[str, Any], started: float) -> None:
        raise AssertionError("a plain session runs no tools")

    def on_first_token(self, session: Session) -> None:
        self.first_tokens.append(session.acc.text)
        if self._fail_on_first_token:
            raise RuntimeError("observer bug")

    async def on_finished(self, session: Session) -> None:
        assert session.finished.is_set() and session.settled.is_set()
        self.finished.append(session.state)


class Harness:
    """Sessions over one upstream client and one store, started as the manager starts them."""

    def __init__(self, store: SessionStore, upstream: UpstreamClient, url: str) -> None:
        self.store = store
        self.upstream = upstream
        self.url = url
        self.count = 0

    def session(
        self,
        observer: Recorder,
        *,
        endpoint: str = "native",
        policy: str = "cancel",
        **settings: Any,
    ) -> Session:
        self.count += 1
        turn = TurnRequest(model="scripted/model-x", messages=[Message("user", [TextPart("hi")])])
        spec = SessionSpec(
            route=Route(ProviderConfig("scripted", "sim"), "model-x", "chat"),
            turn=turn,
            body=BODY,
            url=self.url,
            headers={"content-type": "application/json"},
            endpoint=endpoint,
            passthrough=False,
            disconnect_policy=policy,
        )
        stream = StreamSettings(retry_base_delay=0.001, retry_max_delay=0.002, **settings)
        deps = SessionDeps(self.upstream, self.store, PRICES, stream, ProviderKeys(), observer)
        return Session(f"op-test{self.count}", spec, deps)


def launch(session: Session) -> asyncio.Task[None]:
    """As ``SessionManager`` does: the task, then the request sent in the same step."""
    task = asyncio.get_running_loop().create_task(session.run())
    session.task = task
    session.begin()
    return task


async def ended(task: asyncio.Task[None]) -> BaseException | None:
    """The task's end: None, or what it raised (a cancelled pump re-raises its cancellation)."""
    async with asyncio.timeout(PATIENCE):
        (outcome,) = await asyncio.gather(task, return_exceptions=True)
    return outcome


async def until(session: Session, condition: Callable[[], bool]) -> None:
    """Follow the session's log until ``condition`` holds (bounded: a hang fails the test)."""
    async with asyncio.timeout(PATIENCE):
        while not condition():
            await session.log.wait_beyond(len(session.log))


async def within(waiting: Awaitable[Any]) -> Any:
    async with asyncio.timeout(PATIENCE):
        return await waiting


def types(session: Session) -> list[str]:
    return [ev.payload(event)[0] for event, _raw in session.log.entries if event is not None]


def last_error(session: Session) -> ev.Error:
    errors = [event for event, _ in session.log.entries if type(event) is ev.Error]
    return errors[-1]


async def check_stored(store: SessionStore, session: Session) -> dict[str, Any]:
    """The store holds the session's final record and its whole log; returns the record."""
    stored = await store.get(session.id)
    assert stored is not None
    record = session.record()
    for key in ("state", "text", "error", "cancel_reason", "attempts", "usage", "cost", "events"):
        assert stored[key] == record[key], key
    assert stored["attempt_errors"] == record["attempt_errors"]
    events = await store.get_events(session.id)
    assert [kind for _seq, kind, _data in events] == types(session)
    return stored


def check_over(session: Session) -> None:
    assert session.ready.done() and session.ready.exception() is None
    assert session.settled.is_set() and session.finished.is_set()
    assert session.log.closed


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionStore]:
    store: SessionStore = (
        MemoryStore() if request.param == "memory" else SQLiteStore(str(tmp_path / "s.db"))
    )
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    upstream = UpstreamClient(connect_timeout=PATIENCE)
    yield upstream
    await upstream.close()


def harness(store: SessionStore, client: UpstreamClient, upstream: ScriptedUpstream) -> Harness:
    return Harness(store, client, upstream.url)


# -- starting ─► streaming ─► finalizing ─► complete ------------------------------------------


async def test_a_whole_answer_streams_then_completes_with_the_providers_usage(
    store: SessionStore, client: UpstreamClient
) -> None:
    async with ScriptedUpstream([Reply(chunks=answer("Hello", " world"))]) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer)
        assert session.state == STARTING and not session.ready.done()
        assert await ended(launch(session)) is None

    assert observer.states == ["streaming", "finalizing"]
    assert observer.finished == [COMPLETE]
    assert observer.first_tokens == [""]  # told before the first token is in
    check_over(session)
    assert types(session) == ["status", "start", "text", "text", "usage", "finish"]
    record = await check_stored(store, session)
    assert record["state"] == COMPLETE and record["text"] == "Hello world"
    assert record["error"] is None and record["cancel_reason"] is None
    assert record["finish_reason"] == "stop" and record["attempts"] == 1
    assert record["usage"]["source"] == "provider"
    assert (record["usage"]["input_tokens"], record["usage"]["output_tokens"]) == (5, 2)
    assert record["cost"]["total"] == pytest.approx(9e-6)
    assert upstream.seen[0].body == BODY


# -- streaming ─► errored ---------------------------------------------------------------------


async def test_a_connection_closed_mid_stream_ends_the_session_errored_with_its_partial_text(
    store: SessionStore, client: UpstreamClient
) -> None:
    reply = Reply(chunks=[OPENING, *words("Hel", "lo")], end=CLOSE)
    async with ScriptedUpstream([reply]) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer, endpoint="chat")
        assert await ended(launch(session)) is None

    assert observer.states == ["streaming", "finalizing"]
    assert observer.finished == [ERRORED]
    check_over(session)
    assert types(session) == ["status", "start", "text", "text", "error"]
    assert last_error(session).type == "upstream_disconnected"
    record = await check_stored(store, session)
    assert record["state"] == ERRORED and record["text"] == "Hello"
    assert record["error"]["type"] == "upstream_disconnected"
    assert record["usage"]["source"] == "estimated" and record["usage"]["output_tokens"] == 2
    assert record["attempts"] == 1 and record["attempt_errors"] == []


async def test_a_stream_that_ends_without_its_finish_is_errored_truncated(
    client: UpstreamClient,
) -> None:
    store = MemoryStore()
    async with ScriptedUpstream([Reply(chunks=[OPENING, *words("cut")])]) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer)
        assert await ended(launch(session)) is None
        await within(upstream.seen[0].gone.wait())  # not pooled: the stream was not whole

    assert observer.states == ["streaming", "finalizing"] and observer.finished == [ERRORED]
    check_over(session)
    assert types(session) == ["status", "start", "text", "error"]
    record = await check_stored(store, session)
    assert record["error"]["type"] == "upstream_truncated" and record["text"] == "cut"


async def test_the_providers_error_frame_mid_stream_ends_the_session_errored(
    client: UpstreamClient,
) -> None:
    store = MemoryStore()
    failure = frame({"error": {"message": "the model broke", "type": "server_error"}})
    async with ScriptedUpstream([Reply(chunks=[OPENING, *words("a"), failure])]) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer)
        assert await ended(launch(session)) is None

    assert observer.states == ["streaming", "finalizing"] and observer.finished == [ERRORED]
    check_over(session)
    assert types(session) == ["status", "start", "text", "error"]
    record = await check_stored(store, session)
    assert record["error"]["message"] == "the model broke" and record["error"]["retryable"]


async def test_an_upstream_silent_past_the_stall_deadline_ends_the_session_errored_stalled(
    client: UpstreamClient,
) -> None:
    store = MemoryStore()
    stalling = UpstreamClient(stall_timeout=0.2)
    try:
        async with ScriptedUpstream([Reply(chunks=[OPENING, *words("wait")], end=HOLD)]) as up:
            observer = Recorder()
            session = Harness(store, stalling, up.url).session(observer)
            assert await ended(launch(session)) is None
            await within(up.seen[0].gone.wait())  # the stalled connection is closed
    finally:
        await stalling.close()

    assert observer.states == ["streaming", "finalizing"] and observer.finished == [ERRORED]
    check_over(session)
    assert types(session) == ["status", "start", "text", "error"]
    record = await check_stored(store, session)
    assert record["error"]["type"] == "upstream_stalled" and record["text"] == "wait"


# -- starting ─► finalizing ─► errored (refused before the stream) ----------------------------


async def test_a_refusal_with_no_retry_left_ends_errored_before_streaming(
    store: SessionStore, client: UpstreamClient
) -> None:
    # a retry-after beyond the retry deadline: no retry can be made in time
    refusal = Reply(status=429, body=error_body("slow down"), headers={"retry-after": "60"})
    async with ScriptedUpstream([refusal]) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer)
        assert await ended(launch(session)) is None

    assert len(upstream.seen) == 1
    assert observer.states == ["finalizing"] and observer.finished == [ERRORED]
    assert observer.first_tokens == []
    check_over(session)
    assert session.failed_before_stream
    assert types(session) == ["status", "error"]
    record = await check_stored(store, session)
    assert record["error"]["type"] == "rate_limited" and record["error"]["status"] == 429
    assert record["error"]["retry_after"] == 60.0 and record["error"]["message"] == "slow down"
    assert record["usage"]["source"] == "refused" and record["cost"]["total"] == 0
    assert record["attempt_errors"] == []


async def test_refusals_are_retried_before_the_stream_until_one_is_accepted(
    store: SessionStore, client: UpstreamClient
) -> None:
    replies = [
        Reply(status=429, body=error_body("slow down"), headers={"retry-after": "0"}),
        Reply(status=500, body=error_body("oops")),
        Reply(chunks=answer("fine")),
    ]
    async with ScriptedUpstream(replies) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer, retry_attempts=3)
        assert await ended(launch(session)) is None

    assert [seen.body for seen in upstream.seen] == [BODY] * 3
    assert [seen.headers["x-attempt"] for seen in upstream.seen] == ["1", "2", "3"]
    assert observer.attempts == ["open", "rate_limited", "open", "upstream_error", "open", "ok"]
    assert observer.states == ["streaming", "finalizing"] and observer.finished == [COMPLETE]
    check_over(session)
    # refusals before the stream are not attempts of the turn: no retry event, one attempt
    assert types(session) == ["status", "start", "text", "usage", "finish"]
    record = await check_stored(store, session)
    assert record["state"] == COMPLETE and record["text"] == "fine" and record["attempts"] == 1
    assert [e["type"] for e in record["attempt_errors"]] == ["rate_limited", "upstream_error"]
    assert record["usage"]["source"] == "provider"


async def test_retryable_refusals_stop_at_retry_attempts(client: UpstreamClient) -> None:
    store = MemoryStore()
    replies = [Reply(status=500, body=error_body(f"oops {n}")) for n in range(3)]
    async with ScriptedUpstream(replies) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer, retry_attempts=2)
        assert await ended(launch(session)) is None

    assert len(upstream.seen) == 2
    assert observer.states == ["finalizing"] and observer.finished == [ERRORED]
    check_over(session)
    record = await check_stored(store, session)
    assert record["error"]["message"] == "oops 1"
    assert [e["message"] for e in record["attempt_errors"]] == ["oops 0"]


async def test_an_answer_that_is_not_an_event_stream_is_refused_without_a_retry(
    client: UpstreamClient,
) -> None:
    store = MemoryStore()
    page = Reply(body=b"<html>login</html>", headers={"content-type": "text/html"})
    async with ScriptedUpstream([page, Reply(chunks=answer("never"))]) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer)
        assert await ended(launch(session)) is None

    assert len(upstream.seen) == 1
    assert observer.states == ["finalizing"] and observer.finished == [ERRORED]
    check_over(session)
    record = await check_stored(store, session)
    assert record["error"]["type"] == "upstream_not_event_stream"
    assert types(session) == ["status", "error"]


async def test_an_unreachable_upstream_is_retried_then_errored(client: UpstreamClient) -> None:
    store = MemoryStore()
    async with ScriptedUpstream() as upstream:
        url = upstream.url  # the port is free once the server is gone
    observer = Recorder()
    session = Harness(store, client, url).session(observer, retry_attempts=2)
    assert await ended(launch(session)) is None

    assert observer.states == ["finalizing"] and observer.finished == [ERRORED]
    check_over(session)
    record = await check_stored(store, session)
    assert record["error"]["type"] == "upstream_unreachable"
    assert [e["type"] for e in record["attempt_errors"]] == ["upstream_unreachable"]


# -- whole-turn retries after a failure mid-stream --------------------------------------------


async def test_a_mid_stream_failure_retries_the_whole_turn_on_the_native_endpoint(
    store: SessionStore, client: UpstreamClient
) -> None:
    replies = [Reply(chunks=[OPENING, *words("Hel", "lo")], end=CLOSE), Reply(chunks=answer("Hi"))]
    async with ScriptedUpstream(replies) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(
            observer, mid_stream_failure="retry", turn_attempts=2
        )
        assert await ended(launch(session)) is None

    assert len(upstream.seen) == 2
    assert observer.attempts == ["open", "upstream_disconnected", "open", "ok"]
    assert observer.states == ["streaming", "streaming", "finalizing"]
    assert observer.finished == [COMPLETE]
    # the clock spans the session: its first token is told once, not once per attempt
    assert observer.first_tokens == [""]
    check_over(session)
    assert types(session) == [
        "status",
        *["start", "text", "text"],
        "retry",
        *["start", "text", "usage", "finish"],
    ]
    retry = next(event for event, _ in session.log.entries if type(event) is ev.Retry)
    assert (retry.attempt, retry.reason) == (2, "upstream_disconnected")
    record = await check_stored(store, session)
    assert record["state"] == COMPLETE and record["text"] == "Hi" and record["attempts"] == 2
    assert [e["type"] for e in record["attempt_errors"]] == ["upstream_disconnected"]
    # the broken attempt's estimate counts too, so the sum is an estimate
    assert record["usage"]["source"] == "estimated"
    assert record["usage"]["output_tokens"] == 2 + 1


async def test_a_mid_stream_failure_is_not_retried_for_a_provider_format_client(
    client: UpstreamClient,
) -> None:
    store = MemoryStore()
    replies = [Reply(chunks=[OPENING, *words("Hel")], end=CLOSE), Reply(chunks=answer("Hi"))]
    async with ScriptedUpstream(replies) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(
            observer, endpoint="chat", mid_stream_failure="retry", turn_attempts=2
        )
        assert await ended(launch(session)) is None

    assert len(upstream.seen) == 1
    assert observer.states == ["streaming", "finalizing"] and observer.finished == [ERRORED]
    check_over(session)
    assert "retry" not in types(session)
    record = await check_stored(store, session)
    assert record["attempts"] == 1 and record["error"]["type"] == "upstream_disconnected"


async def test_whole_turn_retries_stop_at_turn_attempts(client: UpstreamClient) -> None:
    store = MemoryStore()
    broken = [Reply(chunks=[OPENING, *words(f"try{n}")], end=CLOSE) for n in range(3)]
    async with ScriptedUpstream(broken) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(
            observer, mid_stream_failure="retry", turn_attempts=2
        )
        assert await ended(launch(session)) is None

    assert len(upstream.seen) == 2
    assert observer.states == ["streaming", "streaming", "finalizing"]
    assert observer.finished == [ERRORED]
    check_over(session)
    assert types(session) == ["status", "start", "text", "retry", "start", "text", "error"]
    record = await check_stored(store, session)
    assert record["attempts"] == 2 and record["text"] == "try1"


async def test_the_simulators_error_mid_stream_retries_the_turn_on_the_messages_wire(
    client: UpstreamClient,
) -> None:
    """The same transition against the simulator (the independent oracle): its in-stream
    error frame on the first attempt, its whole answer on the second."""
    store = MemoryStore()
    # a socket listening before the server runs: requests wait in its backlog, no polling
    listening = socket.create_server(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{listening.getsockname()[1]}"
    server = sim_server("127.0.0.1", 0, SimSettings(), graceful_seconds=1)
    running = asyncio.ensure_future(server.serve(sockets=[listening]))
    try:
        route = Route(ProviderConfig("sim", "sim"), "error-mid-stream", "messages")
        turn = TurnRequest(
            model="sim/error-mid-stream", messages=[Message("user", [TextPart("hi")])]
        )
        spec = SessionSpec(
            route=route,
            turn=turn,
            body=build_body(route, turn, None),
            url=f"{base}/v1/messages",
            headers={
                "content-type": "application/json",
                "anthropic-version": "2023-06-01",
                "x-sluice-session-id": "op-sim1",
                "x-sim-fail-after": "3",
                "x-sim-fail-count": "1",
                "x-sim-output-tokens": "12",
                "x-sim-token-rate": "5000",
                "x-sim-ttft": "0",
                "x-sim-jitter": "0",
            },
            endpoint="native",
            passthrough=False,
            disconnect_policy="cancel",
        )
        observer = Recorder()
        settings = StreamSettings(
            retry_base_delay=0.001, retry_max_delay=0.002, mid_stream_failure="retry"
        )
        deps = SessionDeps(client, store, PRICES, settings, ProviderKeys(), observer)
        session = Session("op-sim1", spec, deps)
        assert await ended(launch(session)) is None
    finally:
        server.should_exit = True
        await running
        listening.close()

    assert observer.states == ["streaming", "streaming", "finalizing"]
    assert observer.finished == [COMPLETE]
    check_over(session)
    kinds = types(session)
    retry_at = kinds.index("retry")
    # three tokens (``x-sim-fail-after``), the error held back for the retry, then the answer
    assert kinds[retry_at - 3 : retry_at] == ["text"] * 3
    assert kinds[:2] == ["status", "start"] and kinds[retry_at + 1] == "start"
    assert "error" not in kinds and kinds[-2:] == ["usage", "finish"]
    record = await check_stored(store, session)
    assert record["state"] == COMPLETE and record["attempts"] == 2 and record["text"]
    # what the simulator sent the second time, and only that: its attempt's text alone
    assert record["text"].startswith("## ") and record["text"].count("## ") == 1
    assert [(e["type"], e["message"]) for e in record["attempt_errors"]] == [
        ("overloaded", "Overloaded")
    ]


# -- cancellation -----------------------------------------------------------------------------


async def test_a_stop_before_the_task_began_ends_the_session_cancelled_without_a_request(
    store: SessionStore, client: UpstreamClient
) -> None:
    async with ScriptedUpstream([Reply(chunks=answer("never"))]) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer)
        task = launch(session)
        assert session.cancel("client_stop") is True
        assert await ended(task) is None  # ended by run() itself: no cancellation raised

        assert upstream.seen == []  # no pooled connection: the request was never sent
    assert observer.states == ["finalizing"] and observer.finished == [CANCELLED]
    check_over(session)
    assert types(session) == ["error"]
    assert last_error(session).type == "cancelled"
    record = await check_stored(store, session)
    assert record["state"] == CANCELLED and record["cancel_reason"] == "client_stop"
    assert record["text"] == "" and record["error"] is None


async def test_a_stop_before_the_task_began_closes_a_request_sent_on_a_pooled_connection(
    client: UpstreamClient,
) -> None:
    store = MemoryStore()
    async with ScriptedUpstream([Reply(chunks=answer("one")), Reply(chunks=answer("two"))]) as up:
        make = harness(store, client, up)
        assert await ended(launch(make.session(Recorder()))) is None  # pools its connection
        observer = Recorder()
        session = make.session(observer)
        task = launch(session)  # the request goes out on the pooled connection, now
        assert session.cancel("client_stop") is True
        assert await ended(task) is None
        seen = await within(up.requests(2))
        await within(seen[1].gone.wait())  # the provider sees its client go

    assert observer.states == ["finalizing"] and observer.finished == [CANCELLED]
    check_over(session)
    assert types(session) == ["error"]
    assert (await check_stored(store, session))["state"] == CANCELLED


async def test_a_stop_while_waiting_for_the_upstream_ends_cancelled_and_closes_the_request(
    store: SessionStore, client: UpstreamClient
) -> None:
    never = asyncio.Event()
    async with ScriptedUpstream([Reply(before=never, chunks=answer("late"))]) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer)
        task = launch(session)
        (seen,) = await within(upstream.requests(1))
        assert session.state == STARTING and not session.ready.done()
        assert session.cancel("client_stop") is True
        assert isinstance(await ended(task), asyncio.CancelledError)
        await within(seen.gone.wait())

    assert observer.states == ["finalizing"] and observer.finished == [CANCELLED]
    check_over(session)
    assert types(session) == ["status", "error"]
    record = await check_stored(store, session)
    assert record["state"] == CANCELLED and record["cancel_reason"] == "client_stop"
    assert record["error"] is None
    # nothing came back: the usage is estimated from the request
    assert record["usage"]["source"] == "estimated" and record["usage"]["output_tokens"] == 0


async def test_a_stop_mid_stream_keeps_the_partial_text_and_closes_the_upstream(
    store: SessionStore, client: UpstreamClient
) -> None:
    never = asyncio.Event()
    reply = Reply(chunks=[OPENING, *words("Hel", "lo"), never, *ending(5, 9)])
    async with ScriptedUpstream([reply]) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer)
        task = launch(session)
        await until(session, lambda: session.acc.text == "Hello")
        assert session.cancel("client_stop") is True
        assert isinstance(await ended(task), asyncio.CancelledError)
        await within(upstream.seen[0].gone.wait())

    assert observer.states == ["streaming", "finalizing"] and observer.finished == [CANCELLED]
    assert observer.first_tokens == [""]
    check_over(session)
    assert types(session) == ["status", "start", "text", "text", "error"]
    assert last_error(session).type == "cancelled"
    record = await check_stored(store, session)
    assert record["state"] == CANCELLED and record["text"] == "Hello"
    assert record["cancel_reason"] == "client_stop" and record["error"] is None
    assert record["usage"]["source"] == "estimated" and record["usage"]["output_tokens"] == 2


async def test_a_stop_while_waiting_to_retry_a_refusal_ends_cancelled(
    client: UpstreamClient,
) -> None:
    store = MemoryStore()
    refusal = Reply(status=429, body=error_body("slow down"), headers={"retry-after": "30"})
    async with ScriptedUpstream([refusal, Reply(chunks=answer("late"))]) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer, retry_deadline=60.0)
        task = launch(session)
        (seen,) = await within(upstream.requests(1))
        # the refusal's body read, its connection closed: the session sleeps before a retry
        await within(seen.gone.wait())
        assert session.attempt_errors and session.state == STARTING
        assert session.cancel("client_stop") is True
        assert isinstance(await ended(task), asyncio.CancelledError)

    assert len(upstream.seen) == 1
    assert observer.states == ["finalizing"] and observer.finished == [CANCELLED]
    check_over(session)
    assert types(session) == ["status", "error"]
    record = await check_stored(store, session)
    assert record["state"] == CANCELLED and record["error"] is None
    assert [e["type"] for e in record["attempt_errors"]] == ["rate_limited"]


async def test_the_last_reader_leaving_under_the_cancel_policy_cancels_the_session(
    client: UpstreamClient,
) -> None:
    store = MemoryStore()
    never = asyncio.Event()
    async with ScriptedUpstream([Reply(chunks=[OPENING, *words("a"), never])]) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer, policy="cancel")
        reader = session.attach(0)
        task = launch(session)
        await until(session, lambda: session.acc.text == "a")
        reader.advance(len(session.log))
        session.detach(reader, "client_disconnected")
        assert isinstance(await ended(task), asyncio.CancelledError)
        await within(upstream.seen[0].gone.wait())

    assert observer.states == ["streaming", "finalizing"] and observer.finished == [CANCELLED]
    check_over(session)
    record = await check_stored(store, session)
    assert record["cancel_reason"] == "client_disconnected"
    assert [(d["reason"], d["position"]) for d in record["disconnects"]] == [
        ("client_disconnected", 3)
    ]


async def test_the_last_reader_leaving_under_the_drain_policy_lets_the_turn_complete(
    client: UpstreamClient,
) -> None:
    store = MemoryStore()
    go = asyncio.Event()
    reply = Reply(chunks=[OPENING, *words("a"), go, *words("b"), *ending(5, 2)])
    async with ScriptedUpstream([reply]) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer, policy="drain")
        reader = session.attach(0)
        task = launch(session)
        await until(session, lambda: session.acc.text == "a")
        session.detach(reader, "client_disconnected")
        go.set()
        assert await ended(task) is None

    assert observer.states == ["streaming", "finalizing"] and observer.finished == [COMPLETE]
    check_over(session)
    record = await check_stored(store, session)
    assert record["state"] == COMPLETE and record["text"] == "ab"
    assert record["cancel_reason"] is None
    assert [d["reason"] for d in record["disconnects"]] == ["client_disconnected"]


async def test_a_stop_in_the_turn_the_stream_ends_is_refused_or_honoured_never_half_done(
    client: UpstreamClient,
) -> None:
    """A Stop that arrives after the pump's last read but before finalisation has begun: the
    session ends as a whole, either cancelled (the Stop won) or complete with no cancel
    reason (the Stop came too late, and ``cancel`` says so)."""
    store = MemoryStore()
    async with ScriptedUpstream([Reply(chunks=answer("done"))]) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer)
        stops: list[bool] = []
        loop = asyncio.get_running_loop()

        def stop_once_the_pump_has_ended() -> None:
            # checked in every turn of the loop: the Stop lands in the first turn after the
            # pump's task has left the upstream (a client's Stop request handled then, say)
            if session.clock.ended is not None:
                stops.append(session.cancel("client_stop"))
            elif not session.finished.is_set():
                loop.call_soon(stop_once_the_pump_has_ended)

        loop.call_soon(stop_once_the_pump_has_ended)
        outcome = await ended(launch(session))

    assert stops in ([True], [False])
    check_over(session)
    record = await check_stored(store, session)
    if stops == [True]:
        assert record["state"] == CANCELLED and record["cancel_reason"] == "client_stop"
        assert isinstance(outcome, asyncio.CancelledError)
        assert types(session)[-1] == "error"
    else:
        assert record["state"] == COMPLETE and record["cancel_reason"] is None
        assert outcome is None
        assert types(session)[-1] == "finish"
    assert observer.finished == [record["state"]]


# -- refused transitions ----------------------------------------------------------------------


async def test_cancel_on_a_finished_session_returns_false_and_changes_nothing(
    store: SessionStore, client: UpstreamClient
) -> None:
    async with ScriptedUpstream([Reply(chunks=answer("done"))]) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer)
        assert await ended(launch(session)) is None
        before = (session.record(), types(session))
        assert session.cancel("client_stop") is False

    assert (session.record(), types(session)) == before
    assert session.cancel_reason is None and session.state == COMPLETE
    assert observer.states == ["streaming", "finalizing"] and observer.finished == [COMPLETE]
    assert (await check_stored(store, session))["state"] == COMPLETE


async def test_cancel_on_a_session_never_launched_returns_false(client: UpstreamClient) -> None:
    async with ScriptedUpstream() as upstream:
        observer = Recorder()
        session = harness(MemoryStore(), client, upstream).session(observer)
        assert session.cancel("client_stop") is False
    assert session.cancel_reason is None and session.state == STARTING
    assert observer.states == [] and len(session.log) == 0


async def test_prepare_retry_on_a_complete_session_raises_not_retryable(
    store: SessionStore, client: UpstreamClient
) -> None:
    async with ScriptedUpstream([Reply(chunks=answer("done"))]) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer)
        assert await ended(launch(session)) is None
    before = (session.record(), types(session))

    with pytest.raises(SessionNotRetryable) as refused:
        session.prepare_retry()
    assert refused.value.status == 409 and refused.value.type == "not_retryable"
    assert (session.record(), types(session)) == before
    assert session.finished.is_set() and session.log.closed
    assert observer.finished == [COMPLETE]


async def test_prepare_retry_on_a_streaming_session_raises_not_retryable(
    client: UpstreamClient,
) -> None:
    store = MemoryStore()
    go = asyncio.Event()
    reply = Reply(chunks=[OPENING, *words("a"), go, *ending(5, 1)])
    async with ScriptedUpstream([reply]) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer)
        task = launch(session)
        await until(session, lambda: session.acc.text == "a")
        with pytest.raises(SessionNotRetryable):
            session.prepare_retry()
        assert session.attempts == 1 and "retry" not in types(session)
        go.set()
        assert await ended(task) is None

    assert observer.states == ["streaming", "finalizing"] and observer.finished == [COMPLETE]
    assert (await check_stored(store, session))["attempts"] == 1


# -- prepare_retry: errored / cancelled ─► starting -------------------------------------------


async def test_an_errored_session_retried_by_request_starts_again_with_the_same_id(
    store: SessionStore, client: UpstreamClient
) -> None:
    replies = [Reply(status=400, body=error_body("bad request")), Reply(chunks=answer("ok"))]
    async with ScriptedUpstream(replies) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer)
        assert await ended(launch(session)) is None
        assert session.state == ERRORED
        assert (await check_stored(store, session))["state"] == ERRORED
        first_id = session.id

        session.prepare_retry()
        assert session.id == first_id and session.state == STARTING
        assert session.attempts == 2 and session.error is None
        assert not session.settled.is_set() and not session.finished.is_set()
        assert not session.log.closed
        assert session.ready.done()  # resolved by the first attempt; not armed again
        assert types(session) == ["status", "error", "retry"]

        assert await ended(launch(session)) is None

    assert len(upstream.seen) == 2
    assert observer.states == ["finalizing", "streaming", "finalizing"]
    assert observer.finished == [ERRORED, COMPLETE]
    assert observer.first_tokens == [""]
    check_over(session)
    assert types(session) == [
        *["status", "error"],
        "retry",
        *["status", "start", "text", "usage", "finish"],
    ]
    retry = next(event for event, _ in session.log.entries if type(event) is ev.Retry)
    assert (retry.attempt, retry.reason, retry.delay) == (2, "upstream_rejected", 0.0)
    record = await check_stored(store, session)
    assert record["id"] == first_id and record["state"] == COMPLETE and record["text"] == "ok"
    assert record["attempts"] == 2 and record["error"] is None
    assert record["attempt_errors"] == [
        {"type": "upstream_rejected", "message": "recovered by request"}
    ]
    # the refused attempt billed nothing: the provider's usage stands alone
    assert record["usage"]["source"] == "provider" and record["usage"]["output_tokens"] == 1


async def test_a_cancelled_session_retried_by_request_streams_again(
    client: UpstreamClient,
) -> None:
    store = MemoryStore()
    never = asyncio.Event()
    replies = [Reply(chunks=[OPENING, *words("par"), never]), Reply(chunks=answer("whole"))]
    async with ScriptedUpstream(replies) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer)
        task = launch(session)
        await until(session, lambda: session.acc.text == "par")
        assert session.cancel("client_stop")
        assert isinstance(await ended(task), asyncio.CancelledError)

        session.prepare_retry()
        assert session.cancel_reason is None and session.state == STARTING
        assert await ended(launch(session)) is None

    assert observer.states == ["streaming", "finalizing", "streaming", "finalizing"]
    assert observer.finished == [CANCELLED, COMPLETE]
    # a recovered attempt has a clock of its own: its first token is told again
    assert observer.first_tokens == ["", ""]
    check_over(session)
    assert types(session) == [
        *["status", "start", "text", "error"],
        "retry",
        *["status", "start", "text", "usage", "finish"],
    ]
    record = await check_stored(store, session)
    assert record["state"] == COMPLETE and record["text"] == "whole"
    assert record["cancel_reason"] is None and record["attempts"] == 2
    assert record["attempt_errors"] == [{"type": "client_stop", "message": "recovered by request"}]
    # the Stopped attempt's estimate is added to the provider's figure
    assert record["usage"]["source"] == "estimated" and record["usage"]["output_tokens"] == 1 + 1


# -- a bug in the pump ------------------------------------------------------------------------


async def test_an_exception_inside_the_pump_ends_the_session_errored_internal_error(
    store: SessionStore, client: UpstreamClient
) -> None:
    async with ScriptedUpstream([Reply(chunks=answer("boom", "more"))]) as upstream:
        observer = Recorder(fail_on_first_token=True)
        session = harness(store, client, upstream).session(observer)
        assert await ended(launch(session)) is None
        await within(upstream.seen[0].gone.wait())  # the upstream is closed, not pooled

    assert observer.states == ["streaming", "finalizing"] and observer.finished == [ERRORED]
    check_over(session)
    assert types(session) == ["status", "start", "error"]
    error = last_error(session)
    assert error.type == "internal_error" and "RuntimeError: observer bug" in error.message
    record = await check_stored(store, session)
    assert record["state"] == ERRORED and record["error"]["type"] == "internal_error"


# -- backpressure -----------------------------------------------------------------------------


async def _follow(session: Session, reader: Reader) -> None:
    """A client whose socket drains: it sends every entry as it comes, to the log's end."""
    while not session.log.closed:
        reader.advance(len(session.log))
        await session.log.wait_beyond(reader.position)


@pytest.mark.parametrize("beside", [False, True], ids=["alone", "beside-one-keeping-up"])
async def test_a_reader_too_far_behind_holds_the_upstream_until_it_catches_up(
    client: UpstreamClient, beside: bool
) -> None:
    store = MemoryStore()
    go = asyncio.Event()
    first = [f"a{n} " for n in range(12)]
    rest = [f"b{n} " for n in range(12)]
    reply = Reply(chunks=[OPENING, *words(*first), go, *words(*rest), *ending(5, 24)])
    async with ScriptedUpstream([reply]) as upstream:
        observer = Recorder()
        session = harness(store, client, upstream).session(observer, buffer_events=4)
        # ``beside``: another reader, attached first, keeps up all along; the furthest behind
        # decides the hold, not the first
        ahead = asyncio.ensure_future(_follow(session, session.attach(0))) if beside else None
        reader = session.attach(0)  # a client whose socket is full: it never advances
        task = launch(session)
        await until(session, lambda: session._held_since is not None)
        held_at = len(session.log)
        assert held_at < 2 + len(first) + len(rest)
        assert reader.position == 0

        go.set()  # the rest is written to the socket, which the session does not read
        await asyncio.sleep(0.05)
        assert len(session.log) == held_at and not session.settled.is_set()

        following = asyncio.ensure_future(_follow(session, reader))  # it keeps up from now on
        assert await ended(task) is None
        await within(following)
        if ahead is not None:
            await within(ahead)

    assert observer.states == ["streaming", "finalizing"] and observer.finished == [COMPLETE]
    check_over(session)
    record = await check_stored(store, session)
    assert record["state"] == COMPLETE and record["text"] == "".join(first + rest)
    assert record["telemetry"]["blocked_ms"] > 0
