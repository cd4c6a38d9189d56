"""Telemetry is off by default and free while off: nothing of OpenTelemetry is imported, no
session is told to an observer more, no span reaches a collector, no trace context is sent
upstream. On, the standard variables choose what is exported and how."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sluice.config import ConfigError, TelemetrySettings, load_settings
from sluice.otel import client_trace, enabled, open_telemetry
from tests.conftest import running_gateway
from tests.conftest import test_settings as gateway_settings
from tests.observability.conftest import CLIENT_HEADERS, Traced, read_stream
from tests.observability.otlp import otlp_http

SRC = str(Path(__file__).resolve().parents[2] / "src")
NATIVE = {"model": "sim/support", "prompt": "How do refunds work?"}
STREAM = {"accept": "text/event-stream"}


async def test_off_by_default_no_span_reaches_a_collector_and_nothing_goes_upstream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with otlp_http() as (url, received):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)  # ready, were it on
        settings = gateway_settings(tmp_path)
        assert settings.telemetry.enabled is False
        async with running_gateway(settings) as gw:
            assert gw.gateway.telemetry is None and gw.gateway.sessions.observers == []
            session_id, _ = await read_stream(gw, "/api/sessions", NATIVE, STREAM | CLIENT_HEADERS)
            upstream = await gw.sim_request(session_id)
            assert (await gw.final_record(session_id))["state"] == "complete"
    assert upstream["traceparent"] is None  # the client's is not forwarded either
    assert received.requests == [] and received.spans == []


def test_a_gateway_with_telemetry_off_imports_nothing_of_the_sdk(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from sluice.config import load_settings\n"
        "from sluice.gateway.app import create_app\n"
        f"create_app(load_settings(None, store_url='sqlite:///{tmp_path}/s.db'))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', "
        "'opentelemetry.exporter', 'sluice.otel.'))))\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_standard_switch_turns_it_off_even_when_enabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    on = TelemetrySettings(enabled=True)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not enabled(on) and open_telemetry(on, "node-1") is None
    monkeypatch.setenv("OTEL_SDK_DISABLED", "false")
    assert enabled(on) and not enabled(TelemetrySettings())


def test_the_telemetry_table_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "sluice.toml"
    path.write_text("[telemetry]\nenabled = true\n")
    assert load_settings(path).telemetry.enabled is True
    path.write_text('[telemetry]\nenabled = "yes"\n')
    with pytest.raises(ConfigError, match=r"telemetry.enabled must be true or false"):
        load_settings(path)
    path.write_text("[telemetry]\nexporter = true\n")
    with pytest.raises(ConfigError, match=r"telemetry.exporter is not a setting"):
        load_settings(path)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER must be one of"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "must be one of http/protobuf, grpc"),
    ],
)
def test_an_exporter_the_gateway_cannot_use_stops_it_at_start(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=message):
        open_telemetry(TelemetrySettings(enabled=True), "node-1")


async def test_traces_off_by_their_exporter_leave_the_metrics_and_the_upstream_request_bare(
    traced: Traced,
) -> None:
    async with traced(env={"OTEL_TRACES_EXPORTER": "none"}) as (gw, received):
        session_id, _ = await read_stream(gw, "/api/sessions", NATIVE, STREAM | CLIENT_HEADERS)
        upstream = await gw.sim_request(session_id)
    assert received.spans == [] and upstream["traceparent"] is None
    [point] = received.metrics["gen_ai.server.request.duration"]
    assert point.count == 1


def test_the_clients_trace_context_is_read_from_its_headers() -> None:
    context = client_trace(
        {"traceparent": "00-a-b-01", "tracestate": "k=v", "x-request-id": "r-1", "other": "x"}
    )
    assert context == {"traceparent": "00-a-b-01", "tracestate": "k=v"}
    assert client_trace({"tracestate": "k=v", "x-request-id": "r-1"}) is None
