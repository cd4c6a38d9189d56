"""A real browser for the page tests: Debian's Chromium, driven by Playwright.

Chromium comes from the system packages (``make system-deps`` installs it); Playwright drives
it through ``executable_path``, so no browser is downloaded. A missing browser is an error with
the way to fix it, never a skip.
"""

from __future__ import annotations

import asyncio
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


class TcpRelay:
    """A TCP relay between the browser and a server, which can cut every connection at once:
    what a dropped network or a restarted proxy does to a stream in flight.

    ``async with TcpRelay(server_url) as relay``: point the browser at ``relay.url``;
    ``await relay.cut_all()`` aborts every open connection (a reset, both sides) and returns how
    many it cut; ``relay.requests`` holds the head of every HTTP request that went through.
    """

    def __init__(self, target_url: str) -> None:
        from urllib.parse import urlsplit

        target = urlsplit(target_url)
        assert target.hostname is not None and target.port is not None
        self.target = (target.hostname, target.port)
        self.requests: list[str] = []
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> TcpRelay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self.cut_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        pair = (writer, up_writer)
        self._pairs.add(pair)
        tasks = [
            asyncio.ensure_future(self._pipe(reader, up_writer, record=True)),
            asyncio.ensure_future(self._pipe(up_reader, writer, record=False)),
        ]
        self._tasks.update(tasks)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.difference_update(tasks)
            self._pairs.discard(pair)
            for side in pair:
                side.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, record: bool
    ) -> None:
        while data := await reader.read(65536):
            if record and data[:4] in (b"GET ", b"POST", b"HEAD", b"PUT ", b"DELE"):
                self.requests.append(data.split(b"\r\n\r\n", 1)[0].decode("latin-1"))
            writer.write(data)
            await writer.drain()

    async def cut_all(self) -> int:
        pairs = list(self._pairs)
        for client, upstream in pairs:
            client.transport.abort()
            upstream.transport.abort()
        await asyncio.sleep(0)
        return len(pairs)
