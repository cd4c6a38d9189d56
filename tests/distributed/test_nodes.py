"""Three gateway processes as nodes behind nginx: one Postgres database, one Redis (a key prefix
of the test's own), the embedded simulator on each, auth off on loopback.

A session relayed by one node is resumed, stopped and listed through the others; a node killed
with ``kill -9`` has its sessions closed by a survivor (``errored``, ``node_lost``), and a client
that reconnects through nginx gets the stored events, then the end.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from sluice.bench.proc import free_port
from tests.distributed.conftest import WAIT, eventually
from tests.gateways import HOST, REPO, Node, gateway_node
from tests.proxies.servers import nginx

#: seconds a node's lease lasts in these tests (the default is 3): a lost node is seen sooner
LEASE_TTL = 1.0
#: the simulator's pace: a session streams for several seconds, long enough to act mid-stream
SIM = {"token_rate": 40, "ttft": 0.05, "jitter": 0, "output_tokens": 400}


def node_config(port: int, pg_url: str, redis_url: str, prefix: str, extra: str = "") -> str:
    sim = "\n".join(f"{key} = {value}" for key, value in SIM.items())
    return f"""\
{extra}
[server]
host = "{HOST}"
port = {port}
log_level = "info"

[store]
url = "{pg_url}"

[bus]
url = "{redis_url}"
prefix = "{prefix}"
lease_ttl = {LEASE_TTL}

[sim]
embedded = true
{sim}
"""


def nginx_upstreams(port: int, node_ports: list[int]) -> str:
    """deploy/nginx's proxying directives, an upstream block with every node."""
    servers = "\n".join(
        f"        server {HOST}:{p} max_fails=1 fail_timeout=30s;" for p in node_ports
    )
    return f"""\
    upstream sluice {{
{servers}
        keepalive 8;
    }}
    server {{
        listen {HOST}:{port};
        location / {{
            proxy_pass http://sluice;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_read_timeout 120s;
        }}
    }}
"""


@dataclass
class Cluster:
    nodes: list[Node]
    proxy: httpx.AsyncClient

    def owner(self, record: dict[str, Any]) -> Node:
        (node,) = [n for n in self.nodes if n.owns(record)]
        return node

    def others(self, node: Node) -> list[Node]:
        return [n for n in self.nodes if n is not node]


@asynccontextmanager
async def three_nodes(
    tmp_path: Path, pg_url: str, redis_url: str, redis_prefix: str, extra: str = ""
) -> AsyncIterator[Cluster]:
    ports = [free_port(HOST) for _ in range(3)]
    async with AsyncExitStack() as stack:
        nodes = await asyncio.gather(
            *(
                stack.enter_async_context(
                    gateway_node(
                        tmp_path,
                        f"node{i}",
                        node_config(p, pg_url, redis_url, redis_prefix, extra),
                        p,
                    )
                )
                for i, p in enumerate(ports)
            )
        )
        proxy_dir = tmp_path / "nginx"
        proxy_port = free_port(HOST)
        proxy = await stack.enter_async_context(
            nginx(proxy_dir, nginx_upstreams(proxy_port, ports), proxy_port)
        )
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=proxy.url, timeout=30))
        yield Cluster(list(nodes), client)


@pytest.fixture
async def cluster(
    tmp_path: Path, pg_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[Cluster]:
    async with three_nodes(tmp_path, pg_url, redis_url, redis_prefix) as nodes:
        yield nodes


# -- helpers -----------------------------------------------------------------------------------

Frame = tuple[int, str, dict[str, Any]]


async def start(http: httpx.AsyncClient, **body: Any) -> str:
    response = await http.post(
        "/api/sessions",
        json={"model": "sim/support", "prompt": "refunds?", "disconnect_policy": "detach", **body},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def read_events(
    http: httpx.AsyncClient, session_id: str, last_id: int = 0, stop_after: int | None = None
) -> list[Frame]:
    """The native SSE frames of a session's events from ``last_id`` on (``Last-Event-ID``),
    until the ``end`` frame, or until an event numbered ``stop_after`` or more arrived."""
    frames: list[Frame] = []
    headers = {"last-event-id": str(last_id)} if last_id else {}
    async with asyncio.timeout(WAIT):
        async with http.stream(
            "GET", f"/api/sessions/{session_id}/events", headers=headers
        ) as response:
            assert response.status_code == 200, await response.aread()
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line:
                    if not line.startswith(":"):
                        key, _, value = line.partition(":")
                        fields[key] = value.removeprefix(" ")
                    continue
                if "id" not in fields:
                    fields = {}
                    continue
                frame = (int(fields["id"]), fields["event"], orjson.loads(fields["data"]))
                fields = {}
                frames.append(frame)
                if frame[1] == "end" or (stop_after is not None and frame[0] >= stop_after):
                    break
    return frames


async def record_of(http: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    response = await http.get(f"/api/sessions/{session_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def text_of(frames: list[Frame]) -> str:
    return "".join(data["text"] for _, kind, data in frames if kind == "text")


async def streaming(node: Node, session_id: str) -> dict[str, Any]:
    """The session's record once some of its answer was relayed (its owner's view)."""
    record: dict[str, Any] = {}

    async def some_text() -> bool:
        nonlocal record
        record = await record_of(node.http, session_id)
        return len(record["text"]) > 20

    await eventually(some_text)
    return record


# -- the tests ---------------------------------------------------------------------------------


async def test_a_session_resumes_on_another_node_with_no_gap_and_no_duplicate(
    cluster: Cluster,
) -> None:
    a, b, c = cluster.nodes
    session_id = await start(a.http)
    first = await read_events(a.http, session_id, stop_after=8)
    middle = first[-1][0]
    assert first[-1][1] != "end"
    # node B follows A's live log from the middle; nginx routes a third follower anywhere
    rest, via_proxy = await asyncio.gather(
        read_events(b.http, session_id, middle),
        read_events(cluster.proxy, session_id, middle),
    )
    assert rest[-1][1] == "end" and via_proxy[-1][1] == "end"
    assert rest == via_proxy
    ids = [seq for seq, _, _ in first + rest]
    assert ids == sorted(set(ids))  # rising: no duplicate
    # the whole log, replayed from the store by a third node once done: nothing missed
    whole = await read_events(c.http, session_id)
    assert [seq for seq, _, _ in whole] == ids
    assert whole == first + rest
    record = await record_of(c.http, session_id)
    assert record["state"] == "complete"
    assert a.owns(record)
    assert text_of(first + rest) == record["text"] and record["text"]
    assert rest[-1][2]["state"] == "complete" and rest[-1][0] == record["events"] + 1


async def test_stop_sent_to_another_node_stops_the_relaying_node(cluster: Cluster) -> None:
    session_id = await start(cluster.proxy)
    record = await record_of(cluster.proxy, session_id)
    owner = cluster.owner(record)
    await streaming(owner, session_id)
    other = cluster.others(owner)[-1]
    response = await other.http.post(f"/api/sessions/{session_id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json() == {"id": session_id, "cancelled": True, "state": "cancelled"}
    final = await record_of(other.http, session_id)
    assert final["state"] == "cancelled" and final["cancel_reason"] == "client_stop"
    # the owner closed the upstream: the simulator it embeds saw its client leave early
    sims = (await owner.http.get("/sim/requests", params={"session": session_id})).json()
    (sim,) = sims["requests"] if isinstance(sims, dict) else sims
    assert sim["client_disconnected"] is True
    assert sim["state"] == "client_disconnected"
    assert sim["tokens_produced"] < SIM["output_tokens"]
    # a second Stop finds the session over
    again = await other.http.post(f"/api/sessions/{session_id}/cancel")
    assert again.json()["cancelled"] is False


async def test_every_node_lists_the_sessions_of_every_node(cluster: Cluster) -> None:
    started = {node.port: await start(node.http, max_tokens=5) for node in cluster.nodes}
    for node in cluster.nodes:
        await eventually(partial(_final, node, started[node.port]))
    for http in [n.http for n in cluster.nodes] + [cluster.proxy]:
        listed = (await http.get("/api/sessions")).json()["sessions"]
        by_id = {row["id"]: row for row in listed}
        for node in cluster.nodes:
            row = by_id[started[node.port]]
            assert node.owns(row)


async def _final(node: Node, session_id: str) -> bool:
    return (await record_of(node.http, session_id))["state"] == "complete"


async def test_an_unknown_id_is_unknown_on_every_node(cluster: Cluster) -> None:
    a, b, _ = cluster.nodes
    session_id = await start(a.http)
    await streaming(a, session_id)
    for path in ("", "/events"):
        missing = await b.http.get(f"/api/sessions/op-000000000000{path}")
        assert missing.status_code == 404
        assert missing.json()["error"]["type"] == "unknown_session"
    stop = await b.http.post("/api/sessions/op-000000000000/cancel")
    assert stop.status_code == 404
    await b.http.post(f"/api/sessions/{session_id}/cancel")


async def test_a_killed_node_s_sessions_end_node_lost_and_resume_through_the_proxy(
    cluster: Cluster,
) -> None:
    a = cluster.nodes[0]
    session_id = await start(a.http)
    first = await read_events(cluster.proxy, session_id, stop_after=6)
    await a.kill()
    # the client reconnects through nginx (which no longer reaches node A)
    rest = await read_events(cluster.proxy, session_id, first[-1][0])
    end = rest[-1]
    assert end[1] == "end" and end[2]["state"] == "errored"
    assert end[2]["error"]["type"] == "node_lost"
    assert rest[-2][1] == "error" and rest[-2][2]["type"] == "node_lost"
    ids = [seq for seq, _, _ in first + rest]
    assert ids == sorted(set(ids))
    record = await record_of(cluster.proxy, session_id)
    assert record["state"] == "errored" and record["error"]["type"] == "node_lost"
    assert a.owns(record)
    assert text_of(first + rest) == record["text"]
    # resuming once more after the end's id has nothing more to send
    assert await read_events(cluster.proxy, session_id, end[0]) == []


# -- limits and the operations view across nodes -------------------------------------------------

#: client keys on, a ceiling of three live streams for the whole deployment
LIMITED = """\
[auth]
required = true
[streams]
max_concurrent = 3
"""


def _make_key(config: Path, name: str, *options: str) -> str:
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "sluice.cli",
            "keys",
            "create",
            "--name",
            name,
            *options,
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.splitlines()[-1]


async def _start_as(http: httpx.AsyncClient, key: str) -> httpx.Response:
    return await http.post(
        "/api/sessions",
        json={"model": "sim/support", "prompt": "refunds?", "disconnect_policy": "detach"},
        headers={"authorization": f"Bearer {key}"},
    )


async def test_a_keys_ceiling_and_the_deployments_hold_across_nodes(
    tmp_path: Path, pg_url: str, redis_url: str, redis_prefix: str
) -> None:
    config = tmp_path / "keys.toml"
    config.write_text(f'[store]\nurl = "{pg_url}"\n')
    capped = _make_key(config, "capped", "--max-streams", "1")
    other = _make_key(config, "other")
    operator = _make_key(config, "ops", "--role", "operator")
    async with three_nodes(tmp_path, pg_url, redis_url, redis_prefix, LIMITED) as cluster:
        a, b, c = cluster.nodes
        first = await _start_as(a.http, capped)
        assert first.status_code == 201, first.text
        # the key's one stream is on node A: node B refuses a second
        refused = await _start_as(b.http, capped)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["type"] == "rate_limited"
        # another key is not held back by it
        assert (await _start_as(b.http, other)).status_code == 201
        assert (await _start_as(c.http, other)).status_code == 201
        # three live across the nodes: the deployment's ceiling, whichever node is asked
        for node in cluster.nodes:
            full = await _start_as(node.http, other)
            assert full.status_code == 503, full.text
            assert full.json()["error"]["type"] == "gateway_overloaded"
        # the key's stream ends (stopped from node C): its slot frees for every node
        stop = await c.http.post(
            f"/api/sessions/{first.json()['id']}/cancel",
            headers={"authorization": f"Bearer {operator}"},
        )
        assert stop.status_code == 200, stop.text

        async def admitted_again() -> bool:
            response = await _start_as(b.http, capped)
            return response.status_code == 201

        await eventually(admitted_again)


async def test_the_operations_view_of_one_node_shows_every_nodes_sessions(
    cluster: Cluster,
) -> None:
    from websockets.asyncio.client import connect

    a, b, c = cluster.nodes
    started = {await start(node.http): node for node in (b, c)}
    url = a.url.replace("http://", "ws://") + "/ops/feed"
    rows: dict[str, dict[str, Any]] = {}
    async with asyncio.timeout(WAIT), connect(url) as socket:
        while not all(sid in rows and rows[sid].get("node") for sid in started):
            message = orjson.loads(await socket.recv())
            if message["type"] == "snapshot":
                rows = dict(message["sessions"])
            for sid, change in message.get("sessions", {}).items():
                rows.setdefault(sid, {}).update(change)
            for sid in message.get("removed", ()):
                rows.pop(sid, None)
    for sid, node in started.items():
        assert node.owns(rows[sid]), rows[sid]
    for sid in started:
        await cluster.proxy.post(f"/api/sessions/{sid}/cancel")


#: native sessions retried whole after a failure mid-stream, a lost node's included
RETRYING = """\
[streams]
mid_stream_failure = "retry"
turn_attempts = 2
"""


async def test_a_lost_nodes_session_is_retried_whole_on_a_survivor(
    tmp_path: Path, pg_url: str, redis_url: str, redis_prefix: str
) -> None:
    async with three_nodes(tmp_path, pg_url, redis_url, redis_prefix, RETRYING) as cluster:
        a = cluster.nodes[0]
        session_id = await start(a.http)
        first = await read_events(cluster.proxy, session_id, stop_after=8)
        assert first[-1][1] != "end"
        await a.kill()
        # the client reconnects through nginx with the last id it had
        rest = await read_events(cluster.proxy, session_id, first[-1][0])
        frames = first + rest
        ids = [seq for seq, _, _ in frames]
        assert ids == sorted(set(ids))  # nothing twice, in order
        kinds = [kind for _, kind, _ in frames]
        assert kinds.count("retry") == 1
        retry_at = kinds.index("retry")
        assert frames[retry_at][2]["reason"] == "node_lost"
        assert frames[retry_at][2]["attempt"] == 2
        end = frames[-1]
        assert end[1] == "end" and end[2]["state"] == "complete", end
        record = await record_of(cluster.proxy, session_id)
        assert record["state"] == "complete" and record["attempts"] == 2
        assert [e["type"] for e in record["attempt_errors"]] == ["node_lost"]
        assert not a.owns(record)  # a survivor ran the second attempt
        # the answer after the retry is the whole answer, as the record has it
        assert text_of(frames[retry_at:]) == record["text"] and record["text"]
        # and the client missed nothing: the stored log is what it was sent
        assert await read_events(cluster.proxy, session_id) == frames


async def test_retry_sent_to_another_node_runs_the_turn_again_on_its_owner(
    cluster: Cluster,
) -> None:
    a, b, _ = cluster.nodes
    created = await a.http.post(
        "/api/sessions",
        json={"model": "sim/error-mid-stream", "prompt": "refunds?", "disconnect_policy": "detach"},
        headers={"x-sim-fail-after": "5", "x-sim-fail-count": "1"},
    )
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]

    async def errored() -> bool:
        return (await record_of(b.http, session_id))["state"] == "errored"

    await eventually(errored)
    retried = await b.http.post(f"/api/sessions/{session_id}/retry")
    assert retried.status_code == 202, retried.text
    frames = await read_events(b.http, session_id)
    assert frames[-1][1] == "end" and frames[-1][2]["state"] == "complete"
    assert [kind for _, kind, _ in frames].count("retry") == 1
    record = await record_of(b.http, session_id)
    assert record["state"] == "complete" and record["attempts"] == 2
    assert a.owns(record)  # the node that kept the session ran the new attempt
