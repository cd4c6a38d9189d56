"""Shared fixtures: a real gateway (with its embedded simulator) on a loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluice.config import ProviderConfig, Settings, load_settings
from sluice.gateway.app import Gateway, create_app
from sluice.gateway.server import RunningServer

#: the run's own Postgres database (``pg_url``, ``fresh_pg_url``)
pytest_plugins = ["tests.pgdb"]

#: Fast, steady simulator pacing for tests; scenarios still decide what is sent.
FAST_SIM = {"token_rate": 2000.0, "ttft": 0.01, "jitter": 0.0, "output_tokens": 60}


def test_settings(tmp_path: Path, **sim: Any) -> Settings:
    settings = load_settings(None, store_url=f"sqlite:///{tmp_path}/sluice.db")
    settings.sim = {**FAST_SIM, **sim}
    extra = {
        # the simulator reached in one chosen wire format, to force translation or passthrough
        "simchat": ProviderConfig("simchat", "sim", wire="chat"),
        "simmsg": ProviderConfig("simmsg", "sim", wire="messages"),
        "simresp": ProviderConfig("simresp", "sim", wire="responses"),
        "simgem": ProviderConfig("simgem", "sim", wire="gemini"),
        "keyless": ProviderConfig(
            "keyless", "openai", base_url="http://127.0.0.1:9/v1", api_key_env="SLUICE_NO_SUCH_KEY"
        ),
    }
    settings.providers.update(extra)
    return settings


@dataclass
class GatewayUnderTest:
    url: str
    gateway: Gateway
    http: httpx.AsyncClient

    async def record(self, session_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/api/sessions/{session_id}")
        response.raise_for_status()
        return dict(response.json())

    async def final_record(self, session_id: str) -> dict[str, Any]:
        """The record once the session is final (a bounded wait: a hang fails the test)."""
        session = self.gateway.sessions.get(session_id)
        if session is not None:
            async with asyncio.timeout(30):
                await session.finished.wait()
        return await self.record(session_id)

    async def sim_requests(self, session_id: str) -> list[dict[str, Any]]:
        response = await self.http.get("/sim/requests", params={"session": session_id})
        response.raise_for_status()
        body = response.json()
        return list(body["requests"] if isinstance(body, dict) else body)

    async def sim_request(self, session_id: str) -> dict[str, Any]:
        requests = await self.sim_requests(session_id)
        assert len(requests) == 1, requests
        return requests[0]


@asynccontextmanager
async def running_gateway(
    settings: Settings, wrap: Callable[[Any], Any] | None = None, **server: Any
) -> AsyncIterator[GatewayUnderTest]:
    """The gateway on a loopback port; ``wrap`` puts a middleware around its app."""
    app = create_app(settings)
    async with (
        RunningServer(app if wrap is None else wrap(app), **server) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
    ):
        yield GatewayUnderTest(server.url, app.state.gateway, http)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayUnderTest]:
    async with running_gateway(test_settings(tmp_path)) as gw:
        yield gw


@pytest.fixture
def gateway_with(tmp_path: Path) -> Callable[..., AbstractAsyncContextManager[GatewayUnderTest]]:
    """A gateway with some ``[streams]`` settings changed: ``async with gateway_with(...)``."""

    def make(**streams: Any) -> AbstractAsyncContextManager[GatewayUnderTest]:
        settings = test_settings(tmp_path)
        for key, value in streams.items():
            setattr(settings.streams, key, value)
        return running_gateway(settings)

    return make


def sent_tool_calls(sim_record: dict[str, Any]) -> list[tuple[str, Any]]:
    """The simulator's tool calls as (name, parsed arguments)."""
    import orjson

    calls = []
    for call in sim_record["tool_calls"]:
        arguments = call["arguments"]
        calls.append(
            (call["name"], orjson.loads(arguments) if isinstance(arguments, str) else arguments)
        )
    return calls


async def read_request_body(receive: Any) -> bytes:
    """The whole body of an ASGI HTTP request, for the small servers that tests run."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


#: simulator headers for a turn that streams for a long while (5,000 tokens at 200 a second)
LONG = {"x-sim-token-rate": "200", "x-sim-output-tokens": "5000"}


async def start(
    gw: GatewayUnderTest,
    model: str = "sim/support",
    headers: dict[str, str] | None = None,
    **body: Any,
) -> str:
    response = await gw.http.post(
        "/api/sessions", json={"model": model, "prompt": "refunds?", **body}, headers=headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def tokens_when_running(gw: GatewayUnderTest, session_id: str, at_least: int = 5) -> int:
    for _ in range(500):
        requests = await gw.sim_requests(session_id)
        if requests and requests[-1]["tokens_produced"] >= at_least:
            return int(requests[-1]["tokens_produced"])
        await asyncio.sleep(0.02)
    raise AssertionError("the simulator never started generating")
