"""One operations view of every node: the merge alone (a fold), then nodes' feeds on a real
bus, in process and on Redis, followed from one of them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from sluice.config import BusSettings, OpsSettings
from sluice.distributed.backplane import Backplane, open_backplane
from sluice.session.bus import Bus, MemoryBus, Message
from sluice.session.clusterfeed import (
    SILENT_AFTER,
    ClusterView,
    answer_watchers,
    follow_cluster,
)
from sluice.session.opsfeed import OpsFeed
from sluice.session.session import STREAMING
from tests.distributed.conftest import delete_prefix, new_prefix, redis_url  # noqa: F401
from tests.session.test_opsfeed import Harness, apply, next_message


def _snapshot(seq: int, sessions: dict[str, dict[str, Any]], **totals: Any) -> Message:
    return {"type": "snapshot", "seq": seq, "sessions": sessions, "totals": totals}


def test_the_view_starts_with_the_local_snapshot_and_asks_for_the_others() -> None:
    view = ClusterView()
    first = view.start("a", _snapshot(4, {"op-a1": {"state": "streaming"}}, live=1), 0.0)
    assert first["type"] == "snapshot" and list(first["sessions"]) == ["op-a1"]
    assert first["totals"]["live"] == 1 and first["totals"]["nodes"] == 1
    # a diff of a node not yet known: not applied, its snapshot wanted
    out, wanted = view.apply({"type": "diff", "node": "b", "seq": 9, "sessions": {}}, 0.1)
    assert out is None and wanted == "b"
    out, wanted = view.apply(
        _snapshot(9, {"op-b1": {"state": "starting"}}, live=2) | {"node": "b"}, 0.2
    )
    assert wanted is None and out is not None
    assert out["seq"] == 1 and out["sessions"] == {"op-b1": {"state": "starting"}}
    assert out["totals"] == {"live": 3, "nodes": 2}


def test_each_nodes_diffs_apply_in_their_order_and_a_gap_asks_for_a_snapshot() -> None:
    view = ClusterView()
    view.start("a", _snapshot(1, {}, live=0), 0.0)
    view.apply(_snapshot(5, {}, live=0) | {"node": "b"}, 0.0)
    diff = {"type": "diff", "node": "b", "seq": 6, "sessions": {"op-b1": {"tokens": 3}}}
    out, wanted = view.apply(diff, 0.1)
    assert wanted is None and out is not None and out["sessions"] == {"op-b1": {"tokens": 3}}
    assert view.apply(diff, 0.2) == (None, None)  # the same diff again: skipped
    out, wanted = view.apply({**diff, "seq": 8}, 0.3)  # 7 was missed
    assert out is None and wanted == "b"
    # until its snapshot comes, the node's diffs wait
    assert view.apply({**diff, "seq": 9}, 0.4) == (None, "b")
    out, _ = view.apply(_snapshot(9, {"op-b2": {"tokens": 1}}) | {"node": "b"}, 0.5)
    assert out is not None and out["removed"] == ["op-b1"] and list(out["sessions"]) == ["op-b2"]


def test_an_alive_message_ahead_of_the_view_asks_for_a_snapshot() -> None:
    view = ClusterView()
    view.start("a", _snapshot(3, {}), 0.0)
    assert view.apply({"type": "alive", "node": "a", "seq": 3}, 0.1) == (None, None)
    assert view.apply({"type": "alive", "node": "a", "seq": 5}, 0.2) == (None, "a")


def test_totals_add_up_across_nodes_and_the_error_rate_is_weighted() -> None:
    view = ClusterView()
    view.start("a", _snapshot(0, {}, live=2, spend=0.5, error_rate=0.5, errors_over=2), 0.0)
    out, _ = view.apply(
        _snapshot(0, {}, live=1, spend=0.25, error_rate=0.0, errors_over=6) | {"node": "b"}, 0
    )
    assert out is not None
    assert out["totals"]["live"] == 3 and out["totals"]["spend"] == 0.75
    assert out["totals"]["error_rate"] == 0.125  # 1 error in 8


def test_a_silent_node_leaves_the_view_with_its_rows_but_the_local_one_stays() -> None:
    view = ClusterView()
    view.start("a", _snapshot(0, {"op-a": {}}), 0.0)
    view.apply(_snapshot(0, {"op-b": {}, "op-c": {}}) | {"node": "b"}, 0.0)
    assert view.forget_silent(SILENT_AFTER / 2, keep="a") is None
    out = view.forget_silent(SILENT_AFTER + 1, keep="a")
    assert out is not None and out["removed"] == ["op-b", "op-c"]
    assert list(view.nodes) == ["a"]


def test_messages_of_a_feed_without_a_node_are_ignored() -> None:
    view = ClusterView()
    view.start("a", _snapshot(0, {}), 0.0)
    assert view.apply({"type": "diff", "seq": 1, "sessions": {"x": {}}}, 0.0) == (None, None)


# -- nodes on a real bus ---------------------------------------------------------------------

BusMaker = Callable[[], Awaitable[Bus]]


@pytest.fixture(params=["memory", "redis"])
async def buses(request: pytest.FixtureRequest) -> AsyncIterator[BusMaker]:
    """Makes the bus of one "node": one shared in-process bus, or a Redis connection each."""
    shared = MemoryBus()
    planes: list[Backplane] = []
    settings = None
    if request.param == "redis":
        settings = BusSettings(url=request.getfixturevalue("redis_url"), prefix=new_prefix())

    async def make() -> Bus:
        if settings is None:
            return shared
        plane = await open_backplane(settings)
        planes.append(plane)
        return plane.bus

    yield make
    for plane in planes:
        await plane.close()
    if settings is not None:
        await delete_prefix(settings.prefix)


class Node:
    """One node's feed, its flush task and its answers to watchers."""

    def __init__(self, bus: Bus, name: str) -> None:
        feed = OpsFeed(bus, OpsSettings(flush_interval=0.05))
        feed.node = name
        self.harness = Harness(feed, bus)  # type: ignore[arg-type]
        self.harness.manager.node = name
        self.harness.count = 1000 * (1 + (name[-1] == "b"))  # distinct session ids per node
        self.feed = feed
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Node:
        self.tasks = [
            asyncio.ensure_future(self.feed.run()),
            asyncio.ensure_future(answer_watchers(self.feed)),
        ]
        await asyncio.sleep(0.05)  # the watch subscription in place
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _until(view: dict[str, Any], messages: AsyncIterator[Message], check: Any) -> None:
    while not check(view):
        view.update(apply(view, await next_message(messages)))


async def test_a_view_on_one_node_shows_every_nodes_sessions(buses: BusMaker) -> None:
    async with Node(await buses(), "node-a") as a, Node(await buses(), "node-b") as b:
        on_b = b.harness.session()
        b.harness.stream(on_b)
        async with follow_cluster(a.feed) as messages:
            view = apply({}, await next_message(messages))
            assert view["sessions"] == {}  # node a has none; b's rows come with its snapshot
            await _until(view, messages, lambda v: on_b.id in v["sessions"])
            assert view["sessions"][on_b.id]["node"] == "node-b"
            assert view["sessions"][on_b.id]["state"] == "streaming"
            on_a = a.harness.session()
            await _until(view, messages, lambda v: on_a.id in v["sessions"])
            assert view["sessions"][on_a.id]["node"] == "node-a"
            await _until(view, messages, lambda v: v["totals"].get("live") == 2)
            assert view["totals"]["nodes"] == 2
            # a change on b reaches the view on a
            b.harness.finish(on_b)
            await _until(view, messages, lambda v: v["sessions"][on_b.id]["state"] == "complete")
            assert view["totals"]["live"] == 1


async def test_a_node_publishes_only_while_someone_watches(buses: BusMaker) -> None:
    async with Node(await buses(), "node-a") as a, Node(await buses(), "node-b") as b:
        session = b.harness.session()
        session.state = STREAMING
        await asyncio.sleep(0.2)
        assert not b.feed.watched and b.feed.published == 0
        async with follow_cluster(a.feed) as messages:
            view = apply({}, await next_message(messages))
            await _until(view, messages, lambda v: session.id in v["sessions"])
            assert b.feed.watched
