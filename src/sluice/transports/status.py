"""The errors every transport raises alike for an answer it refuses: an error status (with the
provider's own message, its stable type and ``retry-after``), or a body in a content-encoding
the gateway did not ask for."""

from __future__ import annotations

from sluice.errors import UpstreamConnectError, UpstreamStatus, classify_status
from sluice.upstream import _error_message, _retry_after


def status_error(status: int, raw: bytes, retry_after: str | None) -> UpstreamStatus:
    kind, retryable = classify_status(status)
    return UpstreamStatus(
        status,
        _error_message(raw) or f"upstream answered HTTP {status}",
        type=kind,
        retryable=retryable,
        retry_after=_retry_after(retry_after),
    )


def unsupported_encoding(encoding: str) -> UpstreamConnectError:
    return UpstreamConnectError(
        f"unsupported content-encoding {encoding[:50]!r} (the gateway asks for identity)"
    )
