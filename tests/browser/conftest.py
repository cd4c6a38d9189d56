"""A real browser for the page tests: Debian's Chromium, driven by Playwright.

Chromium comes from the system packages (``make system-deps`` installs it); Playwright drives
it through ``executable_path``, so no browser is downloaded. A missing browser is an error with
the way to fix it, never a skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-extensions",
    "--no-first-run",
]


def chromium_path() -> str:
    """The system Chromium: ``SLUICE_CHROMIUM``, or ``chromium`` on PATH, or /usr/bin/chromium."""
    candidates = [os.environ.get("SLUICE_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise RuntimeError(
        "Chromium is not installed: run `make system-deps` (Debian package `chromium`), "
        "or set SLUICE_CHROMIUM to a Chromium binary"
    )


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    opened = await context.new_page()
    # Any uncaught script error on a page fails the test that opened it.
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    assert not errors, f"uncaught errors on the page: {errors}"
