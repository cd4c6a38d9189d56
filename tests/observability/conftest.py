"""A gateway with telemetry on, exporting to a real OTLP receiver on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from sluice.config import Settings
from sluice.sse import SSEDecoder
from tests.conftest import GatewayUnderTest, running_gateway, test_settings
from tests.observability.otlp import Received, otlp_grpc, otlp_http

#: the client's own trace: its W3C ``traceparent`` names the span the session's is a child of
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
CORRELATION = "req-7f3a-test"
CLIENT_HEADERS = {"traceparent": TRACEPARENT, "x-request-id": CORRELATION}

#: OTEL_* variables a developer's shell may have set, which would change what is exported
_OTEL_ENV = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
)

Traced = Callable[..., AbstractAsyncContextManager[tuple[GatewayUnderTest, Received]]]


@pytest.fixture
def traced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Traced:
    """``async with traced() as (gw, received)``: a gateway exporting to a receiver (OTLP/HTTP,
    or gRPC with ``protocol="grpc"``; ``env``: more ``OTEL_*`` variables). ``received`` holds
    everything once the block is left: the gateway's shutdown exports what it still holds."""

    @asynccontextmanager
    async def make(
        protocol: str = "http/protobuf",
        settings: Settings | None = None,
        env: dict[str, str] | None = None,
    ) -> AsyncIterator[tuple[GatewayUnderTest, Received]]:
        for name in _OTEL_ENV:
            monkeypatch.delenv(name, raising=False)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        receiver = otlp_grpc() if protocol == "grpc" else otlp_http()
        async with receiver as (url, received):
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
            gateway_settings = settings or test_settings(tmp_path)
            gateway_settings.telemetry.enabled = True
            async with running_gateway(gateway_settings) as gw:
                yield gw, received

    return make


async def read_stream(
    gw: GatewayUnderTest, path: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[str, list[tuple[str, str]]]:
    """POST a streamed request, read its SSE events to the end: the session id, the events."""
    events: list[tuple[str, str]] = []
    decoder = SSEDecoder()
    async with gw.http.stream("POST", path, json=body, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        async for chunk in response.aiter_bytes():
            events += [(event.event, event.data) for event in decoder.decode(chunk)]
    return response.headers["x-sluice-session-id"], events
