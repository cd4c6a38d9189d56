"""Real MCP servers for the agent tests: ``mcp_server.py`` over stdio and over Streamable HTTP."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.config import McpServerConfig

SERVER = Path(__file__).with_name("mcp_server.py")


def stdio_server(name: str = "testtools") -> McpServerConfig:
    return McpServerConfig(name=name, command=[sys.executable, str(SERVER), "stdio"])


@pytest.fixture(scope="module")
def http_server_url() -> Iterator[str]:
    """The test server as its own process, serving Streamable HTTP on a loopback port."""
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "http"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(params=["stdio", "http"])
def server(request: pytest.FixtureRequest) -> McpServerConfig:
    if request.param == "stdio":
        return stdio_server()
    url = request.getfixturevalue("http_server_url")
    return McpServerConfig(name="testtools", url=url)
