"""OpenTelemetry for the gateway: a span per session, its attempts and its tools, and the GenAI
metrics, exported over OTLP (docs/observability.md).

Off unless ``[telemetry] enabled = true`` (and ``OTEL_SDK_DISABLED`` is not ``true``); while
off, nothing of OpenTelemetry is imported and no session is told to anyone more. Where the
data goes is said by the standard ``OTEL_*`` environment variables, read by the SDK.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from sluice.config import ConfigError, TelemetrySettings

if TYPE_CHECKING:
    from sluice.otel.observer import SessionTelemetry

#: the W3C trace context headers a client may send (https://www.w3.org/TR/trace-context/)
TRACE_HEADERS = ("traceparent", "tracestate")
#: request headers whose value is the client's id for its request, first found wins
CORRELATION_HEADERS = ("x-request-id", "x-correlation-id")
#: a correlation id longer than this, or with characters outside printable ASCII, is ignored
CORRELATION_MAX = 128


def enabled(settings: TelemetrySettings) -> bool:
    """Whether the gateway exports telemetry: enabled in the file, not disabled by the
    standard switch of the environment."""
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    return settings.enabled and not disabled


def open_telemetry(settings: TelemetrySettings, node: str) -> SessionTelemetry | None:
    """The sessions' observer that exports their spans and metrics, or None while off."""
    if not enabled(settings):
        return None
    try:
        from sluice.otel.observer import SessionTelemetry
        from sluice.otel.providers import build_providers
    except ImportError as exc:
        raise ConfigError(
            "[telemetry] enabled needs the OpenTelemetry SDK and OTLP exporters: install "
            f"sluice with its otel extra (pip install 'sluice[otel]'); {exc}"
        ) from exc
    tracer_provider, meter_provider = build_providers(node)
    return SessionTelemetry(tracer_provider, meter_provider)


def client_trace(headers: Mapping[str, str]) -> tuple[dict[str, str] | None, str | None]:
    """A client request's trace context headers (None without a ``traceparent``) and its
    correlation id (None if it sent none, or one too long or unprintable)."""
    context = None
    if "traceparent" in headers:
        context = {name: headers[name] for name in TRACE_HEADERS if name in headers}
    correlation = None
    for name in CORRELATION_HEADERS:
        value = headers.get(name)
        if value is not None:
            if 0 < len(value) <= CORRELATION_MAX and value.isascii() and value.isprintable():
                correlation = value
            break
    return context, correlation
