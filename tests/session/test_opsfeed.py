"""The operations feed: coalesced diffs of derived session state, urgent flushes, and readers
that join late. Real sessions (never started: the test moves their clock and accumulator as a
pump would), a real in-process bus."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sluice import events as ev
from sluice.agents.declare import AgentTools
from sluice.agents.run import AgentRun
from sluice.config import AgentConfig, ConfigError, OpsSettings, ProviderConfig, load_settings
from sluice.pricing import PriceBook
from sluice.providers import Route
from sluice.session.bus import MemoryBus, Message
from sluice.session.manager import SessionManager
from sluice.session.opsfeed import (
    GAP_TAIL,
    PROMPT_LINE,
    OpsFeed,
    SessionTrail,
    follow_session,
    prompt_line,
    recorded_row,
)
from sluice.session.session import COMPLETE, ERRORED, STREAMING, Session, SessionSpec
from sluice.session.store import MemoryStore
from sluice.turn import Message as TurnMessage
from sluice.turn import TextPart, TurnRequest
from sluice.upstream import UpstreamClient

WAIT = 10  # seconds: the bound on every wait for a message (a hang fails, never blocks)


class Harness:
    def __init__(self, feed: OpsFeed, bus: MemoryBus) -> None:
        self.feed = feed
        self.bus = bus
        self.manager = SessionManager(
            MemoryStore(), bus, UpstreamClient(), PriceBook({}), feed=feed
        )
        self.count = 0

    def session(
        self, max_tokens: int | None = 100, provider: str = "sim", agent: str | None = None
    ) -> Session:
        self.count += 1
        turn = TurnRequest(
            model=f"{provider}/support",
            messages=[TurnMessage("user", [TextPart("hello")])],
            max_tokens=max_tokens,
        )
        spec = SessionSpec(
            route=Route(ProviderConfig(provider, "sim"), "support", "chat"),
            turn=turn,
            body=b"{}",
            url="http://127.0.0.1:9/v1/chat/completions",
            headers={},
            endpoint="native",
            passthrough=False,
            disconnect_policy="cancel",
        )
        session_id, deps = f"op-test{self.count:04d}", self.manager.deps()
        if agent is None:
            session = Session(session_id, spec, deps)
        else:
            config = AgentConfig(name=agent, model=turn.model)
            session = AgentRun(
                session_id, spec, deps, agent=config, tools=AgentTools([]), build=lambda t: b"{}"
            )
        self.manager.on_state(session)  # as the manager's launch does
        return session

    def stream(self, session: Session) -> None:
        session.state = STREAMING
        self.manager.on_state(session)

    def token(self, session: Session, at: float, text: str = "word ") -> None:
        """One answer token, as the pump records it (the feed is told of the first only)."""
        first = session.clock.first_token is None
        session.clock.delta(at, True)
        session.acc.apply(ev.TextDelta(text))
        session.log.append(ev.TextDelta(text))
        if first:
            self.manager.on_first_token(session)

    def finish(self, session: Session, state: str = COMPLETE) -> None:
        session.state = state
        if state == ERRORED:
            session.error = {"type": "upstream_stalled", "message": "no byte for 5 s"}
        session.cost = {"total": 0.0001, "source": "config"}
        session.finished.set()
        self.manager.feed.finished(session)


@pytest.fixture
def harness() -> Harness:
    bus = MemoryBus()
    return Harness(OpsFeed(bus, OpsSettings(flush_interval=0.1)), bus)


def apply(view: dict[str, Any], message: Message) -> dict[str, Any]:
    """What a page does with a feed message (ops.js, in Python): the next view."""
    if message["type"] == "snapshot":
        return copy.deepcopy({"seq": message["seq"], "sessions": message["sessions"]}) | {
            "totals": dict(message["totals"])
        }
    assert message["seq"] == view["seq"] + 1, "a diff must follow the view it applies to"
    sessions = view["sessions"]
    for session_id, change in message["sessions"].items():
        row = sessions.setdefault(session_id, {})
        change = dict(change)
        added = change.pop("gaps_add", None)
        row.update(change)
        if added is not None:
            row["gaps"] = (row["gaps"] + added)[-GAP_TAIL:]
    for session_id in message.get("removed", ()):
        sessions.pop(session_id, None)
    view["totals"].update(message.get("totals", {}))
    view["seq"] = message["seq"]
    return view


async def next_message(messages: AsyncIterator[Message]) -> Message:
    async with asyncio.timeout(WAIT):
        return await anext(messages)


# -- diffs ------------------------------------------------------------------------------------


async def test_a_new_session_is_sent_whole_then_only_its_changed_fields(harness: Harness) -> None:
    session = harness.session()
    first = harness.feed.collect()
    assert first is not None
    row = first["sessions"][session.id]
    assert row["state"] == "starting"
    assert (row["provider"], row["model"], row["limit"]) == ("sim", "support", 100)

    harness.stream(session)
    now = time.monotonic()
    for i in range(5):
        harness.token(session, now + i * 0.02)
    second = harness.feed.collect()
    assert second is not None
    change = second["sessions"][session.id]
    assert change["state"] == "streaming"
    assert change["tokens"] == 5
    assert change["gaps_add"] == [20.0, 20.0, 20.0, 20.0]
    assert "gaps" not in change
    for unchanged in ("id", "provider", "model", "limit", "created", "attempts"):
        assert unchanged not in change

    assert harness.feed.collect() is None, "nothing changed: nothing to publish"


async def test_the_gap_tail_is_bounded_and_sent_as_an_append(harness: Harness) -> None:
    session = harness.session()
    harness.feed.collect()
    now = time.monotonic()
    for i in range(200):
        harness.token(session, now + i * 0.01)
    message = harness.feed.collect()
    assert message is not None
    change = message["sessions"][session.id]
    assert len(change["gaps_add"]) == GAP_TAIL
    assert change["gap_count"] == 199


async def test_totals_count_live_sessions_errors_and_spend(harness: Harness) -> None:
    sessions = [harness.session() for _ in range(4)]
    harness.feed.collect()
    harness.finish(sessions[0])
    harness.finish(sessions[1], ERRORED)
    message = harness.feed.collect()
    assert message is not None
    totals = harness.feed.snapshot()["totals"]
    assert totals["live"] == 2
    assert totals["sessions"] == 4
    assert totals["error_rate"] == 0.5
    assert totals["spend"] == pytest.approx(0.0002)
    assert message["sessions"][sessions[1].id]["reason"] == "upstream_stalled"


async def test_finished_sessions_past_the_limit_are_removed(harness: Harness) -> None:
    harness.feed.settings = OpsSettings(flush_interval=0.1, recent_sessions=2)
    sessions = [harness.session() for _ in range(4)]
    harness.feed.collect()
    for session in sessions[:3]:
        harness.finish(session)
    message = harness.feed.collect()
    assert message is not None
    assert message["removed"] == [sessions[0].id]
    assert set(harness.feed.snapshot()["sessions"]) == {s.id for s in sessions[1:]}


def stored(session_id: str, created: float, state: str = COMPLETE, **extra: Any) -> dict[str, Any]:
    """A record as an earlier run of the gateway stored it."""
    return {
        "id": session_id,
        "state": state,
        "created_at": created,
        "provider": "sim",
        "model": "support",
        "prompt": "Where is my order?\nIt was due on Monday.",
        "usage": {"output_tokens": 42},
        "telemetry": {"ttft_ms": 310.0, "token_rate": 39.5, "backpressure": "low"},
        "cost": {"total": 0.00002, "source": "config"},
        "attempts": 1,
        **extra,
    }


async def test_the_records_of_earlier_runs_are_rows_once_and_within_the_limit(
    harness: Harness,
) -> None:
    harness.feed.settings = OpsSettings(flush_interval=0.1, recent_sessions=3)
    store = MemoryStore()
    for index in range(4):
        await store.put(stored(f"op-old{index}", 1000.0 + index))
    await store.put(stored("op-gone", 1010.0, state=STREAMING))  # a run that stopped mid-way
    mine = harness.session()
    harness.finish(mine)
    await store.put(mine.record())
    harness.feed.collect()

    await harness.feed.load_recorded(store)
    await harness.feed.load_recorded(store)  # read once
    rows = harness.feed.snapshot()["sessions"]
    # The newest three records, this run's own session among them (its own row, not the record's).
    assert set(rows) == {mine.id, "op-old3", "op-old2"}
    old = rows["op-old3"]
    assert (old["state"], old["tokens"], old["ttft_ms"], old["cost"]) == (
        "complete",
        42,
        310.0,
        0.00002,
    )
    assert old["prompt"] == "Where is my order?\u2026"
    assert rows[mine.id]["prompt"] == "hello"
    harness.feed.collect()
    assert harness.feed.snapshot()["totals"]["sessions"] == 3


def test_a_rows_prompt_is_its_first_line_cut_to_the_column_budget() -> None:
    assert prompt_line("  \n  Where is my order?  \nmore") == "Where is my order?\u2026"
    assert prompt_line("one line") == "one line"
    assert prompt_line("") == ""
    long = prompt_line("x" * 500)
    assert len(long) == PROMPT_LINE and long.endswith("\u2026")


# -- cadence ----------------------------------------------------------------------------------


async def test_many_token_updates_make_at_most_one_message_per_window() -> None:
    bus = MemoryBus(queue_size=10_000)
    interval = 0.1
    harness = Harness(OpsFeed(bus, OpsSettings(flush_interval=interval)), bus)
    sessions = [harness.session() for _ in range(20)]
    async with harness.feed.follow() as messages:
        assert (await next_message(messages))["type"] == "snapshot"
        runner = asyncio.ensure_future(harness.feed.run())
        try:
            started = time.monotonic()
            updates = 0
            for _ in range(300):
                for session in sessions:
                    harness.token(session, time.monotonic())
                    updates += 1
                await asyncio.sleep(0.002)
            elapsed = time.monotonic() - started
            await asyncio.sleep(interval * 1.5)  # the last window's flush
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        received = []
        while True:
            try:
                received.append(await asyncio.wait_for(anext(messages), 0.01))
            except TimeoutError:
                break
    # One message per window over the run and the wait after it, plus the urgent flushes
    # (20 new sessions, 20 first tokens: a burst coalesced into a few messages).
    windows = (elapsed + interval * 1.5) / interval
    assert len(received) <= windows + 4, (len(received), windows)
    assert len(received) < updates / 50
    last = received[-1]["sessions"]
    view: dict[str, Any] = {}
    for message in received:
        for session_id, change in message["sessions"].items():
            view.setdefault(session_id, {}).update(change)
    assert {view[s.id]["tokens"] for s in sessions} == {300}, last


async def test_with_no_reader_the_feed_reads_no_session_and_catches_up_for_the_first() -> None:
    bus = MemoryBus()
    feed = OpsFeed(bus, OpsSettings(flush_interval=0.1), urgent_spacing=0.0)
    harness = Harness(feed, bus)
    session = harness.session()
    harness.stream(session)
    runner = asyncio.ensure_future(feed.run())
    try:
        for i in range(5):
            harness.token(session, time.monotonic() + i)
        await asyncio.sleep(0.35)
        assert feed.published == 0  # nobody follows: nothing derived, nothing sent
        async with feed.follow() as messages:
            snapshot = await next_message(messages)
        assert snapshot["sessions"][session.id]["tokens"] == 5
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_first_token_and_terminal_state_are_sent_without_waiting_for_the_window() -> None:
    bus = MemoryBus()
    # A window of an hour: any message within the test was sent because it was urgent.
    feed = OpsFeed(bus, OpsSettings(flush_interval=3600.0), urgent_spacing=0.0)
    harness = Harness(feed, bus)
    async with feed.follow() as messages:
        assert (await next_message(messages))["type"] == "snapshot"
        runner = asyncio.ensure_future(feed.run())
        try:
            session = harness.session()
            created = await next_message(messages)
            assert created["sessions"][session.id]["state"] == "starting"

            harness.stream(session)
            harness.token(session, time.monotonic())
            first = await next_message(messages)
            assert first["sessions"][session.id]["tokens"] == 1
            assert first["sessions"][session.id]["ttft_ms"] is not None

            for i in range(10):  # more tokens: not urgent, nothing is sent within the window
                harness.token(session, time.monotonic() + i)
            published = feed.published
            await asyncio.sleep(0.3)
            assert feed.published == published

            harness.finish(session)
            final = await next_message(messages)
            change = final["sessions"][session.id]
            assert change["state"] == "complete"
            assert change["tokens"] == 11
            assert change["cost"] == 0.0001
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)


# -- readers ----------------------------------------------------------------------------------


async def test_a_late_reader_gets_a_snapshot_then_every_later_diff_once(harness: Harness) -> None:
    feed = harness.feed
    early = [harness.session() for _ in range(3)]
    for session in early:
        harness.token(session, time.monotonic())
    feed.collect()
    feed.collect()
    harness.finish(early[0])
    assert feed.collect() is not None
    assert feed.seq >= 2

    async with feed.follow() as messages:
        snapshot = await next_message(messages)
        assert snapshot["type"] == "snapshot"
        assert snapshot["seq"] == feed.seq
        view = apply({}, snapshot)
        assert set(view["sessions"]) == {s.id for s in early}

        late = harness.session()
        harness.token(late, time.monotonic())
        harness.token(early[1], time.monotonic() + 0.05)
        await feed.flush()
        harness.finish(late)
        await feed.flush()
        for _ in range(2):
            message = await next_message(messages)
            assert message["type"] == "diff"
            view = apply(view, message)
        expected = feed.snapshot()
        assert view["seq"] == expected["seq"]
        assert view["sessions"] == expected["sessions"]
        assert view["totals"] == expected["totals"]


async def test_a_reader_that_fell_behind_gets_a_fresh_snapshot_not_a_gap() -> None:
    bus = MemoryBus(queue_size=2)
    harness = Harness(OpsFeed(bus, OpsSettings(flush_interval=0.1)), bus)
    feed = harness.feed
    session = harness.session()
    async with feed.follow() as messages:
        first = await next_message(messages)
        view = apply({}, first)
        for i in range(5):  # the reader takes nothing: the bus drops the oldest three
            harness.token(session, time.monotonic() + i * 0.01)
            await feed.flush()
        again = await next_message(messages)
        assert again["type"] == "snapshot"
        assert again["seq"] == first["seq"] + 5
        view = apply(view, again)
        harness.token(session, time.monotonic() + 1)
        await feed.flush()
        after = await next_message(messages)
        assert (after["type"], after["seq"]) == ("diff", again["seq"] + 1)
        view = apply(view, after)
        assert view["sessions"] == feed.snapshot()["sessions"]


async def test_a_runs_row_carries_its_agent_its_step_and_the_steps_ended(
    harness: Harness,
) -> None:
    plain, run = harness.session(), harness.session(agent="support")
    first = harness.feed.collect()
    assert first is not None
    row = first["sessions"][plain.id]
    assert (row["agent"], row["step"], row["steps"]) == (None, None, None)
    assert (
        first["sessions"][run.id] | {"agent": "support", "step": 0, "steps": 0}
        == (first["sessions"][run.id])
    )
    assert isinstance(run, AgentRun)
    harness.stream(run)
    run.step = 1
    run.log.append(ev.StepStart(1))
    change = harness.feed.collect()
    assert change is not None
    assert change["sessions"][run.id]["step"] == 1
    assert "agent" not in change["sessions"][run.id]  # only what changed
    run.steps.append({"step": 1, "duration": 0.5, "text": "", "tool_calls": []})
    run.step = 2
    run.log.append(ev.StepEnd(1, "tool_calls", None, 0.5))
    run.log.append(ev.StepStart(2))
    change = harness.feed.collect()
    assert change is not None
    assert (change["sessions"][run.id]["step"], change["sessions"][run.id]["steps"]) == (2, 1)


def test_a_stored_runs_row_counts_the_steps_it_ended() -> None:
    record = {
        "id": "op-stored",
        "state": "cancelled",
        "agent": "support",
        "step": 2,
        "steps": [{"step": 1, "duration": 0.5}, {"step": 2, "text": "", "tool_calls": []}],
    }
    row = recorded_row(record)
    assert (row["agent"], row["step"], row["steps"]) == ("support", 2, 1)
    plain = recorded_row({"id": "op-plain", "state": "complete"})
    assert (plain["agent"], plain["step"], plain["steps"]) == (None, None, None)


# -- one session's page -----------------------------------------------------------------------


def test_the_trail_summarises_runs_of_deltas_and_lists_milestones() -> None:
    trail = SessionTrail()
    events: list[tuple[str, dict[str, Any]]] = [
        ("status", {"phase": "waiting", "detail": None}),
        ("start", {"response_id": "r1", "model": "support"}),
        *[("text", {"text": f"w{i} "}) for i in range(50)],
        ("tool_call.start", {"index": 0, "id": "c1", "name": "lookup_order"}),
        *[("tool_call.delta", {"index": 0, "fragment": "{}"}) for _ in range(3)],
        ("tool_call.done", {"index": 0, "id": "c1", "name": "lookup_order", "status": "ok"}),
        ("usage", {"input_tokens": 12, "output_tokens": 53, "final": True}),
        ("finish", {"reason": "stop", "raw": "stop"}),
    ]
    for seq, (kind, data) in enumerate(events, start=1):
        trail.apply(seq, kind, data)
    kinds = [(e["kind"], e.get("count")) for e in trail.timeline]
    assert kinds == [
        ("status", None),
        ("start", None),
        ("text", 50),
        ("tool_call.start", None),
        ("tool_call.delta", 3),
        ("tool_call.done", None),
        ("usage", None),
        ("finish", None),
    ]
    assert trail.timeline[2]["seq"] == 3 and trail.timeline[2]["to"] == 52
    assert trail.text == "".join(f"w{i} " for i in range(50))


def test_the_trail_lists_a_signature_by_its_size_never_its_value() -> None:
    trail = SessionTrail()
    trail.apply(1, "reasoning", {"text": "hmm"})
    trail.apply(2, "signature", {"signature": "EqQBCgIYAhIM", "index": 0, "redacted": False})
    trail.apply(3, "signature", {"signature": "EmwK", "index": 1, "redacted": True})
    labels = [e["label"] for e in trail.timeline]
    assert labels[1:] == [
        "reasoning signature (12 characters)",
        "redacted reasoning (4 characters)",
    ]
    assert "EqQB" not in repr(trail.timeline) and trail.text == ""


def test_a_retry_restarts_the_answer_in_the_trail() -> None:
    trail = SessionTrail()
    trail.apply(1, "text", {"text": "first try"})
    trail.apply(2, "error", {"type": "upstream_reset", "message": "reset"})
    trail.apply(3, "retry", {"attempt": 2, "reason": "upstream_reset", "delay": 0.0})
    trail.apply(4, "text", {"text": "second"})
    assert trail.text == "second"
    assert [e["kind"] for e in trail.timeline] == ["text", "error", "retry", "text"]


async def test_a_session_page_feed_sends_text_as_appends_then_the_final_record(
    harness: Harness,
) -> None:
    session = harness.session()
    harness.stream(session)
    feed = follow_session(session, interval=0.1)
    snapshot = await next_message(feed)
    assert snapshot["type"] == "snapshot"
    assert snapshot["text"] == ""
    for word in ("Hello ", "there"):
        harness.token(session, time.monotonic(), word)
    session.log.notify()
    update = await next_message(feed)
    assert update["type"] == "update"
    assert update["text_add"] == "Hello there"
    assert update["timeline"][-1]["count"] == 2
    harness.finish(session)
    final = await next_message(feed)
    assert final["type"] == "final"
    assert final["record"]["state"] == "complete"
    with pytest.raises(StopAsyncIteration):
        await next_message(feed)


RUN: list[tuple[str, dict[str, Any]]] = [
    ("step.start", {"step": 1}),
    ("text", {"text": "Let me check."}),
    ("tool_call.start", {"index": 0, "id": "c1", "name": "echo"}),
    ("tool_call.delta", {"index": 0, "fragment": '{"text": "<b>hi</b>"}'}),
    ("tool_call.done", {"index": 0, "id": "c1", "name": "echo", "status": "ok"}),
    ("finish", {"reason": "tool_calls", "raw": "tool_calls"}),
    ("tool.start", {"id": "c1", "name": "echo", "tool": "t.echo", "arguments": {"text": "<b>"}}),
    ("tool.progress", {"id": "c1", "progress": 1, "total": 2, "message": "half"}),
    ("tool.progress", {"id": "c1", "progress": 2, "total": 2, "message": "all"}),
    ("tool.end", {"id": "c1", "name": "echo", "duration": 0.012, "result": "echo: <b>"}),
    ("step.end", {"step": 1, "finish_reason": "tool_calls", "usage": None, "duration": 1.5}),
    ("step.start", {"step": 2}),
    ("text", {"text": "Done."}),
    ("finish", {"reason": "stop", "raw": "stop"}),
    ("step.end", {"step": 2, "finish_reason": "stop", "usage": None, "duration": 0.2}),
]


def test_the_trail_lists_a_runs_steps_and_tools_and_keeps_its_steps() -> None:
    trail = SessionTrail()
    for seq, (kind, data) in enumerate(RUN, start=1):
        trail.apply(seq, kind, data)
    labels = [e["label"] for e in trail.timeline if e["kind"].startswith(("step.", "tool."))]
    assert labels == [
        "step 1 began",
        "tool t.echo called",
        "tool progress",
        "tool echo: ok after 12 ms",
        "step 1 ended (tool_calls) after 1.50 s",
        "step 2 began",
        "step 2 ended (stop) after 200 ms",
    ]
    progress = next(e for e in trail.timeline if e["kind"] == "tool.progress")
    assert progress["count"] == 2
    assert trail.text == "Done."  # (a run's answer is its last step's)
    first, second = trail.run.steps
    assert first["text"] == "Let me check." and second["text"] == ""
    [call] = first["calls"]
    assert (call["tool"], call["state"], call["result"]) == ("t.echo", "ok", "echo: <b>")
    assert call["arguments"] == '{\n  "text": "<b>"\n}'


async def test_a_session_page_feed_sends_a_runs_steps_when_they_change(harness: Harness) -> None:
    run = harness.session(agent="support")
    harness.stream(run)
    feed = follow_session(run, interval=0.05)
    snapshot = await next_message(feed)
    assert "steps" not in snapshot  # (none yet)
    run.log.append(ev.StepStart(1))
    run.log.append(ev.ToolStart("c1", "echo", "t.echo", {"text": "x"}))
    run.log.notify()
    update = await next_message(feed)
    assert [step["step"] for step in update["steps"]] == [1]
    assert update["steps"][0]["calls"][0]["state"] == "running"
    run.log.append(ev.TextDelta("more"))
    run.log.notify()
    update = await next_message(feed)
    assert "steps" not in update and update["text_add"] == "more"
    run.log.append(ev.ToolEnd("c1", "echo", 0.1, "echo: x"))
    run.log.notify()
    update = await next_message(feed)
    assert (
        update["steps"][0]["calls"][0] | {"duration": 0.1, "result": "echo: x"}
        == (update["steps"][0]["calls"][0])
    )


# -- configuration ----------------------------------------------------------------------------


def test_the_flush_interval_is_read_and_bounded(tmp_path: Any) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[ops]\nflush_interval = 0.2\nrecent_sessions = 50\n")
    settings = load_settings(good)
    assert (settings.ops.flush_interval, settings.ops.recent_sessions) == (0.2, 50)
    assert load_settings(None).ops.flush_interval == 0.15
    for body, complaint in [
        ("flush_interval = 0.05", "between 0.1 and 0.25"),
        ("flush_interval = 1", "between 0.1 and 0.25"),
        ("flush_interval = true", "must be a number"),
        ("recent_sessions = -1", "non-negative integer"),
        ("window = 0.2", "not a setting"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(f"[ops]\n{body}\n")
        with pytest.raises(ConfigError, match=complaint):
            load_settings(bad)


async def test_with_nobody_watching_a_finished_session_is_let_go_of_at_once(
    harness: Harness,
) -> None:
    """Its final row is kept, not the session: its event log goes with it."""
    session = harness.session()
    harness.stream(session)
    harness.token(session, time.monotonic())
    harness.finish(session)
    assert harness.feed.followers == 0
    assert session.id not in harness.feed._sessions
    message = harness.feed.collect()
    assert message is not None and message["sessions"][session.id]["state"] == COMPLETE
    assert harness.feed.snapshot()["sessions"][session.id]["tokens"] == 1


class FailingStore(MemoryStore):
    """A store whose first read fails, as a locked or missing database file would."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def query(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        self.reads += 1
        if self.reads == 1:
            raise OSError("database is locked")
        return await super().query(*args, **kwargs)


async def test_a_failed_read_of_the_records_is_tried_again_by_the_next_view(
    harness: Harness,
) -> None:
    store = FailingStore()
    await store.put(stored("op-old0", 1000.0))
    with pytest.raises(OSError):
        await harness.feed.load_recorded(store)
    await harness.feed.load_recorded(store)
    assert "op-old0" in harness.feed.snapshot()["sessions"]
