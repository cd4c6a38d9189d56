"""Fuzzing the live gateway over HTTP with requests schemathesis generates from its OpenAPI
description (``GET /openapi.json``): valid and invalid bodies, parameters and headers.

The gateway runs on a loopback port, in a thread of its own, with the embedded simulator at
fast pacing as its only provider, so valid requests start real (short) sessions. The checks:
no 5xx; every 4xx carries the endpoint's own error body (Anthropic's on ``/v1/messages``,
OpenAI's on ``/v1/chat/completions``, on ``/v1/models`` Anthropic's when the request carries
``anthropic-version`` and OpenAI's when not, the native one on ``/api/…``); status codes and
content types are the ones the description lists.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sluice.config import AgentConfig, Settings
from sluice.gateway.app import create_app
from sluice.gateway.openapi import openapi_document
from sluice.gateway.server import RunningServer
from tests.conftest import test_settings as gateway_settings
from tests.fuzz.budget import examples, fuzz, note, tally

#: Simulator scenarios that answer normally (the others fail on purpose, as a provider would,
#: and the gateway rightly answers those with 502/503/504).
HEALTHY = ["support", "bursty", "tools", "parallel-tools"]


class ThreadedGateway:
    """A real gateway (uvicorn on a loopback port) in its own thread and event loop, for
    tests that are synchronous (schemathesis drives ``requests``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gateway", daemon=True)
        self.server: RunningServer | None = None

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    async def _start(self) -> str:
        self.server = RunningServer(create_app(self.settings))
        await self.server.start()
        return self.server.url

    def __enter__(self) -> str:
        self.thread.start()
        url: str = self._run(self._start())
        return url

    def __exit__(self, *exc: object) -> None:
        try:
            if self.server is not None:
                self._run(self.server.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
            self.loop.close()


def fuzz_settings(directory: Path) -> Settings:
    """The test gateway with only providers that can answer: the simulator in each wire
    format, pacing fast and answers short. (A provider without its API key is refused with
    500 by design.)"""
    settings = gateway_settings(directory, token_rate=20000.0, ttft=0.001, output_tokens=12)
    settings.providers = {
        name: provider for name, provider in settings.providers.items() if provider.kind == "sim"
    }
    settings.streams.stall_timeout = 10.0
    # an agent with built-in tools, so that the runs' endpoints are reached past the lookup
    settings.agents = {
        "support": AgentConfig(name="support", model="sim/agent", tools=["calculator", "clock"])
    }
    return settings


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with ThreadedGateway(fuzz_settings(tmp_path_factory.mktemp("api-fuzz"))) as url:
        yield url


# The description the gateway serves (``test_the_served_description_is_the_one_fuzzed`` checks
# that), loaded at collection: schemathesis makes one test per operation from it.
# Two operations are left out: the diagnostic stream's valid schedules run for up to hours by
# design (its bounds are tested in tests/proxies/test_doctor.py), and the WebSocket route
# answers only a WebSocket handshake (tests/gateway/test_websocket.py).
UNFUZZED = r"^/api/(diagnostics/stream|sessions/\{session_id\}/ws)$"
schema = schemathesis.openapi.from_dict(openapi_document()).exclude(path_regex=UNFUZZED)
schema.config.generation.update(max_examples=examples(25))


ERROR_FORMATS = {
    "/v1/messages": "anthropic",
    "/v1/chat/completions": "openai",
    "/v1/responses": "openai",
    "/v1/responses/{response_id}": "openai",
    "/v1/responses/{response_id}/cancel": "openai",
}


def error_format(case: schemathesis.Case) -> str:
    """The error format ``case``'s endpoint answers in."""
    path = case.operation.path
    if path.startswith("/v1/models"):
        headers = {name.lower() for name in case.headers or {}}
        return "anthropic" if "anthropic-version" in headers else "openai"
    return ERROR_FORMATS.get(path, "native")


def assert_error_format(fmt: str, status: int, body: Any) -> None:
    """A 4xx in the endpoint's own error format (see ``sluice.gateway.openapi``)."""
    assert isinstance(body, dict), body
    error = body.get("error")
    assert isinstance(error, dict), body
    assert isinstance(error.get("message"), str) and error["message"], body
    assert isinstance(error.get("type"), str) and error["type"], body
    assert "Traceback" not in error["message"]
    match fmt:
        case "anthropic":
            assert set(body) == {"type", "error"} and body["type"] == "error", body
            assert set(error) == {"type", "message"}, body
        case "openai":
            assert set(body) == {"error"} and set(error) == {"message", "type", "param", "code"}
            assert error["code"] is None or isinstance(error["code"], str), body
        case _:
            assert set(body) == {"error"} and set(error) == {"type", "message"}, body


def steer_to_the_simulator(case: schemathesis.Case) -> None:
    """A third of the bodies with a string model get a healthy simulator model, so valid
    requests reach real sessions; the others keep the generated model (a 404 path)."""
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        model = body["model"]
        if len(model) % 3 == 0:
            body["model"] = "sim/" + HEALTHY[len(model) // 3 % len(HEALTHY)]


@schema.parametrize()
@fuzz(25)
def test_the_api_answers_every_generated_request_without_5xx_in_its_error_format(
    case: schemathesis.Case, gateway_url: str
) -> None:
    tally(f"api: {case.operation.label}")
    steer_to_the_simulator(case)
    response = case.call(base_url=gateway_url, timeout=30)
    note(f"api: answered {response.status_code // 100}xx")
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
    if 400 <= response.status_code < 500:
        what = f"{case.as_curl_command()} -> {response.status_code} {response.text[:200]!r}"
        assert response.headers.get("content-type") == ["application/json"], what
        assert_error_format(error_format(case), response.status_code, response.json())


def test_the_served_description_is_the_one_fuzzed(gateway_url: str) -> None:
    response = httpx.get(f"{gateway_url}/openapi.json", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == openapi_document()
    assert response.json()["openapi"].startswith("3.1")


def test_the_description_covers_every_api_route(gateway_url: str) -> None:
    paths = httpx.get(f"{gateway_url}/openapi.json", timeout=30).json()["paths"]
    for path in ("/api/models", "/api/diagnostics/stream", "/api/sessions/{session_id}/ws"):
        assert path in paths
    assert "101" in paths["/api/sessions/{session_id}/ws"]["get"]["responses"]
    fuzzed = {operation.ok().path for operation in schema.get_all_operations()}
    assert fuzzed == set(paths) - {"/api/diagnostics/stream", "/api/sessions/{session_id}/ws"}
