"""A failure to connect, as every transport reports it: a refused certificate is an
``UpstreamTLSError`` (``upstream_tls``, not retried), anything else an ``UpstreamConnectError``
(``upstream_unreachable``). The libraries wrap ssl's errors in their own (httpx's
``ConnectError``, aiohttp's ``ClientConnectorCertificateError``): the chain is searched."""

from __future__ import annotations

import ssl

from sluice.errors import UpstreamConnectError, UpstreamTLSError


def connect_failure(message: str, exc: BaseException) -> UpstreamConnectError:
    """``message`` (which names the origin, never its query), and what ``exc`` says."""
    cause = _tls_cause(exc)
    if cause is not None:
        return UpstreamTLSError(f"{message}: {describe(cause)}")
    return UpstreamConnectError(f"{message}: {describe(exc)}")


def _tls_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError | ssl.CertificateError):
            return current
        if isinstance(current, ssl.SSLError) and "certificate" in str(current).lower():
            return current
        for arg in getattr(current, "args", ()):  # aiohttp keeps ssl's error as an argument
            if isinstance(arg, ssl.SSLError) and id(arg) not in seen:
                return _tls_cause(arg) or None
        current = current.__cause__ or current.__context__
    return None


def describe(exc: BaseException) -> str:
    return type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
