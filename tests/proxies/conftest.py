"""Fixtures for the proxy proofs: a work directory per proxy, and the browser fixtures (system
Chromium through Playwright) from tests/browser, with a context that accepts the test's own
self-signed certificate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext

from tests.browser.conftest import browser  # noqa: F401  (a fixture, shared)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "proxies"
    path.mkdir()
    return path


@pytest.fixture
async def tls_context(browser: Browser) -> AsyncIterator[BrowserContext]:  # noqa: F811
    """A browser context that trusts the test's self-signed certificate."""
    ctx = await browser.new_context(ignore_https_errors=True)
    try:
        yield ctx
    finally:
        await ctx.close()
