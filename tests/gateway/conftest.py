"""Fixtures of the gateway's tests beyond the shared ones (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gateway.js_clients import install_clients


@pytest.fixture(scope="session")
def js_clients() -> Path:
    """The agent front ends' JavaScript clients, installed (tests/gateway/js_clients.py)."""
    return install_clients()
