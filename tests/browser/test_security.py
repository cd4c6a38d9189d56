"""The gateway against a hostile page in a real browser, and the operators' login.

A page on another origin tries to cancel, start and read sessions by ``fetch`` (cors and
no-cors, JSON and ``text/plain`` bodies, with the visitor's credentials), by auto-submitted
forms and by WebSockets, while an operator is logged in in the same browser, and again with
auth off (the loopback demo). Two attackers:

- ``127.0.0.1`` on another port: another origin but the same *site* (cookies ignore ports), so
  the operator's ``SameSite=Strict`` cookie goes with its requests and the ``Origin`` check is
  what stops them;
- ``127.0.0.2``: another site, so the cookie stays home as well.

The browser reaches the gateway through a ``TcpRelay`` that records every request head: the
tests see what the browser sent (the cookie or not), the gateway's counters what it refused,
and the sessions and the simulator that nothing happened.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from sluice.access.control import COOKIE_NAME
from sluice.config import Settings
from sluice.gateway.server import RunningServer
from tests.access.conftest import AuthGateway, auth_gateway_for, auth_settings
from tests.browser.conftest import CHROMIUM_FLAGS, TcpRelay, chromium_path
from tests.conftest import LONG, GatewayUnderTest, running_gateway, start
from tests.conftest import test_settings as gateway_settings

WAIT_MS = 30_000
#: a session that streams for a long while (the simulator's pace for these tests)
SLOW = {"token_rate": 20.0, "ttft": 0.05, "output_tokens": 4000}
#: the body of a text/plain form that is also JSON: ``name=value`` of one field, with the
#: name opening the JSON and the value closing it (``{"model": ..., "pad": "="}``)
JSON_IN_FORM_NAME = '{"model": "sim/support", "prompt": "forged", "pad": "'
JSON_IN_FORM_VALUE = '"}'


# ---------------------------------------------------------------------------------------------
# The attacker's site


class AttackerSite:
    """A small HTTP server on another origin that serves the pages a test gives it."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.pages: dict[str, str] = {}
        self.url = ""
        self._server: RunningServer | None = None

    async def serve(self, request: Request) -> Response:
        html = self.pages.get(request.path_params["name"])
        if html is None:
            return Response("not here", status_code=404)
        return HTMLResponse(html)

    async def __aenter__(self) -> AttackerSite:
        app = Starlette(routes=[Route("/{name}", self.serve)])
        self._server = RunningServer(app, host=self.host, listeners=1)
        await self._server.__aenter__()
        self.url = self._server.url
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        await self._server.__aexit__(None, None, None)

    @property
    def origin(self) -> str:
        return self.url


def auto_form(action: str, enctype: str, fields: dict[str, str]) -> str:
    """A page that posts a form to ``action`` as soon as it loads."""
    inputs = "".join(
        f"<input type=hidden name='{name}' value='{value}'>" for name, value in fields.items()
    )
    return (
        "<!doctype html><title>win a prize</title>"
        f'<form method=post action="{action}" enctype="{enctype}">{inputs}</form>'
        "<script>document.forms[0].submit()</script>"
    )


#: every fetch the attacker's page tries, each as {name: outcome}; an outcome is what the
#: page can see: an exception, or the response's type and status (0 for an opaque one)
FETCHES_JS = """
async ({gw, live}) => {
  const outcomes = {};
  const attempt = async (name, url, init) => {
    try {
      const response = await fetch(url, {credentials: "include", ...init});
      let body = null;
      if (response.type !== "opaque") body = await response.text();
      outcomes[name] = {type: response.type, status: response.status, body};
    } catch (error) {
      outcomes[name] = {error: String(error)};
    }
  };
  const json = {"content-type": "application/json"};
  const text = {"content-type": "text/plain"};
  const start = JSON.stringify({model: "sim/support", prompt: "forged"});
  const cancel = `${gw}/api/sessions/${live}/cancel`;
  const retry = `${gw}/api/sessions/${live}/retry`;
  await attempt("cancel cors json", cancel, {method: "POST", headers: json, body: "{}"});
  await attempt("cancel cors text", cancel, {method: "POST", headers: text, body: "{}"});
  await attempt("cancel cors empty", cancel, {method: "POST"});
  await attempt("cancel no-cors", cancel, {method: "POST", mode: "no-cors"});
  await attempt("cancel no-cors json", cancel,
                {method: "POST", mode: "no-cors", headers: json, body: "{}"});
  await attempt("retry no-cors", retry, {method: "POST", mode: "no-cors"});
  const sessions = `${gw}/api/sessions`;
  await attempt("start cors json", sessions, {method: "POST", headers: json, body: start});
  await attempt("start cors text", sessions, {method: "POST", headers: text, body: start});
  await attempt("start no-cors text", sessions,
                {method: "POST", mode: "no-cors", headers: text, body: start});
  await attempt("start no-cors json", sessions,
                {method: "POST", mode: "no-cors", headers: json, body: start});
  await attempt("chat no-cors", `${gw}/v1/chat/completions`,
                {method: "POST", mode: "no-cors", headers: text,
                 body: JSON.stringify({model: "sim/support",
                                       messages: [{role: "user", content: "forged"}]})});
  await attempt("read session", `${gw}/api/sessions/${live}`, {});
  await attempt("read list", `${gw}/api/sessions`, {});
  await attempt("follow events", `${gw}/api/sessions/${live}/events`, {});
  await attempt("follow events no-cors", `${gw}/api/sessions/${live}/events`, {mode: "no-cors"});
  await attempt("follow chat stream", `${gw}/chat/sessions/${live}/stream`, {});
  await attempt("follow chat stream no-cors", `${gw}/chat/sessions/${live}/stream`,
                {mode: "no-cors"});
  await attempt("read page", `${gw}/ops/sessions/${live}`, {});
  await attempt("read session no-cors", `${gw}/api/sessions/${live}`, {mode: "no-cors"});
  return outcomes;
}
"""

#: POSTs that reach the gateway (no preflight): each must be refused by the Origin check
SENT_POSTS = (
    "cancel cors text",
    "cancel cors empty",
    "cancel no-cors",
    "cancel no-cors json",
    "retry no-cors",
    "start cors text",
    "start no-cors text",
    "start no-cors json",
    "chat no-cors",
)
#: GETs that would make the page a reader of the session (whose leaving can cancel it)
FOLLOWS = (
    "follow events",
    "follow events no-cors",
    "follow chat stream",
    "follow chat stream no-cors",
)
#: requests that a preflight stops before they are sent
PREFLIGHTED = ("cancel cors json", "start cors json")
READS = ("read session", "read list", "read page")

#: open a WebSocket and report what the page saw of it
WEBSOCKET_JS = """
async (url) => new Promise((resolve) => {
  const seen = {opened: false, messages: 0, error: false};
  const socket = new WebSocket(url);
  socket.onopen = () => { seen.opened = true; };
  socket.onmessage = () => { seen.messages += 1; };
  socket.onerror = () => { seen.error = true; };
  socket.onclose = (event) => resolve({...seen, code: event.code});
  setTimeout(() => { socket.close(); resolve({...seen, code: "timeout"}); }, 8000);
})
"""


# ---------------------------------------------------------------------------------------------
# What the gateway did


def refused(gw: GatewayUnderTest, type_: str, area: str = "native") -> float:
    """The gateway's count of requests refused before any route, by area and type."""
    value = gw.gateway.metrics.registry.get_sample_value(
        "sluice_rejected_requests_total", {"endpoint": area, "type": type_}
    )
    return value or 0.0


def refused_by_origin(gw: GatewayUnderTest) -> float:
    return sum(refused(gw, "forbidden", area) for area in ("native", "chat", "pages", "login"))


async def produced(gw: GatewayUnderTest, session_id: str) -> int:
    requests = await gw.sim_requests(session_id)
    return int(requests[-1]["tokens_produced"]) if requests else 0


async def until_produced_beyond(gw: GatewayUnderTest, session_id: str, tokens: int) -> int:
    """The simulator's count for the session once it has passed ``tokens`` (bounded wait)."""
    for _ in range(WAIT_MS // 50):
        now = await produced(gw, session_id)
        if now > tokens:
            return now
        await asyncio.sleep(0.05)
    raise AssertionError(f"the simulator stayed at {tokens} tokens or fewer")


async def stop_all(gw: GatewayUnderTest) -> None:
    live = list(gw.gateway.sessions.live.values())
    for session in live:
        session.cancel("client_stop")
    async with asyncio.timeout(WAIT_MS / 1000):
        for session in live:
            await session.finished.wait()


def heads_to(relay: TcpRelay, method: str, path: str) -> list[str]:
    """The request heads the browser sent through the relay for ``method path``."""
    return [h for h in relay.requests if h.startswith(f"{method} {path} ")]


def has_cookie(head: str) -> bool:
    return any(
        line.lower().startswith("cookie:") and f"{COOKIE_NAME}=" in line
        for line in head.split("\r\n")
    )


# ---------------------------------------------------------------------------------------------
# Fixtures


@asynccontextmanager
async def slow_auth_gateway(tmp_path: Path) -> AsyncIterator[AuthGateway]:
    async with auth_gateway_for(auth_settings(tmp_path, **SLOW)) as ag:
        try:
            yield ag
        finally:
            await stop_all(ag.gw)


@pytest.fixture
async def ag(tmp_path: Path) -> AsyncIterator[AuthGateway]:
    async with slow_auth_gateway(tmp_path) as gateway:
        yield gateway


@pytest.fixture
async def relay(ag: AuthGateway) -> AsyncIterator[TcpRelay]:
    async with TcpRelay(ag.gw.url) as tcp:
        yield tcp


async def log_in(page: Page, url: str, key: str, *, landing: str = "/ops") -> None:
    """Through the login page, as a person would: open a page, type the key, submit."""
    await page.goto(f"{url}{landing}")
    await expect(page).to_have_url(f"{url}/login?next={landing}")
    await page.fill("#key", key)
    await page.click("#login-submit")
    await expect(page).to_have_url(f"{url}{landing}", timeout=WAIT_MS)


async def logged_in_cookie(context: BrowserContext) -> dict[str, Any]:
    cookies = [c for c in await context.cookies() if c["name"] == COOKIE_NAME]
    assert len(cookies) == 1, cookies
    return dict(cookies[0])


# ---------------------------------------------------------------------------------------------
# Another origin, with an operator logged in


async def attack(
    context: BrowserContext, site: AttackerSite, gw_url: str, gw: GatewayUnderTest, live: str
) -> dict[str, Any]:
    """Every attack of the attacker's site on the session ``live``; asserts what the page
    and the gateway saw, and returns the page's fetch outcomes."""
    sessions_before = set(gw.gateway.sessions.live) | {
        s["id"] for s in (await gw.http.get("/api/sessions")).json()["sessions"]
    }
    refused_before = refused_by_origin(gw)
    tokens_before = await produced(gw, live)
    page = await context.new_page()
    site.pages["fetch"] = "<!doctype html><title>a page elsewhere</title><p>hello"
    await page.goto(f"{site.url}/fetch")
    outcomes: dict[str, Any] = await page.evaluate(FETCHES_JS, {"gw": gw_url, "live": live})

    # What the page could see: every cors request failed, every no-cors one is opaque.
    for name, outcome in outcomes.items():
        if "no-cors" in name:
            assert outcome == {"type": "opaque", "status": 0, "body": None}, (name, outcome)
        else:
            assert "error" in outcome and "Failed to fetch" in outcome["error"], (name, outcome)

    # Forms, auto-submitted on load: the browser navigates to the gateway's refusal.
    form_posts = 0
    for name, action, enctype, fields in (
        ("cancel-form", f"/api/sessions/{live}/cancel", "application/x-www-form-urlencoded", {}),
        ("cancel-form-text", f"/api/sessions/{live}/cancel", "text/plain", {"a": "b"}),
        ("retry-form", f"/api/sessions/{live}/retry", "application/x-www-form-urlencoded", {}),
        (
            "start-form-text",
            "/api/sessions",
            "text/plain",
            {JSON_IN_FORM_NAME: JSON_IN_FORM_VALUE},
        ),
        (
            "start-form",
            "/api/sessions",
            "application/x-www-form-urlencoded",
            {"model": "sim/support", "prompt": "forged"},
        ),
        ("login-form", "/login", "application/x-www-form-urlencoded", {"key": "sk-sluice-x"}),
    ):
        target = f"{gw_url}{action}"
        site.pages[name] = auto_form(target, enctype, fields)
        async with page.expect_response(target) as answer:
            await page.goto(f"{site.url}/{name}")
        response = await answer.value
        assert response.status == 403, (name, response.status, await response.text())
        assert "another site" in await response.text()
        form_posts += 1

    # An EventSource and an image on the session's events: refused, nothing read.
    site.pages["follow"] = (
        "<!doctype html><title>pictures</title>"
        f'<img id=pixel src="{gw_url}/api/sessions/{live}/events">'
    )
    async with page.expect_request(f"{gw_url}/api/sessions/{live}/events"):
        await page.goto(f"{site.url}/follow")
    await page.wait_for_function("document.getElementById('pixel').complete")
    assert await page.evaluate("document.getElementById('pixel').naturalWidth") == 0
    source = await page.evaluate(
        """async (url) => new Promise((resolve) => {
          const source = new EventSource(url, {withCredentials: true});
          let messages = 0;
          source.onmessage = () => { messages += 1; };
          source.addEventListener("update", () => { messages += 1; });
          source.onerror = () => { source.close(); resolve({messages, state: source.readyState}); };
        })""",
        f"{gw_url}/api/sessions/{live}/events",
    )
    assert source == {"messages": 0, "state": 2}, source
    follows = len(FOLLOWS) + 2

    # WebSockets: the handshake is refused, the page sees an error and no message.
    await page.goto(f"{site.url}/fetch")
    ws_url = gw_url.replace("http://", "ws://")
    for path in (f"/api/sessions/{live}/ws", "/ops/feed", f"/ops/sessions/{live}/feed"):
        seen = await page.evaluate(WEBSOCKET_JS, f"{ws_url}{path}")
        assert seen == {"opened": False, "messages": 0, "error": True, "code": 1006}, (path, seen)
    await page.close()

    # What the gateway did: every POST that reached it, and every GET that would have
    # followed the session, refused by the Origin check; no session started, the live one
    # untouched and its simulator still generating.
    assert refused_by_origin(gw) - refused_before == len(SENT_POSTS) + form_posts + follows
    session = gw.gateway.sessions.get(live)
    assert session is not None and session.state == "streaming"
    assert session.attempts == 1
    sessions_after = set(gw.gateway.sessions.live) | {
        s["id"] for s in (await gw.http.get("/api/sessions")).json()["sessions"]
    }
    assert sessions_after == sessions_before, "no session was started"
    assert len(await gw.sim_requests(live)) == 1, "no new attempt"
    await until_produced_beyond(gw, live, tokens_before + 5)
    return outcomes


@pytest.mark.parametrize(
    "attacker_host", ["127.0.0.1", "127.0.0.2"], ids=["same-site", "cross-site"]
)
async def test_a_page_elsewhere_cannot_cancel_start_or_read_while_an_operator_is_logged_in(
    ag: AuthGateway, relay: TcpRelay, context: BrowserContext, page: Page, attacker_host: str
) -> None:
    gw = ag.gw
    live = await start(gw, headers=LONG)
    await until_produced_beyond(gw, live, 5)
    await log_in(page, relay.url, ag.keys["operator"])
    cookie = await logged_in_cookie(context)
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    await expect(page.locator(f'#ops-rows tr[data-id="{live}"]')).to_have_attribute(
        "data-state", "streaming", timeout=WAIT_MS
    )
    relay.requests.clear()

    async with AttackerSite(attacker_host) as site:
        await attack(context, site, relay.url, gw, live)

    # The forged requests went with the operator's cookie from the same site (so the Origin
    # check alone stopped them), and without it from another site (SameSite=Strict).
    forged = heads_to(relay, "POST", f"/api/sessions/{live}/cancel")
    forged += heads_to(relay, "POST", "/api/sessions")
    sockets = heads_to(relay, "GET", "/ops/feed")
    assert len(forged) >= 11 and sockets, relay.requests
    for head in forged + sockets:
        assert f"origin: {site.origin}" in head.lower(), head
        assert has_cookie(head) == (attacker_host == "127.0.0.1"), head

    # The operator's own page still works: its feed is live, its Stop stops.
    row = page.locator(f'#ops-rows tr[data-id="{live}"]')
    await row.locator('button[data-action="cancel"]').click()
    await expect(row).to_have_attribute("data-state", "cancelled", timeout=WAIT_MS)


async def test_a_page_elsewhere_cannot_cancel_start_or_read_with_auth_off(
    tmp_path: Path, context: BrowserContext
) -> None:
    """The loopback demo: no keys at all, and still no cross-site state change or read."""
    settings = gateway_settings(tmp_path, **SLOW)
    assert not settings.auth.required
    async with running_gateway(settings) as gw:
        try:
            live = await start(gw, headers=LONG)
            await until_produced_beyond(gw, live, 5)
            for host in ("127.0.0.1", "127.0.0.2"):
                async with AttackerSite(host) as site:
                    outcomes = await attack(context, site, gw.url, gw, live)
                # with auth off a cors read reaches the gateway and is answered, but the
                # browser keeps the answer from the page
                assert all("error" in outcomes[name] for name in READS)
        finally:
            await stop_all(gw)


async def test_a_text_plain_body_is_refused_even_from_an_allowed_origin(
    tmp_path: Path, context: BrowserContext
) -> None:
    """Behind the Origin check, the second wall: a state change of the API carries JSON. A
    page on an origin the operator allowed (``[server] allowed_origins``) can still only send
    what a browser sends cross-origin without a preflight, and those bodies get 415."""
    async with AttackerSite("127.0.0.2") as site:
        settings = gateway_settings(tmp_path, **SLOW)
        settings.allowed_origins = [site.origin]
        async with running_gateway(settings) as gw:
            before = set(gw.gateway.sessions.live)
            page = await context.new_page()
            site.pages["fetch"] = "<!doctype html><title>front end</title>"
            await page.goto(f"{site.url}/fetch")
            statuses = await page.evaluate(
                """async (gw) => {
                  const body = JSON.stringify({model: "sim/support", prompt: "forged"});
                  const out = [];
                  for (const type of ["text/plain", "application/x-www-form-urlencoded",
                                      "multipart/form-data; boundary=x"]) {
                    const r = await fetch(`${gw}/api/sessions`, {
                      method: "POST", headers: {"content-type": type}, body,
                    }).catch((e) => null);
                    out.push(r === null ? "failed" : r.status);
                  }
                  return out;
                }""",
                gw.url,
            )
            # no CORS for this origin: the page cannot read the status, the gateway counts
            assert statuses == ["failed", "failed", "failed"]
            assert refused(gw, "unsupported_media_type") == 3
            for name, enctype, fields in (
                ("form-text", "text/plain", {JSON_IN_FORM_NAME: JSON_IN_FORM_VALUE}),
                (
                    "form-urlencoded",
                    "application/x-www-form-urlencoded",
                    {"model": "sim/support", "prompt": "forged"},
                ),
            ):
                site.pages[name] = auto_form(f"{gw.url}/api/sessions", enctype, fields)
                async with page.expect_response(f"{gw.url}/api/sessions") as answer:
                    await page.goto(f"{site.url}/{name}")
                assert (await answer.value).status == 415
            assert refused(gw, "unsupported_media_type") == 5
            assert set(gw.gateway.sessions.live) == before == set()
            assert (await gw.http.get("/api/sessions")).json()["sessions"] == []


# ---------------------------------------------------------------------------------------------
# DNS rebinding: a name that is not the gateway's


@pytest.mark.parametrize("auth", [True, False], ids=["auth-on", "auth-off"])
async def test_a_foreign_host_header_is_refused(tmp_path: Path, auth: bool) -> None:
    settings: Settings = auth_settings(tmp_path) if auth else gateway_settings(tmp_path)
    async with running_gateway(settings) as gw:
        evil = {"host": "evil.example"}
        for method, path in (
            ("GET", "/api/sessions"),
            ("GET", "/ops"),
            ("GET", "/"),
            ("POST", "/api/sessions"),
            ("GET", "/metrics"),
        ):
            response = await gw.http.request(method, path, headers=evil, json={})
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"]["type"] == "forbidden"
        port = urlsplit(gw.url).port
        with pytest.raises(websockets.InvalidStatus) as refusal:
            async with websockets.connect(
                f"ws://127.0.0.1:{port}/ops/feed",
                additional_headers={"host": f"evil.example:{port}"},
                open_timeout=10,
            ):
                pass
        assert refusal.value.response.status_code == 403
        # the gateway's own names still answer
        for host in ("127.0.0.1", "localhost", f"localhost:{port}"):
            answer = await gw.http.get("/healthz", headers={"host": host})
            assert answer.status_code == 200


async def test_following_a_session_from_another_site_is_refused(tmp_path: Path) -> None:
    """A reader that leaves early is a disconnect, and the default policy answers it with a
    cancel: a browser's GET of a session's events or chat stream from another site is as
    much a state change as a POST, and refused the same way (with auth off too)."""
    async with running_gateway(gateway_settings(tmp_path, **SLOW)) as gw:
        try:
            live = await start(gw, headers=LONG)
            for path in (f"/api/sessions/{live}/events", f"/chat/sessions/{live}/stream"):
                for headers in (
                    {"origin": "http://127.0.0.2:8000"},
                    {"sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors"},
                    {"sec-fetch-site": "same-site", "sec-fetch-mode": "navigate"},
                ):
                    response = await gw.http.get(path, headers=headers)
                    assert response.status_code == 403, (path, headers, response.text)
                    assert "another site" in response.json()["error"]["message"]
            session = gw.gateway.sessions.get(live)
            assert session is not None and session.state == "streaming"
            assert session.disconnects == ()
            # the gateway's own pages, a typed address and a script still follow it
            for headers in (
                {"origin": gw.url, "sec-fetch-site": "same-origin"},
                {"sec-fetch-site": "none"},
                {},
            ):
                async with gw.http.stream(
                    "GET", f"/api/sessions/{live}/events", headers=headers
                ) as response:
                    assert response.status_code == 200
        finally:
            await stop_all(gw)


async def test_a_rebound_name_gets_nothing_in_a_browser(ag: AuthGateway) -> None:
    """Chromium resolves ``evil.example`` to the gateway's address, as after a DNS rebinding:
    the page at that name is refused, and so are its same-origin fetches and sockets."""
    gw = ag.gw
    live = await start(gw, headers=LONG)
    port = urlsplit(gw.url).port
    rules = "--host-resolver-rules=MAP evil.example 127.0.0.1"
    async with async_playwright() as playwright:
        browser: Browser = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=[*CHROMIUM_FLAGS, rules]
        )
        try:
            page = await browser.new_page()
            response = await page.goto(f"http://evil.example:{port}/ops")
            assert response is not None and response.status == 403
            seen = await page.evaluate(
                """async (live) => {
                  const cancel = await fetch(`/api/sessions/${live}/cancel`, {method: "POST"});
                  const read = await fetch(`/api/sessions/${live}`);
                  return [cancel.status, read.status, await read.text()];
                }""",
                live,
            )
            assert seen[0] == 403 and seen[1] == 403, seen
            assert live not in seen[2]
            socket = await page.evaluate(WEBSOCKET_JS, f"ws://evil.example:{port}/ops/feed")
            assert socket["opened"] is False and socket["messages"] == 0
        finally:
            await browser.close()
    session = gw.gateway.sessions.get(live)
    assert session is not None and session.state == "streaming"


# ---------------------------------------------------------------------------------------------
# Operators and viewers in the pages


async def test_an_operator_logs_in_and_stops_and_retries_from_the_ops_center_and_a_session_page(
    ag: AuthGateway, context: BrowserContext, page: Page
) -> None:
    gw = ag.gw
    first = await start(gw, headers=LONG)
    await log_in(page, gw.url, ag.keys["operator"])
    cookie = await logged_in_cookie(context)
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert ag.keys["operator"] not in cookie["value"]
    await expect(page.locator(".site-user-name")).to_have_text("operator")
    await expect(page.locator('.site-user [data-field="role"]')).to_have_text("operator")
    await expect(page.locator("#feed-status")).to_have_text("live", timeout=WAIT_MS)

    # The operations center: a live session, Stop, then Retry.
    row = page.locator(f'#ops-rows tr[data-id="{first}"]')
    await expect(row).to_have_attribute("data-state", "streaming", timeout=WAIT_MS)
    await until_produced_beyond(gw, first, 5)
    await row.locator('button[data-action="cancel"]').click()
    await expect(row).to_have_attribute("data-state", "cancelled", timeout=WAIT_MS)
    record = await gw.final_record(first)
    assert record["state"] == "cancelled" and record["cancel_reason"] == "client_stop"
    [attempt] = await gw.sim_requests(first)
    assert attempt["client_disconnected"] is True
    stopped_at = attempt["tokens_produced"]
    await asyncio.sleep(0.5)
    assert await produced(gw, first) == stopped_at, "the simulator stopped generating"

    await row.locator('button[data-action="retry"]').click()
    await expect(row).to_have_attribute("data-state", "streaming", timeout=WAIT_MS)
    attempts = await gw.sim_requests(first)
    assert len(attempts) == 2, "a new attempt started"
    session = gw.gateway.sessions.get(first)
    assert session is not None and session.attempts == 2

    # A session's page: Stop, then Retry.
    second = await start(gw, headers=LONG)
    await page.goto(f"{gw.url}/ops/sessions/{second}")
    head = page.locator("#session")
    await expect(head).to_have_attribute("data-state", "streaming", timeout=WAIT_MS)
    await page.click('#session button[data-action="cancel"]')
    await expect(head).to_have_attribute("data-state", "cancelled", timeout=WAIT_MS)
    await expect(page.locator('[data-summary="state"]')).to_have_text("cancelled", timeout=WAIT_MS)
    assert (await gw.final_record(second))["cancel_reason"] == "client_stop"
    await page.click('#session button[data-action="retry"]')
    await expect(head).to_have_attribute("data-state", "streaming", timeout=WAIT_MS)
    assert len(await gw.sim_requests(second)) == 2

    # The chat page works for the logged-in operator too (same-origin fetches, the cookie).
    await page.goto(f"{gw.url}/")
    await page.select_option("#model", "sim/support")
    await page.fill("#prompt", "from the chat page")
    await page.click("#send")
    turn = page.locator("#turn")
    await expect(turn).to_have_attribute("data-state", "streaming", timeout=WAIT_MS)
    await page.click("#stop")
    await expect(turn).to_have_attribute("data-state", "cancelled", timeout=WAIT_MS)


async def test_a_viewer_sees_but_cannot_stop(
    ag: AuthGateway, context: BrowserContext, page: Page
) -> None:
    gw = ag.gw
    live = await start(gw, headers=LONG)
    await log_in(page, gw.url, ag.keys["viewer"])
    await expect(page.locator('.site-user [data-field="role"]')).to_have_text("viewer")

    # The operations center shows the session, live, and offers no Stop or Retry.
    row = page.locator(f'#ops-rows tr[data-id="{live}"]')
    await expect(row).to_have_attribute("data-state", "streaming", timeout=WAIT_MS)
    tokens = row.locator('[data-field="tokens"]')
    shown = await tokens.text_content()
    await expect(tokens).not_to_have_text(shown or "", timeout=WAIT_MS)  # the feed moves it
    assert await page.locator("button[data-action]").count() == 0
    assert (
        await page.locator("#ops-row-template").evaluate(
            "t => t.content.querySelectorAll('button').length"
        )
        == 0
    )

    # The session's page too.
    await page.goto(f"{gw.url}/ops/sessions/{live}")
    await expect(page.locator("#feed-status")).to_have_text("live", timeout=WAIT_MS)
    await expect(page.locator("#session")).to_have_attribute("data-state", "streaming")
    assert await page.locator("button[data-action]").count() == 0

    # A forged Stop or Retry from the viewer's own page is refused, and changes nothing.
    statuses = await page.evaluate(
        """async (live) => {
          const out = [];
          for (const action of ["cancel", "retry"]) {
            const r = await fetch(`/api/sessions/${live}/${action}`, {
              method: "POST", headers: {"content-type": "application/json"}, body: "{}",
            });
            out.push([r.status, (await r.json()).error.type]);
          }
          const start = await fetch("/api/sessions", {
            method: "POST", headers: {"content-type": "application/json"},
            body: JSON.stringify({model: "sim/support", prompt: "a viewer's"}),
          });
          out.push([start.status, (await start.json()).error.type]);
          return out;
        }""",
        live,
    )
    assert statuses == [[403, "forbidden"], [403, "forbidden"], [403, "forbidden"]]
    session = gw.gateway.sessions.get(live)
    assert session is not None and session.state == "streaming" and session.attempts == 1
    assert len(gw.gateway.sessions.live) == 1

    # The chat page: readable, but no Send.
    await page.goto(f"{gw.url}/")
    await expect(page.locator("#read-only")).to_contain_text("viewer")
    await expect(page.locator("#send")).to_be_disabled()


async def test_logging_out_clears_the_cookie(
    ag: AuthGateway, context: BrowserContext, page: Page
) -> None:
    await log_in(page, ag.gw.url, ag.keys["operator"])
    value = (await logged_in_cookie(context))["value"]
    await page.click("#logout")
    await expect(page).to_have_url(f"{ag.gw.url}/login", timeout=WAIT_MS)
    assert [c for c in await context.cookies() if c["name"] == COOKIE_NAME] == []
    assert await page.locator(".site-user").count() == 0
    await page.goto(f"{ag.gw.url}/ops")
    await expect(page).to_have_url(f"{ag.gw.url}/login?next=/ops")
    # (the cookie's value itself stays valid until it expires or its key is revoked: a
    # logout ends this browser's login, the next test shows how to end every one)
    async with httpx.AsyncClient(base_url=ag.gw.url) as http:
        ops = await http.get("/ops", headers={"cookie": f"{COOKIE_NAME}={value}"})
        assert ops.status_code == 200


@pytest.mark.parametrize("ending", ["revoked", "expired"])
async def test_a_login_and_its_open_pages_end_when_its_key_is_revoked_or_expires(
    ag: AuthGateway, context: BrowserContext, page: Page, ending: str
) -> None:
    gw = ag.gw
    live = await start(gw, headers=LONG)
    lifetime = 4.0
    raw = await ag.create("short", "operator", expires_in=lifetime if ending == "expired" else None)
    expires = time.time() + lifetime
    await log_in(page, gw.url, raw)
    value = (await logged_in_cookie(context))["value"]
    await expect(page.locator(f'#ops-rows tr[data-id="{live}"]')).to_have_count(1)
    await expect(page.locator("#feed-status")).to_have_text("live", timeout=WAIT_MS)
    session_page = await context.new_page()
    await session_page.goto(f"{gw.url}/ops/sessions/{live}")
    await expect(session_page.locator("#feed-status")).to_have_text("live", timeout=WAIT_MS)

    if ending == "revoked":
        await gw.gateway.keys.revoke("short")
    else:
        await asyncio.sleep(max(0.0, expires - time.time()) + 0.1)

    # The open pages' feeds end at their next message, and each page goes to log in again;
    # the dead cookie is dropped.
    await expect(page).to_have_url(f"{gw.url}/login?next=/ops", timeout=WAIT_MS)
    await expect(session_page).to_have_url(
        f"{gw.url}/login?next=/ops/sessions/{live}", timeout=WAIT_MS
    )
    assert [c for c in await context.cookies() if c["name"] == COOKIE_NAME] == []
    await page.goto(f"{gw.url}/ops")
    await expect(page).to_have_url(f"{gw.url}/login?next=/ops")

    # The old cookie's value opens nothing any more: not a page, not a feed, not a Stop.
    own = {"cookie": f"{COOKIE_NAME}={value}", "origin": gw.url}
    async with httpx.AsyncClient(base_url=gw.url) as http:
        assert (await http.get("/ops", headers=own)).status_code == 303
        cancel = await http.post(f"/api/sessions/{live}/cancel", headers=own)
        assert cancel.status_code == 401 and cancel.json()["error"]["type"] == "unauthorized"
        assert (await http.get("/api/sessions", headers=own)).status_code == 401
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(
            gw.url.replace("http://", "ws://") + "/ops/feed",
            additional_headers=own,
            open_timeout=10,
        ):
            pass
    session = gw.gateway.sessions.get(live)
    assert session is not None and session.state == "streaming"

    # And the login page refuses the key itself.
    await page.fill("#key", raw)
    await page.click("#login-submit")
    await expect(page.locator(".login-error")).to_contain_text(ending)
