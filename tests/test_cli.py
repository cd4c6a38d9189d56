"""The ``sluice`` command as a new user meets it: the demo, and the errors at start.

Each test runs the command as a separate process, the way a shell runs it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sluice.bench.proc import free_port
from sluice.demo import PROMPT

SENTENCE_END = re.compile(r"[.!?][*_)\"']*$")


def sluice(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def fields(line: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", line))


def assert_one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("sluice: ")
    for word in words:
        assert word in lines[0]


def test_the_demo_prints_the_prompt_and_one_whole_answer(tmp_path: Path) -> None:
    port = free_port()
    done = sluice("demo", "--once", "--port", str(port), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"sluice demo: a gateway on http://127.0.0.1:{port} ")
    assert lines[1] == f"prompt: {PROMPT}"
    assert fields(lines[2])["model"] == "sim/support"
    assert fields(lines[2])["session_id"].startswith("op-")
    ended = next(i for i, line in enumerate(lines) if line.startswith("session ended "))
    answer = "\n".join(lines[3:ended]).strip()
    end = fields(lines[ended])
    assert end["state"] == "complete"
    assert end["finish_reason"] in ("stop", "length")
    if end["finish_reason"] == "stop":
        assert SENTENCE_END.search(answer), answer[-200:]
    # One answer, to the question asked: the one topic's heading, and no other.
    assert answer.startswith("## Fixing `permission denied` on the release step")
    assert answer.count("\n## ") == 0
    assert answer.count("```") % 2 == 0
    usage = fields(next(line for line in lines if line.startswith("usage ")))
    assert int(usage["output_tokens"]) > 0
    assert "ops center notified state=complete" in lines
    # Then the agent's run: one line per step, the first calling two tools of the demo's
    # MCP server in parallel, the second answering with their results.
    steps = [fields(line) for line in lines if line.startswith("agent step ")]
    assert [s["step"] for s in steps] == ["1", "2"]
    assert steps[0]["finish_reason"] == "tool_calls" and steps[1]["finish_reason"] == "stop"
    assert "lookup_order(order_id=A-1042)=" in steps[0]["tools"]
    assert "shipping_estimate(order_id=A-1042)=" in steps[0]["tools"]
    assert steps[1]["tools"] == "-"
    answer = next(line for line in lines if line.startswith("Here is what I found."))
    assert "tracking PC-88412" in answer and "5 days after shipping" in answer
    run = fields(next(line for line in lines if line.startswith("agent run ended ")))
    assert run["state"] == "complete" and run["steps"] == "2"
    # --once ends the gateway with the demo, and says so rather than that it serves.
    assert "is serving" not in done.stdout and "Ctrl-C" not in done.stdout
    assert lines[-1].startswith("demo done")
    with socket.socket() as probe:  # nothing listens there any more
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


@pytest.mark.parametrize("command", ["serve", "demo", "sim"])
def test_a_port_in_use_is_one_line_naming_it(tmp_path: Path, command: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = sluice(command, "--port", str(port), cwd=tmp_path)
    assert_one_line_error(done, f"port {port}", "already in use", "--port")
    assert "listening on" not in done.stdout


def test_the_simulator_listens_before_it_says_so(tmp_path: Path) -> None:
    """A client that connects on reading the simulator's line is answered, not refused, and
    with ``--port 0`` the line names the port taken."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", "sim", "--port", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("sluice simulator listening on http://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        assert port != 0
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nhost: sim\r\nconnection: close\r\n\r\n")
            conn.settimeout(30)
            reply = b""
            while piece := conn.recv(65536):
                reply += piece
        assert reply.startswith(b"HTTP/1.1 200")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_an_unreadable_config_file_is_one_line_naming_it(tmp_path: Path) -> None:
    missing = sluice("serve", "--config", "nowhere.toml", cwd=tmp_path)
    assert_one_line_error(missing, "nowhere.toml", "No such file", "sluice.example.toml")
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe[server]\n")
    binary = sluice("serve", "--config", "binary.toml", cwd=tmp_path)
    assert_one_line_error(binary, "binary.toml", "not UTF-8")
    (tmp_path / "broken.toml").write_text("[server\nport = 1\n")
    broken = sluice("serve", "--config", "broken.toml", cwd=tmp_path)
    assert_one_line_error(broken, "broken.toml", "not valid TOML")


def test_a_missing_provider_key_at_start_is_one_line_naming_the_variable(
    tmp_path: Path,
) -> None:
    (tmp_path / "sluice.toml").write_text(
        f'[server]\nport = {free_port()}\n[store]\nurl = "memory://"\n'
        '[providers.vllm]\nkind = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        'api_key_env = "SLUICE_TEST_UNSET_KEY"\n'
    )
    env = {key: value for key, value in os.environ.items() if key != "SLUICE_TEST_UNSET_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "sluice.cli", "serve", "--config", "sluice.toml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_line_error(done, "provider vllm", "SLUICE_TEST_UNSET_KEY", "export it")
    assert "listening on" not in done.stdout
