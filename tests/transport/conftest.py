"""Fixtures for the transport tests: a port that refuses connections, and certificates."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.transport.servers import Certificates


@pytest.fixture
def unused_port() -> Iterator[int]:
    """A loopback port bound but not listening for the test's length: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return Certificates(tmp_path)
