"""``sluice keys`` and ``sluice serve``'s secure default, run as a user would."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from sluice.bench.proc import free_port

SLUICE = [sys.executable, "-m", "sluice.cli"]


def sluice(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--config", str(config)] if config is not None else []
    return subprocess.run(
        [*SLUICE, *args, *extra], capture_output=True, text=True, timeout=60, check=False
    )


def test_keys_create_prints_the_key_once_as_the_last_line_and_stores_only_its_hash(
    tmp_path: Path,
) -> None:
    config = tmp_path / "sluice.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/sluice.db"\n')
    made = sluice(
        "keys",
        "create",
        "--name",
        "bot",
        "--models",
        "sim/*",
        "--budget",
        "2.5",
        "--rpm",
        "9",
        config=config,
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("sk-sluice-") and len(key) == 42
    assert key.encode() not in (tmp_path / "sluice.db").read_bytes()
    listed = sluice("keys", "list", config=config)
    assert listed.returncode == 0 and "bot" in listed.stdout and key not in listed.stdout
    assert key[:18] in listed.stdout and "sim/*" in listed.stdout and "$2.50" in listed.stdout
    assert sluice("keys", "create", "--name", "bot", config=config).returncode == 1
    revoked = sluice("keys", "revoke", key[:16], config=config)
    assert revoked.returncode == 0 and "bot" in revoked.stdout
    assert "revoked" in sluice("keys", "list", config=config).stdout
    missing = sluice("keys", "revoke", "nobody", config=config)
    assert missing.returncode == 1 and "nobody" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_keys_made_by_the_cli_reach_a_running_gateway_and_revocation_too(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "sluice.toml"
    config.write_text(
        f"[server]\nport = {port}\n[auth]\nrequired = true\n[sim]\nembedded = true\n"
        f'[store]\nurl = "sqlite:///{tmp_path}/sluice.db"\n'
    )
    server = subprocess.Popen(
        [*SLUICE, "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{url}/healthz")
                break
            except httpx.TransportError:
                time.sleep(0.05)
        anonymous = httpx.post(f"{url}/api/sessions", json={"model": "sim/support", "prompt": "hi"})
        assert anonymous.status_code == 401
        key = sluice("keys", "create", "--name", "late", config=config).stdout.splitlines()[-1]
        headers = {"authorization": f"Bearer {key}"}
        status = 0
        for _ in range(100):  # the gateway polls the store once a second
            status = httpx.get(f"{url}/api/sessions", headers=headers).status_code
            if status == 200:
                break
            time.sleep(0.1)
        assert status == 200
        started = httpx.post(
            f"{url}/api/sessions",
            json={"model": "sim/support", "prompt": "hi"},
            headers={**headers, "x-sim-token-rate": "2000"},
        )
        assert started.status_code == 201, started.text
        assert sluice("keys", "revoke", "late", config=config).returncode == 0
        for _ in range(100):
            status = httpx.get(f"{url}/api/sessions", headers=headers).status_code
            if status == 401:
                break
            time.sleep(0.1)
        assert status == 401
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert key not in stderr


def test_serving_beyond_loopback_without_auth_refuses_to_start_in_one_line(
    tmp_path: Path,
) -> None:
    for host in ("0.0.0.0", "::", "192.0.2.10"):
        refused = sluice("serve", "--host", host, "--port", str(free_port()))
        assert refused.returncode == 2, refused.stdout
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "[auth] required" in lines[0]
        assert "--insecure-no-auth" in lines[0] and "Traceback" not in refused.stderr


def test_insecure_no_auth_serves_beyond_loopback_when_asked(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "sluice.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/sluice.db"\n')
    server = subprocess.Popen(
        [
            *SLUICE,
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
            "--insecure-no-auth",
            "--config",
            str(config),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert "listening" in server.stdout.readline()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
