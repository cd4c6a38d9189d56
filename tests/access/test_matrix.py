"""Every endpoint by every credential: the status each answers, in the endpoint's own error
format, with ``[auth] required`` on.

Credentials: none, malformed, unknown, revoked, expired, another tenant's key, the owning
tenant's key, a viewer's key and an operator's key. The sessions asked about belong to the
tenant ``own``; another tenant's id must answer exactly as an unknown id does.
"""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
import websockets

from tests.access.conftest import AuthGateway
from tests.conftest import LONG

CREDENTIALS = (
    "none",
    "malformed",
    "unknown",
    "revoked",
    "expired",
    "other",
    "own",
    "viewer",
    "operator",
)
BAD = ("none", "malformed", "unknown", "revoked", "expired")

CHAT = {"model": "sim/support", "messages": [{"role": "user", "content": "refunds?"}]}
MESSAGES = {**CHAT, "max_tokens": 50}
NATIVE = {"model": "sim/support", "prompt": "refunds?"}


def assert_openai_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"}


def assert_anthropic_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}


def assert_native_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert set(response.json()["error"]) == {"type", "message"}


async def own_sessions(ag: AuthGateway) -> tuple[str, str]:
    """A live session and a finished one of the tenant ``own``."""
    http = ag.gw.http
    live = await http.post(
        "/api/sessions",
        json={**NATIVE, "disconnect_policy": "drain"},
        headers={**ag.headers("own"), **LONG},
    )
    assert live.status_code == 201, live.text
    done = await http.post("/v1/chat/completions", json=CHAT, headers=ag.headers("own"))
    assert done.status_code == 200, done.text
    return live.json()["id"], done.headers["x-sluice-session-id"]


async def ws_status(ag: AuthGateway, path: str, headers: dict[str, str]) -> int | str:
    """The handshake's HTTP status when refused, else the first frame's ``error.type`` or
    ``"open"``."""
    url = ag.gw.url.replace("http://", "ws://") + path
    try:
        async with websockets.connect(
            url, additional_headers=headers, open_timeout=10, close_timeout=1
        ) as ws:
            try:
                first = await asyncio.wait_for(ws.recv(), 10)
            except websockets.ConnectionClosed:
                return "closed"
            frame = orjson.loads(first)
            return str(frame["error"]["type"]) if "error" in frame else "open"
    except websockets.InvalidStatus as exc:
        return int(exc.response.status_code)


@pytest.mark.parametrize("who", CREDENTIALS)
async def test_every_endpoint_answers_each_credential_as_its_role_allows(
    auth_gateway: AuthGateway, who: str
) -> None:
    ag = auth_gateway
    live_id, done_id = await own_sessions(ag)
    raw = httpx.AsyncClient(base_url=ag.gw.url, timeout=30)  # no default credential
    h = ag.headers(who)
    ha = ag.headers(who, anthropic=True)
    bad = who in BAD
    async with raw:
        # -- the provider-compatible endpoints, in their own formats
        chat = await raw.post("/v1/chat/completions", json=CHAT, headers=h)
        messages = await raw.post("/v1/messages", json=MESSAGES, headers=ha)
        if bad:
            assert_openai_error(chat, 401)
            assert chat.json()["error"]["type"] == "authentication_error"
            assert_anthropic_error(messages, 401)
            assert messages.json()["error"]["type"] == "authentication_error"
        elif who == "viewer":
            assert_openai_error(chat, 403)
            assert_anthropic_error(messages, 403)
        else:
            assert chat.status_code == 200, chat.text
            assert messages.status_code == 200, messages.text

        # -- the native API
        started = await raw.post("/api/sessions", json=NATIVE, headers=h)
        listed = await raw.get("/api/sessions", headers=h)
        record = await raw.get(f"/api/sessions/{done_id}", headers=h)
        events = await raw.get(f"/api/sessions/{done_id}/events", headers=h)
        if bad:
            for response in (started, listed, record, events):
                assert_native_error(response, 401)
                assert response.headers["www-authenticate"].startswith("Bearer")
        else:
            assert started.status_code == (403 if who == "viewer" else 201), started.text
            ids = {s["id"] for s in listed.json()["sessions"]}
            if who == "other":
                assert done_id not in ids and live_id not in ids
                unknown = await raw.get("/api/sessions/op-000000000000", headers=h)
                assert_native_error(record, 404)
                assert_native_error(unknown, 404)
                assert record.json()["error"]["type"] == unknown.json()["error"]["type"]
                assert_native_error(events, 404)
            else:
                assert done_id in ids and live_id in ids
                assert record.status_code == 200 and record.json()["tenant"] == "own"
                assert events.status_code == 200 and "event: end" in events.text

        # -- the WebSocket of a session
        ws = await ws_status(ag, f"/api/sessions/{done_id}/ws", h)
        if bad:
            assert ws == 403
        elif who == "other":
            assert ws == "unknown_session"
        else:
            assert ws == "open"

        # -- Stop and Retry
        cancel = await raw.post(f"/api/sessions/{live_id}/cancel", headers=h)
        if bad:
            assert_native_error(cancel, 401)
        elif who == "other":
            assert_native_error(cancel, 404)
        elif who == "viewer":
            assert_native_error(cancel, 403)
        else:
            assert cancel.status_code == 200 and cancel.json()["state"] == "cancelled"
        still = ag.gw.gateway.sessions.get(live_id)
        assert still is not None
        assert (still.state == "cancelled") == (who in ("own", "operator"))
        if who not in ("own", "operator"):
            still.cancel("client_stop")
            await still.finished.wait()
        retry = await raw.post(f"/api/sessions/{live_id}/retry", headers=h)
        if bad:
            assert_native_error(retry, 401)
        elif who == "other":
            assert_native_error(retry, 404)
        elif who == "viewer":
            assert_native_error(retry, 403)
        else:
            assert retry.status_code == 202, retry.text

        # -- the pages and their feeds, the admin API, the metrics
        ops = await raw.get("/ops", headers=h)
        page = await raw.get(f"/ops/sessions/{done_id}", headers=h)
        chat_page = await raw.get("/", headers=h)
        keys = await raw.get("/api/admin/keys", headers=h)
        create = await raw.post("/api/admin/keys", json={"name": f"new-{who}"}, headers=h)
        metrics = await raw.get("/metrics", headers=h)
        feed = await ws_status(ag, "/ops/feed", h)
        session_feed = await ws_status(ag, f"/ops/sessions/{done_id}/feed", h)
        chat_stream = await raw.get(f"/chat/sessions/{done_id}/stream", headers=h)
        if who == "none":
            assert chat_stream.status_code == 303
        elif bad:
            assert_native_error(chat_stream, 401)
        elif who == "other":
            assert_native_error(chat_stream, 404)
        else:
            assert chat_stream.status_code == 200 and "event: end" in chat_stream.text
        assert session_feed == (403 if who not in ("viewer", "operator") else "open")
        if who == "none":
            for response in (ops, page, chat_page):
                assert response.status_code == 303
                assert response.headers["location"].startswith("/login?next=")
        elif bad:
            for response in (ops, page, chat_page):
                assert_native_error(response, 401)
        if bad:
            assert_native_error(keys, 401)
            assert_native_error(create, 401)
            assert_native_error(metrics, 401)
            assert feed == 403
        elif who in ("own", "other"):
            for response in (ops, page, keys, create, metrics):
                assert_native_error(response, 403)
            assert chat_page.status_code == 200
            assert feed == 403
        else:
            assert ops.status_code == 200 and page.status_code == 200
            assert keys.status_code == 200
            assert all("hash" not in k and "key" not in k for k in keys.json()["keys"])
            assert metrics.status_code == 200 and b"sluice_" in metrics.content
            assert feed == "open"
            if who == "viewer":
                assert_native_error(create, 403)
            else:
                assert create.status_code == 201 and create.json()["key"].startswith("sk-sluice-")

        # -- always public
        assert (await raw.get("/healthz", headers=h)).status_code == 200
        assert (await raw.get("/openapi.json", headers=h)).status_code == 200
        assert (await raw.get("/login")).status_code == 200


async def test_an_unknown_key_and_a_missing_one_get_the_same_answer_on_every_format(
    auth_gateway: AuthGateway,
) -> None:
    http = httpx.AsyncClient(base_url=auth_gateway.gw.url, timeout=30)
    async with http:
        unknown = auth_gateway.headers("unknown")
        for path, body in (("/v1/chat/completions", CHAT), ("/v1/messages", MESSAGES)):
            a = await http.post(path, json=body, headers=unknown)
            b = await http.post(path, json=body)
            assert a.status_code == b.status_code == 401
            assert a.json()["error"]["type"] == b.json()["error"]["type"]
