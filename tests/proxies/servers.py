"""Real reverse proxies in front of a gateway: nginx, HAProxy and Caddy from the system packages,
each run in the foreground on a generated configuration, on a free loopback port, with every
file it writes inside a work directory.

The configurations are the proxies' defaults (what a site gets when it adds only a
``proxy_pass``/``reverse_proxy`` line), variants with the one setting that delays or cuts a
stream, and the ready-to-use snippets under ``deploy/`` with their addresses substituted.
Used by the tests in this folder and by ``scripts/proxy-figures.py``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sluice.bench.proc import free_port
from sluice.bench.targets import TargetError, find_nginx, wait_ready

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def system_binary(name: str) -> str:
    """A system program the proxy tests need; its absence is an error saying how to fix it."""
    if name == "nginx":
        try:
            return find_nginx(install=False)
        except TargetError:
            pass
    found = shutil.which(name) or next(
        (f"{d}/{name}" for d in ("/usr/sbin", "/usr/bin", "/sbin") if os.access(f"{d}/{name}", 1)),
        None,
    )
    if found is None:
        raise RuntimeError(
            f"{name} is not installed: run `make system-deps` (scripts/ensure-packages.sh installs "
            "nginx-light, haproxy, caddy, chromium, tinyproxy and prometheus from Debian's "
            "packages)"
        )
    return found


# -- configurations ----------------------------------------------------------------------------


def substitute(text: str, replacements: dict[str, str]) -> str:
    """Replace each key exactly once: a snippet that changed shape fails loudly here."""
    for old, new in replacements.items():
        count = text.count(old)
        if count != 1:
            raise AssertionError(f"expected {old!r} once in the snippet, found it {count} times")
        text = text.replace(old, new)
    return text


def nginx_main(prefix: Path, http: str) -> str:
    """nginx.conf around an ``http`` block's content: foreground, one worker, files in prefix."""
    return f"""\
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections 512;
}}

http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    types {{
        text/html html;
    }}

{http}
}}
"""


def nginx_site(
    port: int, gateway_port: int, *, http: str = "", location: str = "", listen: str = ""
) -> str:
    """A site with nginx's defaults: only ``proxy_pass``, plus the given extra directives."""
    return f"""\
    {http}
    server {{
        listen {HOST}:{port}{listen};
        location / {{
            proxy_pass http://{HOST}:{gateway_port};
            {location}
        }}
    }}
"""


#: The nginx variants the tests run, by name: extra directives (http level, location level).
NGINX_VARIANTS: dict[str, dict[str, str]] = {
    "defaults": {},
    "gzip": {"http": "gzip on;\n    gzip_types text/event-stream;"},
    "read-timeout-2s": {"location": "proxy_read_timeout 2s;"},
}


def nginx_deploy_site(
    port: int,
    gateway_port: int,
    cert: Path,
    key: Path,
    *,
    http2: bool = True,
    static_root: Path | None = None,
) -> str:
    """deploy/nginx/sluice.conf on this port, gateway and certificate; HTTP/1.1 only when
    ``http2`` is false; a test page folder served at ``/static-test/`` when given."""
    text = (DEPLOY / "nginx" / "sluice.conf").read_text()
    replacements = {
        "listen 443 ssl http2;": f"listen {HOST}:{port} ssl{' http2' if http2 else ''};",
        "server 127.0.0.1:8080;": f"server {HOST}:{gateway_port};",
        "/etc/ssl/sluice/fullchain.pem": str(cert),
        "/etc/ssl/sluice/privkey.pem": str(key),
    }
    if static_root is not None:
        replacements["    location / {"] = (
            f"    location /static-test/ {{\n        alias {static_root}/;\n    }}\n\n"
            "    location / {"
        )
    return substitute(text, replacements)


def haproxy_config(port: int, gateway_port: int, *, backend: str = "") -> str:
    """HAProxy with the defaults Debian ships in /etc/haproxy/haproxy.cfg (50 s client and
    server timeouts) and one frontend and backend."""
    return f"""\
defaults
    mode http
    timeout connect 5000
    timeout client 50000
    timeout server 50000

frontend sluice
    bind {HOST}:{port}
    default_backend sluice

backend sluice
    server gateway {HOST}:{gateway_port}
    {backend}
"""


HAPROXY_VARIANTS: dict[str, str] = {
    "defaults": "",
    "compression": "compression algo gzip\n    compression type text/event-stream",
    "timeout-server-2s": "timeout server 2s",
}


def haproxy_deploy_config(port: int, gateway_port: int) -> str:
    text = (DEPLOY / "haproxy" / "sluice.cfg").read_text()
    return substitute(
        text,
        {
            "bind :80": f"bind {HOST}:{port}",
            "server gateway 127.0.0.1:8080": f"server gateway {HOST}:{gateway_port}",
        },
    )


CADDY_GLOBAL = """\
{
\tadmin off
\tauto_https off
}

"""


def caddyfile(port: int, gateway_port: int, *, site: str = "", proxy: str = "") -> str:
    """Caddy with its defaults: a site with ``reverse_proxy`` and the given extra directives."""
    return f"""{CADDY_GLOBAL}http://{HOST}:{port} {{
\t{site}
\treverse_proxy {HOST}:{gateway_port} {{
\t\t{proxy}
\t}}
}}
"""


CADDY_VARIANTS: dict[str, dict[str, str]] = {
    "defaults": {},
    "encode-gzip": {"site": "encode gzip"},
    "flush-interval-1s": {"proxy": "flush_interval 1s"},
}


def caddy_deploy_config(port: int, gateway_port: int) -> str:
    text = (DEPLOY / "caddy" / "Caddyfile").read_text()
    return CADDY_GLOBAL + substitute(
        text,
        {
            "sluice.example.com {": f"http://{HOST}:{port} {{",
            "reverse_proxy 127.0.0.1:8080": f"reverse_proxy {HOST}:{gateway_port}",
        },
    )


def self_signed_certificate(workdir: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made with the system's openssl: (certificate, key)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is not installed: apt-get install openssl")
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


# -- processes ---------------------------------------------------------------------------------


@dataclass
class Proxy:
    """A running proxy: its name, its port and the URL clients use."""

    name: str
    port: int
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}"


@asynccontextmanager
async def run_process(
    name: str, argv: list[str], workdir: Path, port: int, env: dict[str, str] | None = None
) -> AsyncIterator[None]:
    """Start ``argv`` in the foreground, wait until ``port`` answers HTTP (any status), stop it
    when done. A process that fails to start is an error showing its log."""
    log_path = workdir / f"{name}.log"
    process = _spawn(argv, log_path, env)
    try:
        try:
            await wait_ready(port, "", 15.0, process)
        except TargetError as exc:
            logs = log_path.read_text(errors="replace")
            error_log = workdir / "error.log"
            if error_log.exists():
                logs += error_log.read_text(errors="replace")
            raise RuntimeError(f"{name} did not start: {exc}\n{logs}") from exc
        yield
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)


def _spawn(argv: list[str], log_path: Path, env: dict[str, str] | None) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=log_path.parent
        )


def _write_config(workdir: Path, name: str, text: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / name
    path.write_text(text)
    return path


@asynccontextmanager
async def nginx(workdir: Path, http: str, port: int, scheme: str = "http") -> AsyncIterator[Proxy]:
    """nginx on ``http`` (an http block's content) listening on ``port``."""
    binary = system_binary("nginx")
    config = _write_config(workdir, "nginx.conf", nginx_main(workdir, http))
    argv = [binary, "-p", str(workdir), "-c", str(config), "-e", str(workdir / "error.log")]
    async with run_process("nginx", argv, workdir, port):
        yield Proxy("nginx", port, scheme)


@asynccontextmanager
async def nginx_variant(workdir: Path, gateway_port: int, variant: str) -> AsyncIterator[Proxy]:
    port = free_port(HOST)
    site = nginx_site(port, gateway_port, **NGINX_VARIANTS[variant])
    async with nginx(workdir, site, port) as proxy:
        yield proxy


@asynccontextmanager
async def haproxy(workdir: Path, config_text: str, port: int) -> AsyncIterator[Proxy]:
    binary = system_binary("haproxy")
    config = _write_config(workdir, "haproxy.cfg", config_text)
    async with run_process("haproxy", [binary, "-f", str(config), "-db"], workdir, port):
        yield Proxy("haproxy", port)


@asynccontextmanager
async def haproxy_variant(workdir: Path, gateway_port: int, variant: str) -> AsyncIterator[Proxy]:
    port = free_port(HOST)
    text = haproxy_config(port, gateway_port, backend=HAPROXY_VARIANTS[variant])
    async with haproxy(workdir, text, port) as proxy:
        yield proxy


@asynccontextmanager
async def caddy(workdir: Path, config_text: str, port: int) -> AsyncIterator[Proxy]:
    binary = system_binary("caddy")
    config = _write_config(workdir, "Caddyfile", config_text)
    # Caddy keeps its data and configuration under the home directory: keep them in workdir.
    env = {
        **os.environ,
        "HOME": str(workdir),
        "XDG_DATA_HOME": str(workdir / "data"),
        "XDG_CONFIG_HOME": str(workdir / "config"),
    }
    argv = [binary, "run", "--config", str(config), "--adapter", "caddyfile"]
    async with run_process("caddy", argv, workdir, port, env):
        yield Proxy("caddy", port)


@asynccontextmanager
async def caddy_variant(workdir: Path, gateway_port: int, variant: str) -> AsyncIterator[Proxy]:
    port = free_port(HOST)
    text = caddyfile(port, gateway_port, **CADDY_VARIANTS[variant])
    async with caddy(workdir, text, port) as proxy:
        yield proxy
