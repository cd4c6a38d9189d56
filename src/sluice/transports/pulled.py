"""The push contract (``sluice.upstream.UpstreamStream``) over a body a library gives as an
async iterator: a task of the stream's own pulls it and pushes each piece on.

Shared by the maintained-client transports (``httpx``, ``aiohttp``): the library's errors are
mapped to ``UpstreamError``s in the iterator they hand over (``chunks``), and whatever else it
raises becomes ``UpstreamBroken`` here. The bounds of the fast client hold here too: the body's
size (``UpstreamTooLarge`` past ``max_body``), and a stall deadline that, given the consumer's
``progress`` count, only content resets, not comments or keep-alive bytes (the library's own
read timeout, reset by any byte, stays as the outer bound).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping

from sluice.errors import UpstreamBroken, UpstreamError, UpstreamStalled, UpstreamTooLarge
from sluice.transports.failures import describe
from sluice.upstream import KEPT_HEADERS, MAX_BODY_BYTES, Flush, Progress, Sink


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
        "_max_body",
        "_release",
        "_resumed",
        "_stall",
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
        *,
        stall: float | None = None,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.status = status
        self.headers = headers
        self._chunks = chunks
        self._close = close
        self._release = release
        self._stall = stall or None
        self._max_body = max_body or MAX_BODY_BYTES
        self._task: asyncio.Task[None] | None = None
        self._done: asyncio.Future[None] | None = None
        self._resumed: asyncio.Future[None] | None = None
        self._finished = False
        self._closed = False

    def start(
        self, sink: Sink, flush: Flush | None = None, progress: Progress | None = None
    ) -> asyncio.Future[None]:
        if self._done is None:
            self._done = done = asyncio.get_running_loop().create_future()
            if self._closed:
                done.cancel()
            else:
                self._task = asyncio.ensure_future(self._pump(sink, flush, progress, done))
        return self._done

    async def _pump(
        self,
        sink: Sink,
        flush: Flush | None,
        progress: Progress | None,
        done: asyncio.Future[None],
    ) -> None:
        loop = asyncio.get_running_loop()
        chunks = aiter(self._chunks)
        stall = self._stall
        received = 0
        seen = progress() if progress is not None else 0
        #: when content last came (or the consumer last resumed): the stall deadline's start
        content_at = loop.time()
        try:
            while True:
                try:
                    if stall is None:
                        chunk = await anext(chunks)
                    else:
                        async with asyncio.timeout_at(content_at + stall):
                            chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    self._fail(done, _stalled(stall, progress is not None))
                    self._drop()
                    return
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
                received += len(chunk)
                if received > self._max_body:
                    too_large = f"upstream response too large: more than {self._max_body} bytes"
                    self._fail(done, UpstreamTooLarge(too_large))
                    self._drop()
                    return
                if chunk:
                    try:
                        sink(chunk)
                        if flush is not None:
                            flush()
                    except Exception as exc:  # noqa: BLE001 - the consumer's own failure
                        self._fail(done, exc)
                        self._drop()
                        return
                if progress is None:
                    content_at = loop.time()
                else:
                    count = progress()
                    if count != seen:
                        seen, content_at = count, loop.time()
                if self._resumed is not None:
                    await self._resumed
                    content_at = loop.time()  # the silence was the consumer's, not the provider's
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


def _stalled(stall: float | None, by_content: bool) -> UpstreamStalled:
    what = "content (comments and keep-alives aside)" if by_content else "byte"
    return UpstreamStalled(f"no {what} from the upstream for {stall or 0:g} s (the stall deadline)")
