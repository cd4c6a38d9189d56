"""A gateway on Postgres (``[store] url = "postgresql://…"``): its sessions are recorded and
listed from the database, outlive the process, and keys made by ``sluice keys`` against the
same database are accepted by a running gateway."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import orjson

from sluice.bench.proc import free_port
from sluice.sse import SSEDecoder
from tests.conftest import running_gateway
from tests.conftest import test_settings as settings_in

SLUICE = [sys.executable, "-m", "sluice.cli"]
MESSAGES = [{"role": "user", "content": "Where is my order?"}]


def _text_of_chat_stream(body: bytes) -> str:
    text = ""
    for event in SSEDecoder().decode(body):
        if event.data == "[DONE]":
            continue
        for choice in orjson.loads(event.data).get("choices", []):
            text += choice.get("delta", {}).get("content") or ""
    return text


async def test_sessions_are_recorded_in_postgres_and_listed_by_the_next_gateway(
    pg_url: str, tmp_path: Path
) -> None:
    settings = settings_in(tmp_path)
    settings.store_url = pg_url
    async with running_gateway(settings) as gw:
        chat = await gw.http.post(
            "/v1/chat/completions",
            json={"model": "sim/support", "messages": MESSAGES, "stream": True},
        )
        assert chat.status_code == 200, chat.text
        chat_id = chat.headers["x-sluice-session-id"]
        chat_text = _text_of_chat_stream(chat.content)
        native = await gw.http.post(
            "/api/sessions", json={"model": "sim/support", "prompt": "refunds?"}
        )
        assert native.status_code == 201, native.text
        native_id = native.json()["id"]
        native_record = await gw.final_record(native_id)
        assert (await gw.final_record(chat_id))["state"] == "complete"
        assert chat_text and chat_text == (await gw.sim_request(chat_id))["text"]
    # what the closed gateway wrote is in the database
    connection = await asyncpg.connect(pg_url)
    try:
        rows = await connection.fetch("SELECT id, state, provider FROM sessions ORDER BY id")
    finally:
        await connection.close()
    assert sorted((r["id"], r["state"], r["provider"]) for r in rows) == sorted(
        [(chat_id, "complete", "sim"), (native_id, "complete", "sim")]
    )
    # a new gateway on the same database lists them, and replays a log
    async with running_gateway(settings) as gw:
        listed = (await gw.http.get("/api/sessions")).json()["sessions"]
        assert [s["id"] for s in listed] == [native_id, chat_id]  # newest first
        assert listed[0]["text"] == native_record["text"]
        assert (await gw.http.get("/api/sessions", params={"state": "errored"})).json() == {
            "sessions": []
        }
        replay = await gw.http.get(f"/api/sessions/{chat_id}/events")
        events = list(SSEDecoder().decode(replay.content))
        assert [e.event for e in events][-2:] == ["finish", "end"]
        replayed = "".join(orjson.loads(e.data)["text"] for e in events if e.event == "text")
        assert replayed == chat_text
        assert orjson.loads(events[-1].data)["state"] == "complete"


def _sluice(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SLUICE, *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _status_within(url: str, key: str, wanted: int) -> int:
    """The status of a listing with ``key``, once it is ``wanted`` (the gateway polls the
    key store's version once a second) or after a bounded wait."""
    status = 0
    for _ in range(150):
        status = httpx.get(f"{url}/api/sessions", headers={"authorization": f"Bearer {key}"})
        status = status.status_code
        if status == wanted:
            break
        time.sleep(0.1)
    return status


def test_a_key_made_by_the_cli_against_postgres_is_accepted_by_a_running_gateway(
    pg_url: str, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "sluice.toml"
    config.write_text(
        f"[server]\nport = {port}\n[auth]\nrequired = true\n[sim]\nembedded = true\n"
        f'[store]\nurl = "{pg_url}"\n'
    )
    server = subprocess.Popen(
        [*SLUICE, "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{url}/healthz")
                break
            except httpx.TransportError:
                time.sleep(0.05)
        chat = {"model": "sim/support", "messages": MESSAGES, "stream": True}
        assert httpx.post(f"{url}/v1/chat/completions", json=chat).status_code == 401
        made = _sluice("keys", "create", "--name", "late", "--tenant", "acme", config=config)
        assert made.returncode == 0, made.stderr
        key = made.stdout.splitlines()[-1]
        assert _status_within(url, key, 200) == 200
        headers = {"authorization": f"Bearer {key}", "x-sim-token-rate": "2000"}
        answered = httpx.post(f"{url}/v1/chat/completions", json=chat, headers=headers, timeout=30)
        assert answered.status_code == 200, answered.text
        session_id = answered.headers["x-sluice-session-id"]
        assert _text_of_chat_stream(answered.content)
        listed: list[str] = []
        for _ in range(100):  # the record is final once its write is stored
            body = httpx.get(f"{url}/api/sessions", headers=headers).json()
            listed = [s["id"] for s in body["sessions"] if s["state"] == "complete"]
            if listed:
                break
            time.sleep(0.1)
        assert listed == [session_id]
        assert "late" in _sluice("keys", "list", config=config).stdout
        assert _sluice("keys", "revoke", "late", config=config).returncode == 0
        assert _status_within(url, key, 401) == 401
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert key not in stderr and "Traceback" not in stderr
