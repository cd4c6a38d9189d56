"""The operations feed: every session's derived state, coalesced into one message per window.

The feed costs nothing per relayed chunk. It *pulls*: once per flush window a single task
(owned by the gateway's lifespan) reads each live session's state, token count, clock and cost,
compares the rows with what it last published, and publishes one message on the bus with only
the fields that changed, plus the totals. A session's first answer token, every terminal state
and a new session are urgent: they cut the window short and are published at once (urgent
flushes are still at least a quarter of a window apart, so a burst of them stays a handful of
messages).

Messages on ``OPS_TOPIC`` (every one carries ``seq``, rising by one)::

    {"type": "diff", "seq": n, "sessions": {id: {changed fields}}, "removed": [id, ...],
     "totals": {changed totals}}

A row's fields are listed in ``derive``. ``gaps`` (the last inter-token gaps, milliseconds) is
sent whole for a new row or a new attempt, and otherwise as ``gaps_add``: only the gaps measured
since the last message, which the reader appends (keeping the last ``GAP_TAIL``).

``follow()`` is how a view reads the feed: a snapshot first (``{"type": "snapshot", "seq": n,
"sessions": {id: row}, "totals": {...}}``), then every diff after it, in order. A reader that
fell behind (the bus dropped messages it had not taken) gets a fresh snapshot instead of a gap.

``SessionTrail`` and ``follow_session`` do the same for one session's page: the answer as it
streams, a summarised timeline of its events and an agent run's steps (sent when they change),
at most once per window.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from sluice import events as ev
from sluice.config import OpsSettings
from sluice.session.bus import Bus, Message
from sluice.session.eventlog import Entry
from sluice.session.session import CANCELLED, ERRORED, TERMINAL_STATES, Session
from sluice.session.smoothness import SmoothnessBook
from sluice.session.steps import RunSteps, step_ran


class RecordSource(Protocol):
    """Where finished sessions' records are read from (the session store)."""

    async def query(
        self, limit: int, state: str | None, provider: str | None
    ) -> list[dict[str, Any]]: ...


OPS_TOPIC = "ops"

#: inter-token gaps a row carries for its sparkline
GAP_TAIL = 30
#: finished sessions the error rate is computed over
ERROR_RATE_OVER = 100
#: seconds of history the gateway-wide token rate is measured over
RATE_SPAN = 1.0
#: urgent flushes are at least this share of a window apart
URGENT_SPACING = 0.25

Row = dict[str, Any]

#: characters of the prompt's first line a row carries
PROMPT_LINE = 120


def prompt_line(prompt: str) -> str:
    """The prompt's first non-blank line, cut to ``PROMPT_LINE`` characters (with an ellipsis
    where it was cut, or where more lines follow)."""
    lines = [line.strip() for line in prompt.strip().splitlines()] or [""]
    first = lines[0]
    if len(first) > PROMPT_LINE:
        return first[: PROMPT_LINE - 1].rstrip() + "\u2026"
    return first + ("\u2026" if len(lines) > 1 else "")


def derive(session: Session, typical: dict[str, float] | None = None) -> Row:
    """The derived state of one session, as the operations center shows it.

    Reads the session's clock and accumulator without copying them: the gaps' tail is a slice
    of at most ``GAP_TAIL`` doubles.
    """
    clock = session.clock
    route = session.route
    state = session.state
    final = state in TERMINAL_STATES
    tokens = session.output_tokens()
    gaps = clock.gaps
    # in ms to a tenth, half up (a gap is never negative): ``round(g * 1000, 1)`` converts each
    # to decimal, thirty times per session and per tick, at some 2 k instructions a call
    tail = [int(g * 10_000 + 0.5) / 10 for g in gaps[-GAP_TAIL:]]
    max_tokens = session.spec.turn.max_tokens
    estimate = None if typical is None else typical.get(route.label)
    if max_tokens:
        limit, limit_source = max_tokens, "max_tokens"
    elif estimate:
        limit, limit_source = max(round(estimate), tokens), "estimate"
    else:
        limit, limit_source = None, None
    if final:
        rate = session.telemetry()["token_rate"]
    else:
        span = sum(tail)
        rate = round(len(tail) * 1000 / span, 1) if span > 0 else None
    cost = session.cost or {}
    error = session.error or {}
    reason = error.get("type") or session.cancel_reason
    run = session.run_progress()
    return {
        "id": session.id,
        "state": state,
        "provider": route.provider.name,
        "model": route.model,
        "prompt": prompt_line(session.redactor.text(session.spec.turn.prompt_preview())),
        "created": round(session.created_at, 3),
        "tokens": tokens,
        "limit": limit,
        "limit_source": limit_source,
        "ttft_ms": (
            None
            if clock.first_token is None
            else round((clock.first_token - clock.started) * 1000, 1)
        ),
        "rate": rate,
        "backpressure": clock.backpressure(),
        "gap_count": len(gaps),
        "gaps": tail,
        "cost": cost.get("total"),
        "cost_source": cost.get("source"),
        "reason": reason,
        "message": (error.get("message") or "")[:200] or None,
        "attempts": session.attempts,
        "node": session.deps.node,
        # an agent's run: its agent (empty for a model's turn), step under way, steps ended
        "agent": None if run is None else run[0],
        "step": None if run is None else run[1],
        "steps": None if run is None else run[2],
    }


def recorded_row(record: dict[str, Any]) -> Row:
    """The row of a finished session known only from its stored record (one that a previous
    process of the gateway ran): the same fields as ``derive``, without the gaps."""
    telemetry = record.get("telemetry") or {}
    cost = record.get("cost") or {}
    error = record.get("error") or {}
    return {
        "id": record["id"],
        "state": record["state"],
        "provider": record.get("provider", ""),
        "model": record.get("model", ""),
        "prompt": prompt_line(record.get("prompt") or record.get("prompt_preview") or ""),
        "created": round(record.get("created_at", 0.0), 3),
        "tokens": (record.get("usage") or {}).get("output_tokens", 0),
        "limit": None,
        "limit_source": None,
        "ttft_ms": telemetry.get("ttft_ms"),
        "rate": telemetry.get("token_rate"),
        "backpressure": telemetry.get("backpressure") or "",
        "gap_count": 0,
        "gaps": [],
        "cost": cost.get("total"),
        "cost_source": cost.get("source"),
        "reason": error.get("type") or record.get("cancel_reason"),
        "message": (error.get("message") or "")[:200] or None,
        "attempts": record.get("attempts", 1),
        "node": record.get("node"),
        "agent": record.get("agent"),
        "step": record.get("step"),
        "steps": None
        if record.get("steps") is None
        else sum(1 for step in record["steps"] if "duration" in step),
    }


def diff_row(old: Row | None, new: Row) -> Row:
    """The fields of ``new`` that differ from ``old`` (all of them for a new row), with the
    gaps sent as an append when that is enough."""
    if old is None:
        return dict(new)
    changed = {k: v for k, v in new.items() if k != "gaps" and old.get(k) != v}
    added = new["gap_count"] - old["gap_count"]
    if new["attempts"] != old["attempts"] or added < 0:
        changed["gaps"] = new["gaps"]
    elif added > 0:
        changed["gaps_add"] = new["gaps"][-min(added, GAP_TAIL) :]
    return changed


class OpsFeed:
    """Derived state of every live and recent session, published as coalesced diffs.

    The session manager calls ``state_changed``, ``first_token`` and ``finished``; none of
    them does more than mark a session and, when urgent, wake the flush task.
    """

    def __init__(
        self,
        bus: Bus,
        settings: OpsSettings | None = None,
        *,
        topic: str = OPS_TOPIC,
        urgent_spacing: float | None = None,
    ) -> None:
        self.bus = bus
        self.settings = settings or OpsSettings()
        #: the least time between two flushes when urgent changes follow each other
        self.urgent_spacing = (
            self.settings.flush_interval * URGENT_SPACING
            if urgent_spacing is None
            else urgent_spacing
        )
        self.topic = topic
        #: this process's name on a bus several processes share (``clusterfeed``): every
        #: message it publishes says so; None for a feed of its own
        self.node: str | None = None
        #: while someone on another process watches (``time.monotonic()``), the feed
        #: publishes as if it had a follower here
        self.watched_until = 0.0
        self.seq = 0
        #: every session shown, in the order they started
        self._sessions: dict[str, Session] = {}
        #: sessions read every window (not final yet, or final and not yet published)
        self._active: set[str] = set()
        #: the rows as of ``seq``
        self._rows: dict[str, Row] = {}
        self._totals: dict[str, Any] = {}
        self._urgent = asyncio.Event()
        #: finished sessions in the order they finished, oldest first
        self._finished: dict[str, None] = {}
        #: the final rows of sessions that finished while nobody watched, not yet collected
        self._settled: dict[str, Row] = {}
        self._outcomes: deque[bool] = deque(maxlen=ERROR_RATE_OVER)
        self._spend = 0.0
        self._unpriced = 0
        self._tokens_seen: dict[str, int] = {}
        self._tokens_total = 0
        self._rate_samples: deque[tuple[float, int]] = deque()
        #: recent streams' smoothness by provider and model
        self.smoothness = SmoothnessBook()
        #: output tokens of recent complete sessions per route, for progress without max_tokens
        self._typical: dict[str, float] = {}
        #: what each row was derived from: a session whose stamp is unchanged is not read again
        self._stamps: dict[str, tuple[str, int, int]] = {}
        #: readers following the feed; with none, nothing is derived at all
        self.followers = 0
        self.published = 0
        #: whether the rows of sessions stored by earlier processes were read (``load_recorded``)
        self._recorded: asyncio.Future[None] | None = None

    @property
    def watched(self) -> bool:
        """Whether anyone follows the feed, here or on another process."""
        return self.followers > 0 or time.monotonic() < self.watched_until

    # -- hooks (called by the session manager) ------------------------------------------------

    def state_changed(self, session: Session) -> None:
        """A session started, or a new attempt started, or it changed state."""
        known = session.id in self._sessions
        self._sessions[session.id] = session
        self._active.add(session.id)
        if not known or session.id in self._finished:
            self._finished.pop(session.id, None)
            self._urgent.set()

    def first_token(self, session: Session) -> None:
        self._active.add(session.id)
        self._urgent.set()

    def finished(self, session: Session) -> None:
        """The session's record is final: counted in the totals, published at once."""
        self._sessions[session.id] = session
        self._active.add(session.id)
        self._finished[session.id] = None
        self._outcomes.append(session.state == ERRORED)
        self.smoothness.add(session.route.provider.name, session.route.model, session.telemetry())
        total = (session.cost or {}).get("total")
        if total is None:
            self._unpriced += 1
        else:
            self._spend += total
        if session.state not in (ERRORED, CANCELLED) and session.spec.turn.max_tokens is None:
            label = session.route.label
            tokens = session.output_tokens()
            previous = self._typical.get(label)
            self._typical[label] = tokens if previous is None else 0.8 * previous + 0.2 * tokens
        if not self.watched:
            self._settle(session)
        self._urgent.set()

    def _settle(self, session: Session) -> None:
        """Nobody watches: the finished session's final row is derived now, once, and the feed
        lets go of the session (its event log and all) rather than hold it, up to
        ``recent_sessions`` of them, for a reader who may never come."""
        session_id = session.id
        row = derive(session, self._typical)
        self._count_tokens(session_id, row["tokens"])
        self._settled[session_id] = row
        self._active.discard(session_id)
        self._tokens_seen.pop(session_id, None)
        self._stamps.pop(session_id, None)
        self._sessions.pop(session_id, None)

    # -- the flush task -----------------------------------------------------------------------

    async def run(self) -> None:
        """Publish once per window while anything changes, and at once on urgent changes.
        Runs until cancelled."""
        interval = self.settings.flush_interval
        spacing = self.urgent_spacing
        last = time.monotonic() - interval
        while True:
            if not self._urgent.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, last + interval - time.monotonic())):
                        await self._urgent.wait()
            early = last + spacing - time.monotonic()
            if early > 0:
                await asyncio.sleep(early)
            self._urgent.clear()
            last = time.monotonic()
            if self.watched:
                await self.flush()
            else:
                # Nobody watches: rows are brought up to date when a reader arrives.
                self._forget_oldest()

    async def flush(self) -> Message | None:
        """Read the sessions, publish what changed (if anything); returns the message."""
        message = self.collect()
        if message is not None:
            await self.bus.publish(self.topic, message)
        return message

    def collect(self) -> Message | None:
        """The next diff, applied to the feed's rows and numbered; None when nothing changed."""
        now = time.monotonic()
        changes: dict[str, Row] = {}
        rows = self._rows
        stamps = self._stamps
        for session_id, row in self._settled.items():
            change = diff_row(rows.get(session_id), row)
            if change:
                changes[session_id] = change
                rows[session_id] = row
        self._settled.clear()
        for session_id in list(self._active):
            session = self._sessions[session_id]
            # An idle stream (no new event, same state and attempt) costs one tuple here.
            stamp = (session.state, len(session.log), session.attempts)
            if stamps.get(session_id) != stamp or session_id not in rows:
                stamps[session_id] = stamp
                row = derive(session, self._typical)
                self._count_tokens(session_id, row["tokens"])
                change = diff_row(rows.get(session_id), row)
                if change:
                    changes[session_id] = change
                    rows[session_id] = row
            if session.state in TERMINAL_STATES and session_id in self._finished:
                # The row is final: the feed lets go of the session (its event log and all).
                self._active.discard(session_id)
                self._tokens_seen.pop(session_id, None)
                stamps.pop(session_id, None)
                del self._sessions[session_id]
        removed = self._forget_oldest()
        totals = self._compute_totals(now)
        changed_totals = {k: v for k, v in totals.items() if self._totals.get(k) != v}
        if not changes and not removed and not changed_totals:
            return None
        self._totals = totals
        self.seq += 1
        self.published += 1
        message: Message = {"type": "diff", "seq": self.seq, "sessions": changes}
        if self.node is not None:
            message["node"] = self.node
        if removed:
            message["removed"] = removed
        if changed_totals:
            message["totals"] = changed_totals
        return message

    def _count_tokens(self, session_id: str, tokens: int) -> None:
        seen = self._tokens_seen.get(session_id, 0)
        if tokens > seen:
            self._tokens_total += tokens - seen
        self._tokens_seen[session_id] = tokens

    def _forget_oldest(self) -> list[str]:
        removed = []
        while len(self._finished) > self.settings.recent_sessions:
            session_id = next(iter(self._finished))
            del self._finished[session_id]
            self._sessions.pop(session_id, None)
            self._settled.pop(session_id, None)
            self._active.discard(session_id)
            self._tokens_seen.pop(session_id, None)
            self._stamps.pop(session_id, None)
            if self._rows.pop(session_id, None) is not None:
                removed.append(session_id)
        return removed

    def _compute_totals(self, now: float) -> dict[str, Any]:
        samples = self._rate_samples
        samples.append((now, self._tokens_total))
        while len(samples) > 2 and samples[1][0] <= now - RATE_SPAN:
            samples.popleft()
        first_t, first_n = samples[0]
        # Over at least RATE_SPAN: a young feed's first figure is low rather than wild.
        rate = (self._tokens_total - first_n) / max(now - first_t, RATE_SPAN)
        outcomes = self._outcomes
        return {
            "live": sum(1 for s in self._sessions.values() if s.state not in TERMINAL_STATES),
            "sessions": len(self._rows),
            "tokens_per_s": round(rate),
            "error_rate": round(sum(outcomes) / len(outcomes), 4) if outcomes else None,
            "errors_over": len(outcomes),
            "spend": round(self._spend, 6),
            "unpriced": self._unpriced,
            "smoothness": self.smoothness.summary(),
        }

    # -- sessions from the store ---------------------------------------------------------------

    async def load_recorded(self, store: RecordSource) -> None:
        """Show the finished sessions the store holds (those of earlier processes included),
        the newest ``recent_sessions`` of them, as if they had finished here: the operations
        center then counts what the records count. Read once, before the first view."""
        loading = self._recorded
        if loading is None or (loading.done() and (loading.cancelled() or loading.exception())):
            # not read yet, or the read failed: (again) now
            loading = self._recorded = asyncio.ensure_future(self._load_recorded(store))
        await asyncio.shield(loading)

    async def _load_recorded(self, store: RecordSource) -> None:
        limit = self.settings.recent_sessions
        records: list[dict[str, Any]] = []
        if limit:
            # Finished ones only: a record stored while its session ran, by a process that
            # stopped since, is not a session anyone can follow or stop.
            for state in sorted(TERMINAL_STATES):
                records += await store.query(limit, state, None)
        records.sort(key=lambda record: record.get("created_at", 0.0))
        older: dict[str, None] = {}
        for record in records[-limit:] if limit else ():  # oldest first, as ``_finished``
            session_id = record["id"]
            if session_id in self._rows or session_id in self._sessions:
                continue  # this process ran it: its own row is better
            self._rows[session_id] = recorded_row(record)
            older[session_id] = None
            telemetry = record.get("telemetry") or {}
            self.smoothness.add(str(record.get("provider")), str(record.get("model")), telemetry)
        self._finished = older | self._finished
        self._forget_oldest()
        self._totals["sessions"] = len(self._rows)

    # -- readers ------------------------------------------------------------------------------

    def snapshot(self) -> Message:
        """Every row and the totals as of ``seq``."""
        return {
            "type": "snapshot",
            "seq": self.seq,
            "flush_interval": self.settings.flush_interval,
            "sessions": {k: dict(v) for k, v in self._rows.items()},
            "totals": dict(self._totals),
        }

    @asynccontextmanager
    async def follow(self) -> AsyncIterator[AsyncIterator[Message]]:
        """A snapshot, then every diff after it: no message missed, none twice."""
        async with self.bus.subscribe(self.topic) as messages:
            self.followers += 1
            try:
                # Rows may be stale while nobody watched: bring them up to date first.
                await self.flush()
                yield self._follow(messages)
            finally:
                self.followers -= 1

    async def _follow(self, messages: AsyncIterator[Message]) -> AsyncIterator[Message]:
        snapshot = self.snapshot()
        last = snapshot["seq"]
        yield snapshot
        async for message in messages:
            seq = message["seq"]
            if seq <= last:
                continue  # already in the snapshot
            if seq != last + 1:  # the bus dropped some for this reader: start again from now
                snapshot = self.snapshot()
                last = snapshot["seq"]
                yield snapshot
                continue
            last = seq
            yield message


# ---------------------------------------------------------------------------------------------
# One session's page


#: the event kinds that are summarised as runs rather than listed
_RUNS = {
    "text": "answer text",
    "reasoning": "reasoning",
    "tool_call.delta": "tool arguments",
    "tool.progress": "tool progress",
}


class SessionTrail:
    """A fold over a session's events: the answer so far, a timeline of its milestones and,
    for an agent's run, its steps (``RunSteps``). A run's answer is its last step's text: what
    a step that called tools said goes with that step.

    Runs of deltas become one timeline entry (212 answer-text deltas); status changes, tool calls,
    steps, retries, usage, errors and the finish are listed each. No I/O.
    """

    __slots__ = ("_text", "run", "timeline", "version")

    def __init__(self) -> None:
        self._text: list[str] = []
        self.timeline: list[dict[str, Any]] = []
        #: bumped whenever the timeline changes
        self.version = 0
        self.run = RunSteps()

    @property
    def text(self) -> str:
        if len(self._text) > 1:
            self._text[:] = ["".join(self._text)]
        return self._text[0] if self._text else ""

    def apply(self, seq: int, kind: str, data: dict[str, Any]) -> None:
        if kind == "text":
            self._text.append(data.get("text", ""))
        step = self.run.current
        if kind == "tool.start" and step is not None and not step_ran(step):
            # a run's step whose tools begin: what it said goes with the step
            self.run.set_text(self.text)
            self._text.clear()
        self.run.apply(kind, data)
        if kind in _RUNS:
            last = self.timeline[-1] if self.timeline else None
            if last is not None and last["kind"] == kind:
                last["to"] = seq
                last["count"] += 1
            else:
                self._add(seq, kind, _RUNS[kind], count=1)
            self.version += 1
            return
        match kind:
            case "status":
                detail = data.get("detail")
                self._add(seq, kind, data.get("phase", "") + (f": {detail}" if detail else ""))
            case "start":
                self._add(seq, kind, f"upstream answered ({data.get('model') or 'model'})")
            case "signature":
                # an opaque token for the provider, never shown: its size and nothing else
                what = "redacted reasoning" if data.get("redacted") else "reasoning signature"
                self._add(seq, kind, f"{what} ({len(data.get('signature') or '')} characters)")
            case "tool_call.start":
                self._add(seq, kind, f"tool call {data.get('name')} started")
            case "tool_call.done":
                self._add(seq, kind, f"tool call {data.get('name')}: {data.get('status')}")
            case "usage":
                final = "final" if data.get("final") else "so far"
                self._add(
                    seq,
                    kind,
                    f"usage ({final}): {data.get('input_tokens')} in, "
                    f"{data.get('output_tokens')} out",
                )
            case "retry":
                self._text.clear()
                self.run = RunSteps()
                self._add(seq, kind, f"attempt {data.get('attempt')} after {data.get('reason')}")
            case "error":
                self.run.end(data.get("type") == "cancelled")
                self._add(seq, kind, f"{data.get('type')}: {data.get('message')}")
            case "finish":
                self._add(seq, kind, f"finished: {data.get('reason')}")
            case "step.start":
                self._add(seq, kind, f"step {data.get('step')} began")
            case "step.end":
                self._add(
                    seq,
                    kind,
                    f"step {data.get('step')} ended ({data.get('finish_reason')}) after "
                    f"{_seconds(data.get('duration'))}",
                )
            case "tool.start":
                self._add(seq, kind, f"tool {data.get('tool') or data.get('name')} called")
            case "tool.end":
                outcome = data.get("error") or ("failed" if data.get("is_error") else "ok")
                self._add(
                    seq,
                    kind,
                    f"tool {data.get('name')}: {outcome} after {_seconds(data.get('duration'))}",
                )
            case _:
                self._add(seq, kind, kind)

    def apply_entries(self, start: int, entries: Iterable[Entry]) -> int:
        """Apply event log entries from sequence number ``start`` on; returns the next one."""
        seq = start
        for event, _raw in entries:
            if event is not None:
                kind, data = ev.payload(event)
                self.apply(seq, kind, data)
            seq += 1
        return seq

    def _add(self, seq: int, kind: str, label: str, count: int | None = None) -> None:
        entry: dict[str, Any] = {"seq": seq, "kind": kind, "label": label}
        if count is not None:
            entry |= {"to": seq, "count": count}
        self.timeline.append(entry)
        self.version += 1


async def follow_session(session: Session, interval: float) -> AsyncIterator[Message]:
    """One session's page feed: a snapshot of the answer, timeline and row, then at most one
    update per ``interval`` (the first change after a quiet spell at once), then ``final``
    with the record once it is stored."""
    trail = SessionTrail()
    position = 0
    sent_text = 0
    sent_version = -1
    sent_run: RunSteps | None = None
    sent_steps = -1
    last_row: Row | None = None
    attempts = session.attempts
    kind = "snapshot"
    while True:
        entries = session.log.entries
        end = len(entries)
        if position < end:
            position = trail.apply_entries(position + 1, entries[position:end]) - 1
        text = trail.text
        message: Message = {"type": kind}
        if kind == "snapshot" or session.attempts != attempts or len(text) < sent_text:
            message["text"] = text
            attempts = session.attempts
        elif len(text) > sent_text:
            message["text_add"] = text[sent_text:]
        sent_text = len(text)
        if trail.version != sent_version:
            message["timeline"] = trail.timeline
            sent_version = trail.version
        run = trail.run  # (a new one after a retry: the page then drops the steps it has)
        if (run is not sent_run or run.version != sent_steps) and (run.steps or sent_run):
            message["steps"] = run.steps
            sent_run, sent_steps = run, run.version
        row = derive(session)
        change = diff_row(last_row, row)
        if change:
            message["row"] = change
            last_row = row
        if session.finished.is_set():
            message["type"] = "final"
            message["record"] = session.record()
            yield message
            return
        if len(message) > 1:
            yield message
        kind = "update"
        # Coalesce: nothing more for a window, unless the session ends meanwhile.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await session.finished.wait()
        if not session.finished.is_set() and len(session.log) == position:
            await _first_of(session.log.wait_beyond(position), session.finished.wait())


def _seconds(value: Any) -> str:
    if not isinstance(value, int | float):
        return "?"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


async def _first_of(*awaitables: Any) -> None:
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
