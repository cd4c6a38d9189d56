"""Sluice's exception tree; every error carries a stable ``type`` string for logs, metrics and UI.

    SluiceError
    ├── RequestError            the client's request is wrong (4xx)
    │   ├── BadRequest              400  malformed JSON, missing fields, bad values
    │   ├── ClientProtocolError     400  a WebSocket client broke the ack protocol
    │   ├── UnknownModel            404  no such provider or model
│   ├── UnknownEndpoint         404  a provider API's path that Sluice does not serve
    │   ├── PayloadTooLarge         413  body over the configured limit
    │   ├── UnsupportedMediaType    415  a state change whose body is not JSON
    │   ├── RequestTimeout          408  the body did not arrive in full (server.body_timeout)
    │   ├── UnknownSession          404  no such session id
    │   ├── ResumeBeyondLog         400  a resume id past the last event of the session
    │   ├── Unauthorized            401  no key, or one unknown, malformed, revoked or expired
    │   └── Forbidden               403  the credential may not do this (a model, a role)
    ├── ProviderNotConfigured   500  the provider exists but has no API key
    ├── Overloaded              503  the gateway's ceiling of concurrent streams is reached
    │   └── RateLimited             429  a key's rpm, tpm or stream ceiling is reached
    │       └── BudgetExceeded      429  a key's spend reached its budget
    ├── ClientTooSlow               a client's socket stayed full past the send deadline
    └── UpstreamError           the provider failed; ``retryable`` says whether a retry may help
        ├── UpstreamStatus          the provider answered with an HTTP error status
        ├── UpstreamConnectError    no connection, or it broke before any byte
        │   ├── UpstreamDropped         a connection closed after the request was written
        │   ├── UpstreamHeaderInvalid   a provider header value cannot be sent (not latin-1)
        │   └── UpstreamTLSError        the provider's certificate was refused (CA, hostname)
        ├── UpstreamRefused         an answer that is no stream: taken as a refusal
        │   ├── UpstreamRedirect        a 3xx (the gateway follows no redirect)
        │   ├── UpstreamNotEventStream  a 2xx that is not ``text/event-stream``
        │   └── UpstreamEncoded         a compressed body the gateway did not ask for
        ├── UpstreamBroken          the body broke after the stream began
        ├── UpstreamTooLarge        a line, an event or the stream is over its bound
        └── UpstreamStalled         no content for longer than the stall deadline

Errors raised by the layers below (sockets, TLS, the HTTP parser, sqlite3) are mapped to these
at the boundary (``raise UpstreamConnectError(...) from exc``); callers never catch a library's
exceptions.
"""

from __future__ import annotations


class SluiceError(Exception):
    type = "internal_error"
    status = 500
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RequestError(SluiceError):
    type = "invalid_request"
    status = 400


class BadRequest(RequestError):
    pass


class ClientProtocolError(RequestError):
    """A WebSocket client sent what the protocol does not allow: not an ack, or an ack of an
    id never sent."""

    type = "client_protocol_error"


class UnknownModel(RequestError):
    type = "unknown_model"
    status = 404


class UnknownEndpoint(RequestError):
    """A path under a provider API's endpoints that names a method Sluice does not serve
    (Gemini's ``models/{model}:countTokens``)."""

    type = "not_found"
    status = 404


class PayloadTooLarge(RequestError):
    type = "payload_too_large"
    status = 413


class RequestTimeout(RequestError):
    """The request's body stopped short: its client left, or sent it too slowly and the
    server answered 408 itself (``server.body_timeout``)."""

    type = "request_timeout"
    status = 408


class UnknownSession(RequestError):
    type = "unknown_session"
    status = 404


class UnsupportedMediaType(RequestError):
    type = "unsupported_media_type"
    status = 415


class Unauthorized(RequestError):
    type = "unauthorized"
    status = 401


class Forbidden(RequestError):
    type = "forbidden"
    status = 403


class ResumeBeyondLog(RequestError):
    """A ``Last-Event-ID`` or ``after`` past the session's last event: the client claims
    events the gateway never sent, and no replay can be right."""

    type = "resume_beyond_log"


class ProviderNotConfigured(SluiceError):
    type = "provider_not_configured"
    status = 500


class Overloaded(SluiceError):
    """Admission control: the gateway carries as many streams as it is configured to."""

    type = "gateway_overloaded"
    status = 503

    def __init__(self, message: str, retry_after: float = 1.0, status: int = 503) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class RateLimited(Overloaded):
    """A key's own limit: requests or tokens per minute, or its ceiling of live streams."""

    type = "rate_limited"

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message, retry_after, status=429)


class BudgetExceeded(RateLimited):
    type = "budget_exceeded"


class ClientTooSlow(SluiceError):
    type = "client_too_slow"
    status = 408


class UpstreamError(SluiceError):
    type = "upstream_error"
    status = 502
    retryable = True


class UpstreamStatus(UpstreamError):
    """The provider answered with an error status before streaming."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str,
        retryable: bool,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.retryable = retryable
        self.retry_after = retry_after


class UpstreamConnectError(UpstreamError):
    type = "upstream_unreachable"


class UpstreamDropped(UpstreamConnectError):
    """A connection closed after the request was written to it and before any answer: the
    provider may have read it, so it is an attempt, never sent again without the retry
    policy's say."""

    type = "upstream_dropped"


class UpstreamHeaderInvalid(UpstreamConnectError):
    """A header the gateway would send the provider (its key, a configured header) cannot be
    written: a character outside latin-1, or a line break. A configuration error."""

    type = "upstream_header_invalid"
    status = 500
    retryable = False


class UpstreamRefused(UpstreamError):
    """The provider answered, but not with an event stream: a refusal, never a stream."""

    retryable = False


class UpstreamRedirect(UpstreamRefused):
    type = "upstream_redirect"


class UpstreamNotEventStream(UpstreamRefused):
    type = "upstream_not_event_stream"


class UpstreamEncoded(UpstreamRefused):
    type = "upstream_encoded"


class UpstreamTLSError(UpstreamConnectError):
    """The TLS handshake failed: a certificate from a CA the gateway does not trust, one for
    another hostname, or a client certificate refused. A retry meets the same certificate."""

    type = "upstream_tls"
    retryable = False


class UpstreamBroken(UpstreamError):
    type = "upstream_disconnected"


class UpstreamTooLarge(UpstreamError):
    """A line, an event, or the whole stream went past its bound (``[streams]`` ``max_*``)."""

    type = "upstream_too_large"
    retryable = False


class UpstreamStalled(UpstreamError):
    type = "upstream_stalled"
    status = 504


def classify_status(status: int) -> tuple[str, bool]:
    """The stable error type and retryability of an upstream HTTP error status."""
    if status == 429:
        return "rate_limited", True
    if status in (529, 503):
        return "overloaded", True
    if status in (401, 403):
        return "upstream_auth", False
    if status == 404:
        return "unknown_model", False
    if status == 408 or status >= 500:
        return "upstream_error", True
    return "upstream_rejected", False
