"""``sluice doctor`` against the gateway directly and through each proxy above, each way: it
finds what buffers or cuts a stream and passes the paths that stream; plus the diagnostic
endpoint's own refusals, and the real command's exit statuses."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from sluice.doctor import (
    EXIT_HEALTHY,
    EXIT_NOT_DIAGNOSED,
    EXIT_RUINS_STREAMING,
    DoctorError,
    Report,
    diagnose,
)
from tests.proxies import servers
from tests.proxies.conftest import port_of

#: a short diagnosis: 10 events 0.3 s apart, then 2 s of idle with heartbeats every 0.5 s
QUICK = {"events": 10, "interval": 0.3, "idle": 2.0}


def status(report: Report, topic: str) -> str:
    return next(f.status for f in report.findings if f.topic == topic)


async def doctor(url: str, **options: Any) -> Report:
    async with asyncio.timeout(60):
        return await diagnose(url, **{**QUICK, **options})


# -- the diagnostic endpoint ------------------------------------------------------------------


async def test_the_diagnostic_stream_follows_its_schedule(gateway_with: Any) -> None:
    async with gateway_with(heartbeat_interval=0.2) as gw:
        response = await gw.http.get(
            "/api/diagnostics/stream", params={"events": 3, "interval": 0.05, "idle": 0.5}
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-accel-buffering"] == "no"
    body = response.text
    kinds = [line.split(": ", 1)[1] for line in body.splitlines() if line.startswith("event: ")]
    assert kinds == ["hello", "tick", "tick", "tick", "done"]
    idle = body[body.rindex("event: tick") : body.index("event: done")]
    assert idle.count(": ping") >= 1


async def test_the_diagnostic_stream_omits_the_header_when_told(gateway_with: Any) -> None:
    async with gateway_with(accel_buffering_header=False) as gw:
        response = await gw.http.get("/api/diagnostics/stream", params={"events": 0})
    assert "x-accel-buffering" not in response.headers
    assert '"accel_buffering_header":false' in response.text


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"events": "many"}, "events must be an integer"),
        ({"interval": "nan"}, "interval must be between"),
        ({"idle": "100000"}, "idle must be between 0 and 900"),
        ({"pad": "-1"}, "pad must be between"),
        ({"colour": "red"}, "unknown parameter 'colour'"),
    ],
)
async def test_the_diagnostic_stream_refuses_bad_parameters(
    gateway_with: Any, query: dict[str, str], message: str
) -> None:
    async with gateway_with() as gw:
        response = await gw.http.get("/api/diagnostics/stream", params=query)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request" and message in error["message"]


# -- the doctor, path by path -----------------------------------------------------------------


async def test_doctor_passes_the_gateway_itself(gateway_with: Any) -> None:
    async with gateway_with(heartbeat_interval=0.5) as gw:
        report = await doctor(gw.url + "/v1/")
    assert report.exit_code == EXIT_HEALTHY, report.render()
    assert report.url == gw.url
    assert report.http_version == "HTTP/1.1"
    assert report.events_received == report.events_expected == 12
    assert report.heartbeats >= 2 and report.idle_survived
    assert [f.status for f in report.findings if f.topic != "http"] == ["ok"] * 5


async def test_doctor_finds_the_buffering_nginx(gateway_with: Any, workdir: Path) -> None:
    async with (
        gateway_with(heartbeat_interval=0.5, accel_buffering_header=False) as gw,
        servers.nginx_variant(workdir, port_of(gw.url), "gzip") as nginx,
    ):
        report = await doctor(nginx.url)
    assert report.exit_code == EXIT_RUINS_STREAMING, report.render()
    assert status(report, "buffering") == "fail"
    # everything, hello included, was held until the end: about the whole schedule
    assert report.max_hold_s > 2.5 and report.held_events >= 11
    assert report.content_encoding == "gzip" and status(report, "compression") == "warn"
    assert report.accel_buffering_header is False
    assert "X-Accel-Buffering" in report.render()


async def test_doctor_passes_the_fixed_nginx(gateway_with: Any, workdir: Path) -> None:
    async with (
        gateway_with(heartbeat_interval=0.5, accel_buffering_header=True) as gw,
        servers.nginx_variant(workdir, port_of(gw.url), "gzip") as nginx,
    ):
        report = await doctor(nginx.url)
    assert report.exit_code == EXIT_HEALTHY, report.render()
    assert status(report, "buffering") != "fail" and report.max_hold_s < 1.0
    # still compressed: said, not failed
    assert status(report, "compression") == "warn"


async def test_doctor_passes_the_nginx_deploy_snippet_over_tls_with_http2(
    gateway_with: Any, workdir: Path
) -> None:
    cert, key = servers.self_signed_certificate(workdir)
    async with gateway_with(heartbeat_interval=0.5, accel_buffering_header=False) as gw:
        port = servers.free_port(servers.HOST)
        site = servers.nginx_deploy_site(port, port_of(gw.url), cert, key)
        async with servers.nginx(workdir, site, port, "https") as nginx:
            report = await doctor(nginx.url, insecure=True)
            with pytest.raises(DoctorError, match="TLS"):
                await doctor(nginx.url)  # a self-signed certificate, not accepted by default
    assert report.exit_code == EXIT_HEALTHY, report.render()
    assert report.alpn == "h2" and status(report, "http") == "ok"
    assert report.server.startswith("nginx")
    assert status(report, "compression") == "ok"


async def test_doctor_finds_an_idle_timeout_that_heartbeats_would_cover(
    gateway_with: Any, workdir: Path
) -> None:
    reports = {}
    for heartbeat in (0.0, 0.5):
        async with gateway_with(heartbeat_interval=heartbeat) as gw:
            proxy_cm = servers.nginx_variant(
                workdir / str(heartbeat), port_of(gw.url), "read-timeout-2s"
            )
            async with proxy_cm as nginx:
                reports[heartbeat] = await doctor(nginx.url, idle=3.0)
    cut, kept = reports[0.0], reports[0.5]
    assert cut.exit_code == EXIT_RUINS_STREAMING, cut.render()
    assert not cut.idle_survived and status(cut, "idle") == "fail"
    assert status(cut, "heartbeats") == "warn"  # the gateway sends none: said
    assert kept.exit_code == EXIT_HEALTHY, kept.render()
    assert kept.idle_survived and kept.heartbeats >= 3


async def test_doctor_through_haproxy(gateway_with: Any, workdir: Path) -> None:
    async with gateway_with(heartbeat_interval=0.5) as gw:
        gateway_port = port_of(gw.url)
        async with servers.haproxy_variant(workdir / "d", gateway_port, "defaults") as proxy:
            defaults = await doctor(proxy.url, interval=0.15)
        cut_cm = servers.haproxy_variant(workdir / "t", gateway_port, "timeout-server-2s")
        async with cut_cm as proxy:
            # heartbeats every 0.5 s keep a 3 s silence under the 2 s timeout
            with_heartbeats = await doctor(proxy.url, idle=3.0)
    async with gateway_with(heartbeat_interval=0) as gw:
        cut_cm = servers.haproxy_variant(workdir / "t0", port_of(gw.url), "timeout-server-2s")
        async with cut_cm as proxy:
            without = await doctor(proxy.url, idle=3.0)
    # streams, but pairs events (MSG_MORE): a warning, not a failure
    assert defaults.exit_code == EXIT_HEALTHY, defaults.render()
    assert status(defaults, "buffering") == "warn" and defaults.max_hold_s >= 0.1
    assert "http-no-delay" in defaults.render()
    assert with_heartbeats.exit_code == EXIT_HEALTHY, with_heartbeats.render()
    assert without.exit_code == EXIT_RUINS_STREAMING and not without.idle_survived


async def test_doctor_through_caddy(gateway_with: Any, workdir: Path) -> None:
    async with gateway_with(heartbeat_interval=0.5) as gw:
        gateway_port = port_of(gw.url)
        async with servers.caddy_variant(workdir / "d", gateway_port, "defaults") as caddy:
            defaults = await doctor(caddy.url)
        async with servers.caddy_variant(workdir / "e", gateway_port, "encode-gzip") as caddy:
            encoded = await doctor(caddy.url)
    assert defaults.exit_code == EXIT_HEALTHY, defaults.render()
    assert defaults.server == "Caddy"
    assert encoded.exit_code == EXIT_RUINS_STREAMING, encoded.render()
    assert status(encoded, "buffering") == "fail" and encoded.content_encoding == "gzip"


async def test_doctor_cannot_diagnose_what_is_not_a_gateway(gateway_with: Any) -> None:
    with pytest.raises(DoctorError, match="not an http"):
        await doctor("ftp://example.invalid")
    async with gateway_with() as gw:
        with pytest.raises(DoctorError, match="HTTP 404"):
            await doctor(gw.url + "/sim")
        with pytest.raises(DoctorError, match="HTTP 400"):
            await doctor(gw.url, interval=99)
    port = servers.free_port(servers.HOST)
    with pytest.raises(DoctorError, match="cannot connect"):
        await doctor(f"http://127.0.0.1:{port}")


# -- the command ------------------------------------------------------------------------------


async def run_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sluice.cli",
        "doctor",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_doctor_command_exits_by_its_verdict(gateway_with: Any, workdir: Path) -> None:
    args = ["--events", "10", "--interval", "0.3", "--idle", "2"]
    async with gateway_with(heartbeat_interval=0.5, accel_buffering_header=False) as gw:
        code, out, _ = await run_cli(gw.url, *args)
        assert code == EXIT_HEALTHY, out
        assert "verdict: this path streams (exit 0)" in out
        async with servers.nginx_variant(workdir, port_of(gw.url), "gzip") as nginx:
            code, out, _ = await run_cli(nginx.url, *args, "--json")
    assert code == EXIT_RUINS_STREAMING, out
    assert '"exit_code": 1' in out and '"status": "fail"' in out
    code, _, err = await run_cli(f"http://127.0.0.1:{servers.free_port(servers.HOST)}")
    assert code == EXIT_NOT_DIAGNOSED and "cannot connect" in err


@pytest.mark.parametrize(
    ("silence", "verdict"),
    [(0.6, "ok"), (1.8, "warn")],
)
def test_heartbeats_that_arrive_late_are_said_to(silence: float, verdict: str) -> None:
    # A path that holds small writes and lets them through later: heartbeats arrive, the
    # connection survives, but the client saw a silence an idle timeout could cut.
    from sluice.doctor import _judge

    report = Report(url="http://gateway", idle_s=2.0, events_expected=12)
    report.events_received = 12
    report.heartbeat_interval = 0.5
    report.heartbeats = 3
    report.idle_survived = True
    report.longest_silence_s = silence
    _judge(report, 1.0)
    assert status(report, "heartbeats") == verdict
    assert status(report, "idle") == "ok"  # it did survive; the heartbeats line says why not ok
