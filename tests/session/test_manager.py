"""The session manager's memory of finished sessions: bounded by count and by bytes."""

from __future__ import annotations

from sluice import events as ev
from sluice.config import ProviderConfig, StreamSettings
from sluice.pricing import PriceBook
from sluice.providers import Route
from sluice.session.bus import MemoryBus
from sluice.session.manager import SessionManager, held_bytes
from sluice.session.session import COMPLETE, Session, SessionSpec
from sluice.session.store import MemoryStore
from sluice.turn import Message as TurnMessage
from sluice.turn import TextPart, TurnRequest
from sluice.upstream import UpstreamClient


def manager(budget: int, keep: int = 1000) -> SessionManager:
    settings = StreamSettings(keep_finished_bytes=budget)
    return SessionManager(
        MemoryStore(), MemoryBus(), UpstreamClient(), PriceBook({}), settings, keep_finished=keep
    )


def finished(owner: SessionManager, name: str, events: int, raw: bytes = b"") -> Session:
    turn = TurnRequest(model="sim/support", messages=[TurnMessage("user", [TextPart("hi")])])
    spec = SessionSpec(
        route=Route(ProviderConfig("sim", "sim"), "support", "chat"),
        turn=turn,
        body=b"{}",
        url="http://127.0.0.1:9/v1/chat/completions",
        headers={},
        endpoint="chat",
        passthrough=bool(raw),
        disconnect_policy="cancel",
    )
    session = Session(name, spec, owner.deps())
    for _ in range(events):
        session.log.append(ev.TextDelta("word "), raw)
    session.state = COMPLETE
    return session


async def test_finished_sessions_are_kept_within_the_byte_budget_oldest_first() -> None:
    owner = manager(budget=1_000_000)
    sizes = []
    for n in range(6):
        session = finished(owner, f"op-{n}", 1000, b"x" * 100)
        sizes.append(held_bytes(session))
        await owner.on_finished(session)
    assert 200_000 < sizes[0] < 400_000  # 1,000 entries of 100 bytes and their events
    assert owner.recent_bytes <= 1_000_000
    assert list(owner.recent) == [f"op-{n}" for n in range(6 - len(owner.recent), 6)]
    assert owner.recent_bytes == sum(sizes[-len(owner.recent) :])


async def test_a_session_larger_than_the_whole_budget_is_not_kept() -> None:
    owner = manager(budget=100_000)
    small = finished(owner, "op-small", 10)
    await owner.on_finished(small)
    await owner.on_finished(finished(owner, "op-large", 5000, b"y" * 100))
    assert list(owner.recent) == ["op-small"]
    assert owner.get("op-large") is None  # its record and events are in the store


async def test_the_count_still_bounds_them_too() -> None:
    owner = manager(budget=10**9, keep=3)
    for n in range(5):
        await owner.on_finished(finished(owner, f"op-{n}", 1))
    assert list(owner.recent) == ["op-2", "op-3", "op-4"]
    assert owner.recent_bytes == sum(held_bytes(s) for s in owner.recent.values())
