"""The pages over HTTP: headers, the model list, the page stream's contract, the runbook's 404."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette

from sluice.config import ProviderConfig
from sluice.gateway.markdown import render_blocks
from sluice.gateway.pages import page_routes
from sluice.sse import SSEDecoder
from tests.conftest import GatewayUnderTest, running_gateway
from tests.conftest import test_settings as settings_for

SECRET = "sk-" + "fake-page-key-not-real-" + "0" * 12


async def page_stream(
    gw: GatewayUnderTest, session_id: str, headers: dict[str, str] | None = None
) -> list[tuple[str, str | None, Any]]:
    """The page stream's events as (event, id, data), read to the end."""
    decoder = SSEDecoder()
    events = []
    async with gw.http.stream(
        "GET", f"/chat/sessions/{session_id}/stream", headers=headers or {}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for chunk in response.aiter_bytes():
            for event in decoder.decode(chunk):
                events.append((event.event, event.id, orjson.loads(event.data)))
    return events


async def start(gw: GatewayUnderTest, model: str, prompt: str) -> str:
    response = await gw.http.post(
        "/api/sessions", json={"model": model, "prompt": prompt, "disconnect_policy": "detach"}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_pages_carry_a_strict_content_security_policy(gateway: GatewayUnderTest) -> None:
    for path in ("/", "/runbook"):
        response = await gateway.http.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "object-src 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert 'href="/ops"' in response.text and 'href="/runbook"' in response.text


async def test_the_model_list_offers_scenarios_and_never_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICE_PAGES_TEST_KEY", SECRET)
    settings = settings_for(tmp_path)
    settings.providers["paid"] = ProviderConfig(
        "paid",
        "openai",
        base_url="https://user:pw@internal.example/v1",
        api_key_env="SLUICE_PAGES_TEST_KEY",
        headers={"x-org": SECRET},
        models=["gpt-test"],
    )
    async with running_gateway(settings) as gw:
        listing = await gw.http.get("/api/models")
        page = await gw.http.get("/")
    assert listing.status_code == 200
    providers = {p["name"]: p for p in listing.json()["providers"]}
    assert "sim/support" in providers["sim"]["models"]
    assert "sim/echo" in providers["sim"]["models"]
    assert providers["paid"] == {
        "name": "paid",
        "kind": "openai",
        "available": True,
        "reason": None,
        "any_model": False,
        "models": ["paid/gpt-test"],
    }
    assert providers["keyless"]["available"] is False
    for body in (listing.text, page.text):
        assert SECRET not in body
        assert "SLUICE_PAGES_TEST_KEY" not in body
        assert "internal.example" not in body
    assert '<option value="sim/echo">' in page.text


async def test_the_page_stream_coalesces_and_ends_with_the_final_rendering(
    gateway: GatewayUnderTest,
) -> None:
    session_id = await start(gateway, "sim/support", "Hello")
    events = await page_stream(gateway, session_id)
    record = await gateway.final_record(session_id)
    updates = [(seq, data) for kind, seq, data in events if kind == "update"]
    assert [kind for kind, _, _ in events][-1] == "end"
    seqs = [int(seq) for seq, _ in updates if seq is not None]
    assert seqs == sorted(set(seqs))  # rising ids, none twice
    assert len(updates) < record["events"]  # coalesced: fewer updates than events
    blocks: list[str] = []
    for _, data in updates:
        blocks = blocks[: data["base"]] + data["blocks"]
    assert blocks == render_blocks(record["text"])
    assert updates[-1][1]["state"] == "complete"
    end = events[-1][2]
    assert end["state"] == "complete"
    assert end["telemetry"]["output_tokens"] == record["usage"]["output_tokens"]


async def test_resuming_sends_only_what_the_page_lacks(gateway: GatewayUnderTest) -> None:
    session_id = await start(gateway, "sim/support", "Hello")
    record = await gateway.final_record(session_id)
    full = await page_stream(gateway, session_id)
    last_id = full[0][1]
    assert last_id is not None and int(last_id) == record["events"]
    again = await page_stream(gateway, session_id, {"last-event-id": last_id})
    update = again[0][2]
    assert update["blocks"] == [] and update["reasoning"] == ""
    assert update["base"] == len(render_blocks(record["text"]))
    # from the middle: the blocks the page has are kept, the rest follows
    middle = await page_stream(gateway, session_id, {"last-event-id": str(record["events"] // 2)})
    assert 0 < middle[0][2]["base"] < len(render_blocks(record["text"]))


async def test_a_finished_session_is_replayed_from_the_store_after_a_restart(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    async with running_gateway(settings) as gw:
        session_id = await start(gw, "sim/support", "Hello")
        record = await gw.final_record(session_id)
    async with running_gateway(settings) as gw:
        assert gw.gateway.sessions.get(session_id) is None
        events = await page_stream(gw, session_id)
    assert [kind for kind, _, _ in events] == ["update", "end"]
    assert events[0][2]["blocks"] == render_blocks(record["text"])
    assert events[1][2]["state"] == "complete"


async def test_page_stream_errors_are_native_errors(gateway: GatewayUnderTest) -> None:
    missing = await gateway.http.get("/chat/sessions/op-nothing/stream")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "unknown_session"
    session_id = await start(gateway, "sim/support", "Hello")
    bad = await gateway.http.get(f"/chat/sessions/{session_id}/stream?after=-1")
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request"
    await gateway.final_record(session_id)


async def test_a_missing_runbook_is_a_clear_404_page(
    gateway: GatewayUnderTest, tmp_path: Path
) -> None:
    app = Starlette(routes=page_routes(gateway.gateway, runbook=tmp_path / "none" / "runbook.md"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pages") as client:
        response = await client.get("/runbook")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "No runbook here" in response.text
    assert "docs/runbook.md" in response.text


async def test_the_runbook_is_rendered_from_its_file(
    gateway: GatewayUnderTest, tmp_path: Path
) -> None:
    path = tmp_path / "runbook.md"
    path.write_text(
        "# Runbook\n\n## Restart\n\n```sh\nsluice serve\n```\n\n<script>alert(1)</script>\n"
    )
    app = Starlette(routes=page_routes(gateway.gateway, runbook=path))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pages") as client:
        response = await client.get("/runbook")
        path.write_text("# Runbook\n\n## Changed\n")
        changed = await client.get("/runbook")
    assert response.status_code == 200
    assert '<h2 id="restart">' in response.text
    assert '<a href="#restart">Restart</a>' in response.text  # the table of contents
    assert '<pre class="code"><code data-lang="sh">' in response.text
    assert "<script>alert" not in response.text
    assert '<h2 id="changed">' in changed.text  # edits show without a restart
