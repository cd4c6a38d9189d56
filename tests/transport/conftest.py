"""Fixtures for the transport tests: a port that refuses connections, and certificates. Every
test runs on asyncio's own loop and on uvloop, the gateway's (their TLS and ``start_tls`` are
separate implementations)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import uvloop

from tests.transport.servers import Certificates


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture
def unused_port() -> Iterator[int]:
    """A loopback port bound but not listening for the test's length: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return Certificates(tmp_path)
