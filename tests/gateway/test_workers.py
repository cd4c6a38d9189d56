"""``sluice serve --workers N``: real processes on one port, the connections spread over
them, ``/metrics`` summed whichever worker answers, SIGTERM stopping them all and a killed
worker replaced.

Which worker holds a connection is read from the kernel: the server's end of the connection
is a socket in exactly one worker's descriptor table (``/proc/net/tcp`` gives its inode).
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from sluice.bench.proc import children, free_port

HOST = "127.0.0.1"
REDIS_URL = os.environ.get("SLUICE_TEST_REDIS", "redis://127.0.0.1:6379/0")
#: a short answer from the embedded simulator, at once
QUICK = {"x-sim-output-tokens": "3", "x-sim-ttft": "0", "content-type": "application/json"}
SERVE = [sys.executable, "-m", "sluice.cli", "serve", "--workers", "2"]
SESSION_BODY = b'{"model": "sim/support", "messages": [{"role": "user", "content": "hi"}]}'


@dataclass
class Supervised:
    process: subprocess.Popen[str]
    port: int

    def workers(self) -> list[int]:
        return sorted(children(self.process.pid))


def _config(tmp_path: Path, port: int, prefix: str | None = None) -> Path:
    """A gateway on ``port``, SQLite in ``tmp_path``, and Redis under ``prefix`` if one."""
    path = tmp_path / "sluice.toml"
    text = f'[server]\nport = {port}\n\n[store]\nurl = "sqlite:///{tmp_path}/sluice.db"\n'
    if prefix is not None:
        text += f'\n[bus]\nurl = "{REDIS_URL}"\nprefix = "{prefix}"\n'
    path.write_text(text)
    return path


def _delete_prefix(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _wait_for(condition: object, what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Supervised]:
    yield from _supervised(tmp_path, "")


@pytest.fixture
def simulator() -> Iterator[int]:
    """The provider simulator as a process of its own (the embedded one is served on the
    gateway's port, by whichever worker: a stream's upstream would die with either)."""
    port = free_port(HOST)
    process = subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", "sim", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert "listening" in process.stdout.readline()
        yield port
    finally:
        process.terminate()
        process.wait(30)


def _supervised(tmp_path: Path, extra: str) -> Iterator[Supervised]:
    port = free_port(HOST)
    prefix = f"sluice-test-{os.getpid()}-{uuid.uuid4().hex[:8]}:"
    config = _config(tmp_path, port, prefix)
    config.write_text(config.read_text() + extra)
    process = subprocess.Popen(
        [*SERVE, "--config", str(config)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    supervised = Supervised(process, port)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert f"listening on http://{HOST}:{port} (2 workers)" in line, line
        _wait_for(lambda: len(supervised.workers()) == 2, "two workers")
        _wait_for(lambda: _both_answer(supervised), "an answer from each worker")
        yield supervised
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        _delete_prefix(prefix)


def _healthy(port: int) -> bool:
    try:
        return _get(port, "/healthz")[0] == 200
    except OSError:
        return False


def _both_answer(supervised: Supervised) -> bool:
    workers = supervised.workers()
    try:
        conns, holders = _open_and_locate(supervised.port, workers, 16)
    except (OSError, AssertionError):
        return False
    for conn in conns:
        conn.close()
    return holders == set(workers)


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _server_inode(client: socket.socket, port: int) -> int:
    """The inode of the server's end of ``client``'s connection to ``port``."""
    local = client.getsockname()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[2].endswith(f":{local:04X}"):
            return int(fields[9])
    raise AssertionError(f"no server end for the client port {local}")


def _holder(inode: int, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the socket ``inode``."""
    target = f"socket:[{inode}]"
    for pid in pids:
        fds = Path(f"/proc/{pid}/fd")
        for fd in fds.iterdir():
            try:
                if os.readlink(fd) == target:
                    return pid
            except OSError:
                continue
    return None


def _open_and_locate(
    port: int, pids: list[int], count: int
) -> tuple[list[socket.socket], set[int]]:
    """``count`` kept-alive connections, each answered once; and the workers holding them."""
    conns: list[socket.socket] = []
    holders: set[int] = set()
    for _ in range(count):
        conn = socket.create_connection((HOST, port), timeout=30)
        conns.append(conn)
        conn.sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        assert conn.recv(65536).startswith(b"HTTP/1.1 200")  # accepted by a worker by now
        holder = _holder(_server_inode(conn, port), pids)
        assert holder is not None, "a connection held by no worker"
        holders.add(holder)
    return conns, holders


def _sessions_counted(body: bytes) -> float:
    return sum(
        float(value)
        for value in re.findall(rb"^sluice_sessions_total\{[^}]*\} (\S+)$", body, re.MULTILINE)
    )


def _run_sessions(port: int, count: int, pids: list[int]) -> set[int]:
    """``count`` sessions, each on a new connection; the workers that served them."""
    served: set[int] = set()
    for _ in range(count):
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        try:
            conn.request("POST", "/v1/chat/completions", body=SESSION_BODY, headers=QUICK)
            response = conn.getresponse()
            assert response.status == 200, response.read()
            assert b"choices" in response.read()
            assert conn.sock is not None  # kept alive: the worker that answered holds it
            holder = _holder(_server_inode(conn.sock, port), pids)
            assert holder is not None
            served.add(holder)
        finally:
            conn.close()
    return served


def _gauge(body: bytes, name: str) -> float:
    found = re.search(rb"^" + name.encode() + rb" (\S+)$", body, re.MULTILINE)
    assert found is not None, f"no {name} in the scrape"
    return float(found.group(1))


def _every_scrape_counts(port: int, sessions: float, scrapes: int = 8) -> list[float]:
    """Scrape on fresh connections (answered by either worker) until each says ``sessions``."""
    seen: list[float] = []

    def settled() -> bool:
        seen[:] = [_sessions_counted(_get(port, "/metrics")[1]) for _ in range(scrapes)]
        return all(value == sessions for value in seen)

    try:
        _wait_for(settled, f"every scrape counting {sessions} sessions", within=15)
    except AssertionError:
        raise AssertionError(f"scrapes counted {seen}, not {sessions} each") from None
    return seen


def test_several_workers_without_a_bus_are_refused_in_one_line(tmp_path: Path) -> None:
    config = _config(tmp_path, free_port(HOST))
    done = subprocess.run(
        [*SERVE, "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("sluice: --workers 2 needs [bus] url")


def test_connections_on_the_one_port_reach_both_workers(gateway: Supervised) -> None:
    workers = gateway.workers()
    conns, holders = _open_and_locate(gateway.port, workers, 40)
    try:
        # 40 connections hashed over two workers' sockets: all on one would be 1 in 2**39
        assert holders == set(workers)
    finally:
        for conn in conns:
            conn.close()


def test_metrics_count_the_sessions_of_every_worker_whichever_answers(
    gateway: Supervised,
) -> None:
    workers = gateway.workers()
    assert _run_sessions(gateway.port, 16, workers) == set(workers)
    _every_scrape_counts(gateway.port, 16)
    body = _get(gateway.port, "/metrics")[1]
    assert _gauge(body, "sluice_live_sessions") == 0
    one_ceiling = _gauge(body, "sluice_client_connection_ceiling") / 2
    assert one_ceiling >= 16 and one_ceiling == int(one_ceiling)  # two equal workers' sum


def test_sigterm_stops_the_supervisor_and_every_worker(gateway: Supervised) -> None:
    workers = gateway.workers()
    metrics_dirs = {
        line.split("=", 1)[1]
        for pid in workers
        for line in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
        if line.startswith("PROMETHEUS_MULTIPROC_DIR=")
    }
    assert len(metrics_dirs) == 1
    gateway.process.send_signal(signal.SIGTERM)
    assert gateway.process.wait(30) == 0
    for pid in workers:
        _wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists(), f"worker {pid} gone")
    assert not Path(metrics_dirs.pop()).exists()
    with pytest.raises(OSError):
        socket.create_connection((HOST, gateway.port), timeout=5).close()


def test_a_killed_worker_is_replaced_and_its_counts_stay(gateway: Supervised) -> None:
    first, second = gateway.workers()
    assert _run_sessions(gateway.port, 16, [first, second]) == {first, second}
    _every_scrape_counts(gateway.port, 16)
    conns, _ = _open_and_locate(gateway.port, [first, second], 20)
    on_second = sum(_holder(_server_inode(c, gateway.port), [second]) == second for c in conns)
    os.kill(first, signal.SIGKILL)
    _wait_for(
        lambda: len(gateway.workers()) == 2 and first not in gateway.workers(),
        "a worker in place of the killed one",
    )
    replacement = next(pid for pid in gateway.workers() if pid != second)
    _wait_for(lambda: _healthy(gateway.port), "an answer on the port")
    # the killed worker's open connections no longer count (its live gauge files are gone);
    # the scrape's own connection does
    _wait_for(
        lambda: (
            _gauge(_get(gateway.port, "/metrics")[1], "sluice_client_connections") == on_second + 1
        ),
        f"{on_second + 1} open connections counted",
    )
    for conn in conns:
        conn.close()
    conns, holders = _open_and_locate(gateway.port, [second, replacement], 40)
    try:
        assert holders == {second, replacement}
    finally:
        for conn in conns:
            conn.close()
    # the killed worker's sessions are still counted
    _run_sessions(gateway.port, 4, [second, replacement])
    _every_scrape_counts(gateway.port, 20)
    assert gateway.process.poll() is None


def test_a_worker_replaced_beside_a_live_stream_leaves_it_whole_and_its_record_live(
    tmp_path: Path, simulator: int
) -> None:
    """The new worker's look for sessions a dead process left live asks the bus which
    processes hold a lease: the other worker's stream is not one of them."""
    extra = (
        '\n[sim]\nembedded = false\n\n[providers.sim]\nkind = "sim"\n'
        f'base_url = "http://{HOST}:{simulator}/v1"\n'
    )
    supervised = _supervised(tmp_path, extra)
    gateway = next(supervised)
    try:
        body = (
            b'{"model": "sim/support", "stream": true, '
            b'"messages": [{"role": "user", "content": "hi"}]}'
        )
        stream = socket.create_connection((HOST, gateway.port), timeout=30)
        stream.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
            b"content-type: application/json\r\nx-sim-token-rate: 100\r\n"
            b"x-sim-output-tokens: 600\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        )
        received = stream.recv(65536)
        assert received.startswith(b"HTTP/1.1 200")
        owner = _holder(_server_inode(stream, gateway.port), gateway.workers())
        other = next(pid for pid in gateway.workers() if pid != owner)
        os.kill(other, signal.SIGKILL)
        _wait_for(
            lambda: len(gateway.workers()) == 2 and other not in gateway.workers(),
            "a worker in place of the killed one",
        )
        _wait_for(lambda: _both_answer(gateway), "an answer from each worker")
        while b"data: [DONE]" not in received:
            chunk = stream.recv(65536)
            assert chunk, "the stream ended without its last event"
            received += chunk
        stream.close()
        _every_scrape_counts(gateway.port, 1)
        scrape = _get(gateway.port, "/metrics")[1]
        assert b'sluice_sessions_total{provider="sim",state="complete"} 1.0' in scrape
        assert b"interrupted" not in scrape and b"node_lost" not in scrape
    finally:
        supervised.close()
