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


def client_trace(headers: Mapping[str, str]) -> dict[str, str] | None:
    """A client request's trace context headers; None without a ``traceparent``. (Its
    correlation id is the request's own, ``sluice.logs.CORRELATION_ID``.)"""
    if "traceparent" not in headers:
        return None
    return {name: headers[name] for name in TRACE_HEADERS if name in headers}
