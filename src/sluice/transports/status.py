"""The errors every transport raises alike for an answer it refuses: an error status (with the
provider's own message, its stable type and ``retry-after``), or an answer below 400 that is no
stream (a redirect, not ``text/event-stream``, compressed): the fast client's own rules."""

from __future__ import annotations

from collections.abc import Mapping

from sluice.errors import UpstreamDropped, UpstreamError, UpstreamStatus, classify_status
from sluice.upstream import _error_message, _origin, _refusal, _retry_after


def status_error(status: int, raw: bytes, retry_after: str | None) -> UpstreamStatus:
    kind, retryable = classify_status(status)
    return UpstreamStatus(
        status,
        _error_message(raw) or f"upstream answered HTTP {status}",
        type=kind,
        retryable=retryable,
        retry_after=_retry_after(retry_after),
    )


def refusal(status: int, headers: Mapping[str, str]) -> UpstreamError | None:
    """Why an answer below 400 is not a stream (``UpstreamRedirect``,
    ``UpstreamNotEventStream``, ``UpstreamEncoded``), or None for an event stream."""
    encoding = headers.get("content-encoding", "identity").strip().lower() or "identity"
    return _refusal(status, headers, encoding)


def dropped(url: str) -> UpstreamDropped:
    """The connection closed after the request was written and before any answer: the provider
    may be working on it, so it is an attempt (the retry policy decides), never resent."""
    return UpstreamDropped(
        f"{_origin(url)} closed the connection after the request was written, before any answer"
    )
