"""What the benchmark measures, and the processes behind each target.

A ``Target`` is a base URL that serves streams from the mock, plus the processes whose CPU
time and memory are the target's cost:

- ``direct``: the mock itself (the floor of the floor: kernel loopback and the load generator);
- ``gateway``: ``sluice serve`` with one provider, ``mock``, pointed at the mock;
- ``nginx``: nginx passing the bytes straight on (the floor for a proxy written in C);
- ``gateway-wN`` and ``nginx-wN``: the same with N worker processes (``sluice serve
  --workers N``, nginx's ``worker_processes N``), on every CPU;
- ``gateway-redis``: one gateway process on the distributed backend (``[bus] url``: live
  logs, leases and admission on Redis), on the gateway's one CPU;
- ``gateway-otel``: one gateway process with OpenTelemetry on (``[telemetry] enabled``), its
  spans and metrics exported over OTLP/HTTP to the mock, which takes and drops them (the
  export's cost is the gateway's; the collector's is not);
- any other OpenAI-compatible gateway, by URL (its processes are unknown: no CPU or memory).

Each managed process is started pinned to its CPUs, logs into the run's work directory, and
is stopped by its owner (``stop()`` twice is harmless).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sluice.bench import proc

HOST = "127.0.0.1"
BENCH_KEY_ENV = "SLUICE_BENCH_KEY"
#: the Redis that ``gateway-wN`` names as its ``[bus] url`` (several workers need one)
BENCH_REDIS_ENV = "SLUICE_BENCH_REDIS_URL"
BENCH_REDIS_URL = "redis://127.0.0.1:6379"
_WORKERS = re.compile(r"(gateway|nginx)(?:-w([1-9][0-9]*))?")


def target_kind(name: str) -> tuple[str, int] | None:
    """(``gateway`` or ``nginx``, worker processes) for a built-in proxy target's name
    (``gateway``, ``nginx-w2``, ``gateway-redis``, ``gateway-otel``), ``python-pipe`` and 1 for
    the Python floor (``sluice.bench.pipe``), else None."""
    if name in ("gateway-redis", "gateway-otel"):
        return "gateway", 1
    if name == PipeProcess.name:
        return name, 1
    found = _WORKERS.fullmatch(name)
    if found is None:
        return None
    return found.group(1), int(found.group(2) or 1)


_ENSURE_NGINX = Path(__file__).resolve().parents[3] / "scripts" / "ensure-nginx.sh"


class TargetError(RuntimeError):
    """A target could not be started or reached."""


@dataclass
class Target:
    name: str
    #: the base URL an SDK would take, ending in ``/v1``
    base_url: str
    kind: str
    #: the processes doing this target's work, for CPU time and memory; empty when unknown
    pids: Callable[[], list[int]] = field(default=lambda: [])

    @property
    def measurable(self) -> bool:
        return bool(self.pids())


class ManagedProcess:
    """A child process with a log file, started pinned, stopped by its owner."""

    name = "process"

    def __init__(self, workdir: Path, cpus: set[int]) -> None:
        self.workdir = workdir
        self.cpus = cpus
        self.port = proc.free_port(HOST)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{self.name}.log"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def pids(self) -> list[int]:
        if self.process is None or self.process.poll() is not None:
            return []
        return [self.process.pid]

    def spawn(self) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as log:
            self.process = proc.spawn(
                self.argv(), self.cpus, env=self.env(), stdout=log, stderr=subprocess.STDOUT
            )
        return self.process

    async def start(self, ready_path: str = "/healthz", within: float = 30.0) -> None:
        process = self.spawn()
        try:
            await wait_ready(self.port, ready_path, within, process)
        except TargetError as exc:
            self.stop()
            where = f"see {self.log_path}:\n{self.log_tail()}"
            raise TargetError(f"{self.name}: {exc}; {where}") from exc

    def stop(self) -> None:
        if self.process is not None:
            proc.stop(self.process)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class MockProcess(ManagedProcess):
    name = "mock"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "sluice.bench.mock", "--host", HOST, "--port", str(self.port)]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


class GatewayProcess(ManagedProcess):
    """``sluice serve`` on a generated configuration: one provider ``mock`` of the kind that
    speaks the benchmark's format, SQLite in the work directory, no embedded simulator."""

    name = "gateway"

    def __init__(
        self,
        workdir: Path,
        cpus: set[int],
        mock_url: str,
        fmt: str,
        workers: int = 1,
        store_url: str | None = None,
        redis: bool = False,
        otel: bool = False,
    ) -> None:
        if workers > 1:
            self.name = f"gateway-w{workers}"
        elif redis:
            self.name = "gateway-redis"
        elif otel:
            self.name = "gateway-otel"
        super().__init__(workdir, cpus)
        self.workers = workers
        self.mock_url = mock_url
        self.otel = otel
        self.config_path = workdir / f"{self.name}.toml"
        shared = workers > 1 or redis
        bus = os.environ.get(BENCH_REDIS_ENV, BENCH_REDIS_URL) if shared else None
        self.config_path.write_text(
            gateway_config(mock_url, fmt, self.port, workdir, bus, self.name, store_url, otel)
        )

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "sluice.cli",
            "serve",
            "--config",
            str(self.config_path),
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]

    def env(self) -> dict[str, str]:
        env = {**os.environ, BENCH_KEY_ENV: "bench"}
        if self.otel:
            # every signal to the mock over OTLP/HTTP; the metrics every 5 s, so that their
            # exports fall inside the measurements (spans go in batches every 5 s or 512)
            env.update(
                OTEL_EXPORTER_OTLP_ENDPOINT=self.mock_url,
                OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
                OTEL_TRACES_EXPORTER="otlp",
                OTEL_METRICS_EXPORTER="otlp",
                OTEL_METRIC_EXPORT_INTERVAL="5000",
            )
            env.pop("OTEL_SDK_DISABLED", None)
        return env

    def pids(self) -> list[int]:
        """The process, and its workers under ``--workers``."""
        own = super().pids()
        return own + [child for pid in own for child in proc.children(pid)]


def gateway_config(
    mock_url: str,
    fmt: str,
    port: int,
    workdir: Path,
    bus_url: str | None = None,
    name: str = "gateway",
    store_url: str | None = None,
    otel: bool = False,
) -> str:
    kind = "anthropic" if fmt == "messages" else "openai"
    store = store_url or f"sqlite:///{workdir}/{name}.db"
    bus = (
        f'\n[bus]\nurl = "{bus_url}"\nprefix = "sluice-bench-{os.getpid()}-{name}:"\n'
        if bus_url
        else ""
    )
    telemetry = "\n[telemetry]\nenabled = true\n" if otel else ""
    return f"""\
# Generated by sluice bench.
[server]
host = "{HOST}"
port = {port}
log_level = "info"
# the benchmark's client names the gateway "gateway" in its requests' Host
allowed_hosts = ["gateway", "{HOST}"]

[store]
url = "{store}"
{bus}{telemetry}
# The benchmark measures capacity: no admission ceiling in its way.
[streams]
max_concurrent = 0

[sim]
embedded = false

[providers.mock]
kind = "{kind}"
base_url = "{mock_url}/v1"
api_key_env = "{BENCH_KEY_ENV}"
"""


class PipeProcess(ManagedProcess):
    """The floor of a relay in Python: a byte pipe to the mock on uvloop (``bench.pipe``)."""

    name = "python-pipe"

    def __init__(self, workdir: Path, cpus: set[int], mock_port: int) -> None:
        super().__init__(workdir, cpus)
        self.mock_port = mock_port

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "sluice.bench.pipe",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--upstream-port",
            str(self.mock_port),
        ]


class NginxProcess(ManagedProcess):
    """nginx in the foreground on a generated configuration: one worker (or ``workers``, each
    with its own listening socket), no buffering, HTTP/1.1 with pooled connections to the
    mock."""

    name = "nginx"

    def __init__(
        self, workdir: Path, cpus: set[int], mock_port: int, binary: str, workers: int = 1
    ) -> None:
        if workers > 1:
            self.name = f"nginx-w{workers}"
        super().__init__(workdir, cpus)
        self.binary = binary
        self.prefix = workdir / self.name
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.config_path = self.prefix / "nginx.conf"
        self.config_path.write_text(nginx_config(self.prefix, self.port, mock_port, workers))

    def argv(self) -> list[str]:
        return [
            self.binary,
            "-c",
            str(self.config_path),
            "-p",
            str(self.prefix),
            "-e",
            str(self.prefix / "error.log"),
        ]

    def pids(self) -> list[int]:
        master = super().pids()
        return master + [child for pid in master for child in proc.children(pid)]

    def log_tail(self, lines: int = 15) -> str:
        error_log = self.prefix / "error.log"
        tail = super().log_tail(lines)
        if error_log.exists():
            tail += "\n" + "\n".join(error_log.read_text(errors="replace").splitlines()[-lines:])
        return tail


def nginx_config(prefix: Path, port: int, mock_port: int, workers: int = 1) -> str:
    # several workers: a listening socket each (SO_REUSEPORT), as ``sluice serve --workers``
    reuseport = " reuseport" if workers > 1 else ""
    return f"""\
# Generated by sluice bench: the mock behind a plain nginx reverse proxy.
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile 65536;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections 32768;
    multi_accept on;
}}

http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    upstream mock {{
        server {HOST}:{mock_port};
        keepalive 1024;
    }}

    server {{
        listen {HOST}:{port} backlog=4096{reuseport};
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }}
    }}
}}
"""


def find_nginx(install: bool = True) -> str:
    """The nginx binary: on PATH, in /usr/sbin, or installed by ``scripts/ensure-nginx.sh``
    (when running from a source checkout). Raises ``TargetError`` naming what to do."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found:
        return found
    if install and _ENSURE_NGINX.exists():
        result = subprocess.run(
            ["bash", str(_ENSURE_NGINX)], capture_output=True, text=True, check=False
        )
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip().splitlines()[-1]
        raise TargetError(f"scripts/ensure-nginx.sh failed:\n{result.stderr.strip()}")
    raise TargetError(
        "nginx is not installed: run scripts/ensure-nginx.sh (or apt-get install nginx-light), "
        "or leave nginx out with --targets direct,gateway"
    )


async def wait_ready(
    port: int, path: str, within: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``GET path`` on the port until it answers 200 (or any status when ``path`` is
    ``""``: nginx in front of the mock answers the mock's 404)."""
    deadline = time.monotonic() + within
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise TargetError(f"exited with status {process.returncode} while starting")
        try:
            status = await http_status(port, path or "/healthz")
        except OSError as exc:
            last = str(exc)
        else:
            if status == 200 or (not path and status):
                return
            last = f"HTTP {status}"
        await asyncio.sleep(0.05)
    raise TargetError(f"not ready on port {port} after {within:.0f} s ({last})")


async def http_status(port: int, path: str) -> int:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 2)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nhost: {HOST}\r\nconnection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), 2)
    finally:
        writer.close()
    parts = line.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


async def http_get_json(port: int, path: str) -> bytes:
    """The body of a small ``GET`` (the mock's ``/stats``)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 2)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nhost: {HOST}\r\nconnection: close\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    return raw.partition(b"\r\n\r\n")[2]
