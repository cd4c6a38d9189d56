"""The push contract (``sluice.upstream.UpstreamStream``) over a body a library gives as an
async iterator: a task of the stream's own pulls it and pushes each piece on.

Shared by the maintained-client transports (``httpx``, ``aiohttp``): the library's errors are
mapped to ``UpstreamError``s in the iterator they hand over (``chunks``), so that what reaches
the consumer here is already the project's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping

from sluice.errors import UpstreamBroken, UpstreamError
from sluice.transports.failures import describe
from sluice.upstream import KEPT_HEADERS, Flush, Sink


def kept_headers(items: list[tuple[str, str]]) -> dict[str, str]:
    """The headers a response keeps (``KEPT_HEADERS``), by lowercase name, repeated ones
    joined with ``", "`` as the fast client joins them."""
    headers: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        if key in KEPT_HEADERS:
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


class PulledStream:
    """One response whose body a task pulls. ``close()`` and ``release()`` are idempotent and
    harmless after each other; the task is owned here and cancelled by either."""

    __slots__ = (
        "_chunks",
        "_close",
        "_closed",
        "_done",
        "_finished",
        "_release",
        "_resumed",
        "_task",
        "headers",
        "status",
    )

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        chunks: AsyncIterator[bytes],
        close: Callable[[], None],
        release: Callable[[], None],
    ) -> None:
        self.status = status
        self.headers = headers
        self._chunks = chunks
        self._close = close
        self._release = release
        self._task: asyncio.Task[None] | None = None
        self._done: asyncio.Future[None] | None = None
        self._resumed: asyncio.Future[None] | None = None
        self._finished = False
        self._closed = False

    def start(self, sink: Sink, flush: Flush | None = None) -> asyncio.Future[None]:
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
            if self._closed:
                self._done.cancel()
            else:
                self._task = asyncio.ensure_future(self._pump(sink, flush, self._done))
        return self._done

    async def _pump(self, sink: Sink, flush: Flush | None, done: asyncio.Future[None]) -> None:
        chunks = aiter(self._chunks)
        try:
            while True:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except UpstreamError as exc:  # mapped by the transport already
                    self._fail(done, exc)
                    return
                except Exception as exc:  # noqa: BLE001 - what a transport left unmapped
                    why = f"upstream connection broke mid-stream: {describe(exc)}"
                    self._fail(done, UpstreamBroken(why))
                    self._drop()
                    return
                if self._finished:
                    break
                if chunk:
                    try:
                        sink(chunk)
                        if flush is not None:
                            flush()
                    except Exception as exc:  # noqa: BLE001 - the consumer's own failure
                        self._fail(done, exc)
                        self._drop()
                        return
                if self._resumed is not None:
                    await self._resumed
        except asyncio.CancelledError:
            if not done.done():
                done.cancel()
            raise
        if not done.done():
            done.set_result(None)

    def _fail(self, done: asyncio.Future[None], exc: Exception) -> None:
        if not done.done() and not self._finished:
            done.set_exception(exc)

    def pause(self) -> None:
        if self._resumed is None and not self._closed:
            self._resumed = asyncio.get_running_loop().create_future()

    def resume(self) -> None:
        resumed, self._resumed = self._resumed, None
        if resumed is not None and not resumed.done():
            resumed.set_result(None)

    def finish(self) -> None:
        self._finished = True
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def close(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.cancel()
        self._drop()

    def release(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_task()
        self._release()

    def _drop(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_task()
        self._close()

    def _stop_task(self) -> None:
        self.resume()
        task, self._task = self._task, None
        if task is not None and not task.done() and task is not _current_task():
            task.cancel()


def _current_task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None
