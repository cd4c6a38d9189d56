"""A gateway process killed with SIGKILL loses nothing a client was told: during live streams,
every session ends with a terminal record holding the text its client saw (minus at most the
last journal window); just after sessions finish, every session whose client saw its end is
stored ``complete``. Real processes, real sockets, the embedded SQLite store."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from sluice.bench.proc import free_port
from sluice.sse import SSEDecoder
from tests.gateways import Node, gateway_node

#: the journal window the gateways here run with, in seconds
WINDOW = 0.1
#: the pace of the long streams, in tokens per second
PACE = 20.0
#: what a client may have seen past the stored log, in events: the window and the store's
#: commit at the pace above are 3; the margin is for a busy machine, whose loop may run the
#: journal late
ALLOWED_BEHIND = int(PACE * 1.0)


def gateway(tmp_path: Path, db: Path, sim: str = "") -> AbstractAsyncContextManager[Node]:
    """A gateway process on the SQLite file ``db``, its journal every ``WINDOW`` seconds."""
    port = free_port()
    config = (
        f"[server]\nport = {port}\n"
        f'[store]\nurl = "sqlite:///{db}"\njournal_window = {WINDOW}\n'
        f"[sim]\nembedded = true\nttft = 0.01\njitter = 0.0\n{sim}"
    )
    return gateway_node(tmp_path, f"gateway-{port}", config, port)


@dataclass
class Follower:
    """One client following a native session: the events it was sent, by id; ``enough`` is
    set once it has ``wanted`` text events."""

    session_id: str
    wanted: int = 0
    events: list[tuple[int, str, dict[str, object]]] = field(default_factory=list)
    enough: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def texts(self) -> int:
        return sum(1 for _, kind, _ in self.events if kind == "text")

    async def follow(self, http: httpx.AsyncClient) -> None:
        decoder = SSEDecoder()
        path = f"/api/sessions/{self.session_id}/events"
        try:
            async with http.stream("GET", path) as response:
                async for chunk in response.aiter_bytes():
                    for event in decoder.decode(chunk):
                        if event.id and event.event:
                            data = orjson.loads(event.data)
                            self.events.append((int(event.id), event.event, data))
                    if self.texts >= self.wanted:
                        self.enough.set()
        except (httpx.TransportError, httpx.RemoteProtocolError):
            pass  # the gateway was killed under it


async def test_kill_9_during_live_streams_leaves_each_session_what_its_client_saw(
    tmp_path: Path,
) -> None:
    db = tmp_path / "sluice.db"
    sim = f"token_rate = {PACE}\noutput_tokens = 2000\n"
    followers: list[Follower] = []
    async with (
        gateway(tmp_path, db, sim) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=30) as http,
    ):
        for n in range(20):
            created = await http.post(
                "/api/sessions", json={"model": "sim/support", "prompt": f"question {n}"}
            )
            assert created.status_code == 201, created.text
            followers.append(Follower(created.json()["id"], wanted=10))
        tasks = [asyncio.ensure_future(f.follow(http)) for f in followers]
        async with asyncio.timeout(60):
            for follower in followers:
                await follower.enough.wait()
        await gw.kill()
        await asyncio.gather(*tasks)
    assert all(f.texts >= 10 for f in followers)
    async with gateway(tmp_path, db, sim) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        for follower in followers:
            record = (await http.get(f"/api/sessions/{follower.session_id}")).json()
            assert record["state"] == "interrupted", record
            assert record["error"]["type"] == "gateway_lost"
            assert record["usage"]["source"] == "estimated"
            replay = Follower(follower.session_id)
            await replay.follow(http)
            *stored, end = replay.events
            assert end[1] == "end" and end[2]["state"] == "interrupted"
            assert stored[-1][1] == "error" and stored[-1][2]["type"] == "gateway_lost"
            stored = stored[:-1]
            # the client's events and the stored ones agree as far as both go
            common = min(len(stored), len(follower.events))
            assert stored[:common] == follower.events[:common]
            # what the client saw past the stored log is within the window
            seen_last, stored_last = follower.events[-1][0], stored[-1][0]
            assert seen_last - stored_last <= ALLOWED_BEHIND, (seen_last, stored_last)
            text = "".join(str(data["text"]) for _, kind, data in stored if kind == "text")
            assert record["text"] == text and len(text) > 0
            assert record["usage"]["output_tokens"] == sum(1 for e in stored if e[1] == "text")


def _stored_states(db: Path) -> dict[str, str]:
    """The sessions a killed gateway left in its file, read as the next process would."""
    with sqlite3.connect(db) as connection:
        return dict(connection.execute("SELECT id, state FROM sessions").fetchall())


@dataclass
class Ends:
    """Which chat streams' clients have seen ``[DONE]``; ``reached`` is set at ``wanted``."""

    wanted: int
    seen: dict[str, bool] = field(default_factory=dict)
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    def saw_end(self, session_id: str) -> None:
        self.seen[session_id] = True
        if sum(self.seen.values()) >= self.wanted:
            self.reached.set()


async def _chat_stream(http: httpx.AsyncClient, n: int, ends: Ends) -> None:
    """One chat stream, its end told to ``ends`` once its client has seen ``[DONE]``."""
    body = {
        "model": "sim/support",
        "stream": True,
        "messages": [{"role": "user", "content": f"question {n}"}],
    }
    try:
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            session_id = response.headers["x-sluice-session-id"]
            ends.seen[session_id] = False
            async for chunk in response.aiter_bytes():
                if b"data: [DONE]" in chunk:
                    ends.saw_end(session_id)
    except (httpx.TransportError, httpx.RemoteProtocolError):
        pass


async def test_kill_9_just_after_sessions_finish_loses_no_completed_session(
    tmp_path: Path,
) -> None:
    lost: list[str] = []
    told = 0
    sim = "token_rate = 2000\noutput_tokens = 30\n"
    for run in range(20):
        db = tmp_path / f"run-{run}.db"
        ends = Ends(wanted=10 + run)  # killed while sessions are ending
        async with (
            gateway(tmp_path, db, sim) as gw,
            httpx.AsyncClient(base_url=gw.url, timeout=30) as http,
        ):
            tasks = [asyncio.ensure_future(_chat_stream(http, n, ends)) for n in range(50)]
            async with asyncio.timeout(60):
                await ends.reached.wait()
            await asyncio.sleep(random.uniform(0.0, 0.03))
            await gw.kill()
            await asyncio.gather(*tasks)
        states = _stored_states(db)
        completed = [sid for sid, seen in ends.seen.items() if seen]
        told += len(completed)
        lost += [sid for sid in completed if states.get(sid) != "complete"]
    assert told >= 20 * 10
    assert lost == []
