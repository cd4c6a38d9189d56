"""The guard's browser rules over real HTTP: Host, Origin on state changes and WebSocket
handshakes, CORS when configured, and what auth on leaves public. (The same rules in a real
browser: tests/browser/test_security.py.)"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import websockets

from sluice.gateway.guard import default_allowed_hosts
from tests.access.conftest import AuthGateway, auth_gateway_for, auth_settings
from tests.conftest import LONG, GatewayUnderTest, running_gateway
from tests.conftest import test_settings as settings_for

NATIVE = {"model": "sim/support", "prompt": "refunds?"}


async def test_a_host_the_gateway_does_not_answer_to_is_refused(
    gateway: GatewayUnderTest,
) -> None:
    """DNS rebinding: a page at evil.example whose name now points here still says so."""
    for path in ("/api/sessions", "/ops", "/v1/models", "/healthz"):
        response = await gateway.http.get(path, headers={"host": "evil.example"})
        assert response.status_code == 403, path
    ok = await gateway.http.get("/api/sessions", headers={"host": "localhost:8080"})
    assert ok.status_code == 200


def test_the_default_hosts_are_the_bound_address_and_loopback() -> None:
    assert default_allowed_hosts("127.0.0.1") == ["127.0.0.1", "localhost", "127.0.0.1", "::1"]
    assert default_allowed_hosts("[::1]")[0] == "::1"
    assert default_allowed_hosts("0.0.0.0") == ["*"]


async def test_allowed_hosts_from_the_config_replace_the_defaults(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    settings.allowed_hosts = ["gateway.internal"]
    async with running_gateway(settings) as gw:
        assert (await gw.http.get("/healthz")).status_code == 403
        ok = await gw.http.get("/healthz", headers={"host": "gateway.internal:443"})
        assert ok.status_code == 200


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", "http://127.0.0.1:1", "http://localhost"]
)
async def test_a_state_change_from_another_origin_is_refused(
    gateway: GatewayUnderTest, origin: str
) -> None:
    session_id = (
        await gateway.http.post(
            "/api/sessions", json={**NATIVE, "disconnect_policy": "drain"}, headers=LONG
        )
    ).json()["id"]
    headers = {"origin": origin}
    start = await gateway.http.post("/api/sessions", json=NATIVE, headers=headers)
    cancel = await gateway.http.post(f"/api/sessions/{session_id}/cancel", headers=headers)
    chat = await gateway.http.post(
        "/v1/chat/completions",
        json={"model": "sim/support", "messages": [{"role": "user", "content": "x"}]},
        headers=headers,
    )
    assert start.status_code == cancel.status_code == chat.status_code == 403
    assert chat.json()["error"]["type"] == "permission_error"
    session = gateway.gateway.sessions.get(session_id)
    assert session is not None and session.state == "streaming"
    assert len(gateway.gateway.sessions.live) == 1


async def test_the_gateways_own_origin_and_allowed_origins_may_change_state(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    settings.allowed_origins = ["https://console.example.com"]
    async with running_gateway(settings) as gw:
        own = gw.url  # http://127.0.0.1:PORT, as the page's own origin would be
        for origin in (own, "https://console.example.com"):
            response = await gw.http.post("/api/sessions", json=NATIVE, headers={"origin": origin})
            assert response.status_code == 201, origin


async def test_a_browser_that_says_cross_site_without_an_origin_is_refused(
    gateway: GatewayUnderTest,
) -> None:
    response = await gateway.http.post(
        "/api/sessions", json=NATIVE, headers={"sec-fetch-site": "cross-site"}
    )
    assert response.status_code == 403


async def test_websockets_from_another_origin_are_refused_at_the_handshake(
    gateway: GatewayUnderTest,
) -> None:
    session_id = (await gateway.http.post("/api/sessions", json=NATIVE)).json()["id"]
    base = gateway.url.replace("http://", "ws://")
    for path in (f"/api/sessions/{session_id}/ws", "/ops/feed"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(base + path, origin="https://evil.example"):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403
        async with websockets.connect(base + path, origin=gateway.url, close_timeout=1):  # type: ignore[arg-type]
            pass


async def test_cors_is_off_by_default(gateway: GatewayUnderTest) -> None:
    preflight = await gateway.http.options(
        "/v1/chat/completions",
        headers={"origin": "https://chat.example", "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


async def test_a_configured_front_end_gets_preflights_and_cors_headers(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    settings.cors_origins = ["https://chat.example"]
    async with running_gateway(settings) as gw:
        preflight = await gw.http.options(
            "/v1/chat/completions",
            headers={
                "origin": "https://chat.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "https://chat.example"
        assert "authorization" in preflight.headers["access-control-allow-headers"]
        async with gw.http.stream(
            "POST",
            "/v1/chat/completions",
            json={
                "model": "sim/support",
                "messages": [{"role": "user", "content": "x"}],
                "stream": True,
            },
            headers={"origin": "https://chat.example"},
        ) as streamed:
            assert streamed.status_code == 200
            assert streamed.headers["access-control-allow-origin"] == "https://chat.example"
            assert "x-sluice-session-id" in streamed.headers["access-control-expose-headers"]
            assert "x-sluice-conversation-id" in streamed.headers["access-control-expose-headers"]
            body = b"".join([chunk async for chunk in streamed.aiter_bytes()])
        assert body.rstrip().endswith(b"data: [DONE]")
        other = await gw.http.post(
            "/api/sessions", json=NATIVE, headers={"origin": "https://evil.example"}
        )
        assert other.status_code == 403


async def test_with_auth_on_the_simulator_is_not_mounted_unless_configured(
    tmp_path: Path,
) -> None:
    from sluice.config import load_settings

    config = tmp_path / "sluice.toml"
    config.write_text(f'[auth]\nrequired = true\n[store]\nurl = "sqlite:///{tmp_path}/s.db"\n')
    assert load_settings(config).embed_sim is False
    config.write_text(
        f'[auth]\nrequired = true\n[sim]\nembedded = true\n[store]\nurl = "sqlite:///{tmp_path}/s.db"\n'
    )
    assert load_settings(config).embed_sim is True
    assert load_settings(None).embed_sim is True


async def test_the_simulators_recorder_needs_a_viewer_when_auth_is_on(
    auth_gateway: AuthGateway,
) -> None:
    async with httpx.AsyncClient(base_url=auth_gateway.gw.url, timeout=30) as http:
        anonymous = await http.get("/sim/requests")
        client = await http.get("/sim/requests", headers=auth_gateway.headers("own"))
        viewer = await http.get("/sim/requests", headers=auth_gateway.headers("viewer"))
    assert anonymous.status_code == 401 and client.status_code == 403
    assert viewer.status_code == 200


async def test_open_metrics_lets_prometheus_scrape_without_a_credential(tmp_path: Path) -> None:
    settings = auth_settings(tmp_path)
    settings.auth.open_metrics = True
    async with (
        auth_gateway_for(settings) as ag,
        httpx.AsyncClient(base_url=ag.gw.url, timeout=30) as http,
    ):
        assert (await http.get("/metrics")).status_code == 200
        assert (await http.get("/api/sessions")).status_code == 401


async def test_an_operator_logs_in_with_a_form_and_the_cookie_is_http_only_and_strict(
    auth_gateway: AuthGateway,
) -> None:
    ag = auth_gateway
    async with httpx.AsyncClient(base_url=ag.gw.url, timeout=30) as http:
        refused = await http.post(
            "/login", data={"key": ag.keys["own"], "next": "/ops"}, headers={"origin": ag.gw.url}
        )
        assert refused.status_code == 403 and "sluice_session" not in refused.headers.get(
            "set-cookie", ""
        )
        login = await http.post(
            "/login",
            data={"key": ag.keys["viewer"], "next": "//evil.example/x"},
            headers={"origin": ag.gw.url},
        )
        assert login.status_code == 303 and login.headers["location"] == "/ops"
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain http on loopback
        assert ag.keys["viewer"] not in cookie
        assert (await http.get("/ops")).status_code == 200
        assert (await http.get("/api/sessions")).status_code == 200
        cross = await http.post("/logout", headers={"origin": "https://evil.example"})
        assert cross.status_code == 403
        out = await http.post("/logout", headers={"origin": ag.gw.url})
        assert out.status_code == 303
        http.cookies.clear()
        assert (await http.get("/ops")).status_code == 303
