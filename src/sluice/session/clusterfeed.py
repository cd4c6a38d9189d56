"""One operations view of every process and node sharing a bus: each node's feed merged into
the messages one node's feed sends (a snapshot, then diffs), so the operations center on any
node shows the sessions of all of them, each row with its ``node``.

How the nodes and the views talk, all on the shared bus:

- every node's ``OpsFeed`` tags its diffs with its ``node`` and publishes them on ``OPS_TOPIC``
  while anyone anywhere watches (``OpsFeed.watched``);
- a view says it watches on ``WATCH_TOPIC`` every ``WATCH_RENEW`` seconds; each node
  (``answer_watchers``) then keeps publishing for ``WATCH_TTL`` seconds, and answers with an
  ``alive`` message carrying its feed's ``seq``;
- a view asks for snapshots when it starts, and from one node when it misses one of that
  node's diffs (its ``seq`` jumped); the node publishes its whole state, tagged;
- a node that says nothing for ``SILENT_AFTER`` seconds while watched is gone: its rows leave
  the view (its sessions' records remain in the store and the lists).

``ClusterView`` is the merge, a fold with no I/O; ``follow_cluster`` does the I/O around it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sluice.session.bus import Message
from sluice.session.opsfeed import OpsFeed
from sluice.session.smoothness import merge_summaries

WATCH_TOPIC = "ops.watch"
#: seconds a node keeps publishing after a view last said it watches
WATCH_TTL = 10.0
#: seconds between a view's watch messages
WATCH_RENEW = 3.0
#: seconds of silence (no diff, no ``alive``) after which a node's rows leave a view
SILENT_AFTER = 3 * WATCH_RENEW

#: totals that add up across nodes
_SUMMED = ("live", "sessions", "tokens_per_s", "spend", "unpriced", "errors_over")


async def answer_watchers(feed: OpsFeed) -> None:
    """A node's side: keep the feed publishing while anyone watches; answer every watch with
    ``alive`` and every snapshot request meant for this node with the feed's whole state.
    Runs until cancelled."""
    node = feed.node
    async with feed.bus.subscribe(WATCH_TOPIC) as requests:
        async for request in requests:
            feed.watched_until = time.monotonic() + WATCH_TTL
            wanted = request.get("snapshot")
            if wanted is True or wanted == node:
                await feed.flush()
                await feed.bus.publish(feed.topic, feed.snapshot() | {"node": node})
            else:
                await feed.bus.publish(feed.topic, {"type": "alive", "node": node, "seq": feed.seq})


@dataclass
class _Node:
    #: the last of its messages applied; None until its first snapshot
    seq: int | None = None
    rows: set[str] = field(default_factory=set)
    totals: dict[str, Any] = field(default_factory=dict)
    heard: float = 0.0


class ClusterView:
    """The merge of every node's feed: fed each node's messages, it gives the messages of one
    view (its own ``seq``), and says which node it needs a snapshot of."""

    def __init__(self) -> None:
        self.nodes: dict[str, _Node] = {}
        self.seq = 0
        self._totals: dict[str, Any] = {}

    def start(self, node: str, snapshot: Message, now: float) -> Message:
        """The view's first message: ``node``'s own snapshot (the local one)."""
        state = self.nodes[node] = _Node(snapshot["seq"], set(snapshot["sessions"]), heard=now)
        state.totals = dict(snapshot["totals"])
        self._totals = self.totals()
        return {
            "type": "snapshot",
            "seq": self.seq,
            "flush_interval": snapshot.get("flush_interval"),
            "sessions": dict(snapshot["sessions"]),
            "totals": dict(self._totals),
        }

    def apply(self, message: Message, now: float) -> tuple[Message | None, str | None]:
        """One message from the bus: the view's diff (None if nothing changed), and the node
        whose snapshot is needed (None if none)."""
        node = message.get("node")
        if not isinstance(node, str):
            return None, None  # a feed of its own: not one of the nodes'
        state = self.nodes.get(node)
        kind = message.get("type")
        if kind == "snapshot":
            return self._snapshot(node, message, now), None
        if state is None or state.seq is None:
            if state is None:
                self.nodes[node] = _Node(heard=now)
            return None, node
        state.heard = now
        seq = message.get("seq")
        if not isinstance(seq, int) or seq <= state.seq:
            return None, None
        if kind == "alive":
            return (None, node) if seq > state.seq else (None, None)
        if seq != state.seq + 1:  # one of its diffs did not reach this view
            state.seq = None
            return None, node
        state.seq = seq
        sessions = message.get("sessions") or {}
        removed = list(message.get("removed") or ())
        state.rows.update(sessions)
        state.rows.difference_update(removed)
        if message.get("totals"):
            state.totals.update(message["totals"])
        return self._diff(dict(sessions), removed), None

    def forget_silent(self, now: float, keep: str) -> Message | None:
        """Nodes silent for ``SILENT_AFTER`` seconds (``keep``, the local one, never) leave
        the view with their rows."""
        gone = [n for n, s in self.nodes.items() if n != keep and now - s.heard > SILENT_AFTER]
        removed: list[str] = []
        for node in gone:
            removed += sorted(self.nodes.pop(node).rows)
        return self._diff({}, removed) if gone else None

    def _snapshot(self, node: str, message: Message, now: float) -> Message | None:
        state = self.nodes.setdefault(node, _Node())
        sessions = dict(message.get("sessions") or {})
        removed = sorted(state.rows - set(sessions))
        state.seq, state.rows, state.heard = int(message["seq"]), set(sessions), now
        state.totals = dict(message.get("totals") or {})
        return self._diff(sessions, removed)  # whole rows: they replace what the view holds

    def totals(self) -> dict[str, Any]:
        totals: dict[str, Any] = {}
        states = list(self.nodes.values())
        for name in _SUMMED:
            values = [s.totals[name] for s in states if s.totals.get(name) is not None]
            if values:
                totals[name] = round(sum(values), 6) if name == "spend" else sum(values)
        weighted = [
            (s.totals["error_rate"], s.totals.get("errors_over") or 0)
            for s in states
            if s.totals.get("error_rate") is not None
        ]
        over = sum(n for _, n in weighted)
        totals["error_rate"] = round(sum(r * n for r, n in weighted) / over, 4) if over else None
        totals["nodes"] = len(states)
        totals["smoothness"] = merge_summaries([s.totals.get("smoothness") or [] for s in states])
        return totals

    def _diff(self, sessions: dict[str, Any], removed: list[str]) -> Message | None:
        totals = self.totals()
        changed = {k: v for k, v in totals.items() if self._totals.get(k) != v}
        if not sessions and not removed and not changed:
            return None
        self._totals = totals
        self.seq += 1
        out: Message = {"type": "diff", "seq": self.seq, "sessions": sessions}
        if removed:
            out["removed"] = removed
        if changed:
            out["totals"] = changed
        return out


@asynccontextmanager
async def follow_cluster(feed: OpsFeed) -> AsyncIterator[AsyncIterator[Message]]:
    """``OpsFeed.follow`` for a view of every node: a snapshot (this node's rows; the others'
    follow as their snapshots arrive), then diffs."""
    async with feed.bus.subscribe(feed.topic) as messages:
        feed.followers += 1
        try:
            await feed.flush()
            yield _merged(feed, messages)
        finally:
            feed.followers -= 1


async def _merged(feed: OpsFeed, messages: AsyncIterator[Message]) -> AsyncIterator[Message]:
    assert feed.node is not None, "a feed on a shared bus has a node name"
    view = ClusterView()
    clock = time.monotonic
    yield view.start(feed.node, feed.snapshot(), clock())
    await feed.bus.publish(WATCH_TOPIC, {"snapshot": True})
    renew_at = clock() + WATCH_RENEW
    incoming = aiter(messages)
    while True:
        try:
            async with asyncio.timeout(max(0.0, renew_at - clock())):
                message = await anext(incoming)
        except TimeoutError:
            renew_at = clock() + WATCH_RENEW
            await feed.bus.publish(WATCH_TOPIC, {"watching": True})
            gone = view.forget_silent(clock(), feed.node)
            if gone is not None:
                yield gone
            continue
        out, wanted = view.apply(message, clock())
        if wanted is not None:
            await feed.bus.publish(WATCH_TOPIC, {"snapshot": wanted})
        if out is not None:
            yield out
