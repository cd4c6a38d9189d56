"""The tracer and meter providers, built from the standard ``OTEL_*`` environment variables.

- ``OTEL_TRACES_EXPORTER``, ``OTEL_METRICS_EXPORTER``: ``otlp`` (the default), ``console``
  or ``none`` (that signal is not exported);
- ``OTEL_EXPORTER_OTLP_PROTOCOL`` (or ``OTEL_EXPORTER_OTLP_{TRACES,METRICS}_PROTOCOL``):
  ``http/protobuf`` (the default, port 4318) or ``grpc`` (port 4317);
- everything else (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``_HEADERS``, ``_TIMEOUT``,
  ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``,
  ``OTEL_BSP_*``, ``OTEL_METRIC_EXPORT_INTERVAL``) is read by the SDK and its exporters; the
  one default the gateway changes is the spans' batch (``SPAN_BATCH``).

The providers are the gateway's own, not the process's global ones: two gateways in one
process (the tests) each export their own.
"""

from __future__ import annotations

import os

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from sluice import __version__
from sluice.config import ConfigError

EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = ("http/protobuf", "grpc")

#: spans per export unless ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` says otherwise. The SDK's export
#: thread encodes a batch holding the interpreter's lock in long stretches, and the event loop
#: that relays the streams waits meanwhile: a batch of 64 takes a few milliseconds to encode,
#: the SDK's 512 tens of them (docs/observability.md#traces)
SPAN_BATCH = 64


def build_providers(node: str) -> tuple[TracerProvider | None, MeterProvider | None]:
    """The providers of the signals whose exporter is not ``none``; ``node`` is this
    process's name (``service.instance.id``)."""
    resource = _resource(node)
    tracer_provider = meter_provider = None
    traces = _exporter_name("TRACES")
    if traces != "none":
        tracer_provider = TracerProvider(resource=resource)
        batch = None if os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") else SPAN_BATCH
        processor = BatchSpanProcessor(_span_exporter(traces), max_export_batch_size=batch)
        tracer_provider.add_span_processor(processor)
    metrics = _exporter_name("METRICS")
    if metrics != "none":
        reader = PeriodicExportingMetricReader(_metric_exporter(metrics))
        meter_provider = MeterProvider(metric_readers=[reader], resource=resource)
    return tracer_provider, meter_provider


def _resource(node: str) -> Resource:
    """What the environment says of the service (``OTEL_SERVICE_NAME``,
    ``OTEL_RESOURCE_ATTRIBUTES``), over the gateway's own defaults."""
    detected = Resource.create()
    attributes = detected.attributes
    ours: dict[str, str] = {}
    if str(attributes.get("service.name", "")).startswith("unknown_service"):
        ours["service.name"] = "sluice"
    if "service.version" not in attributes:
        ours["service.version"] = __version__
    if "service.instance.id" not in attributes:
        ours["service.instance.id"] = node
    return detected.merge(Resource(ours))


def _exporter_name(signal: str) -> str:
    variable = f"OTEL_{signal}_EXPORTER"
    name = os.environ.get(variable, "otlp").strip().lower() or "otlp"
    if name not in EXPORTERS:
        raise ConfigError(f"{variable} must be one of {', '.join(EXPORTERS)}, not {name!r}")
    return name


def _protocol(signal: str) -> str:
    variable = f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"
    protocol = os.environ.get(variable) or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    protocol = (protocol or "http/protobuf").strip().lower()
    if protocol not in PROTOCOLS:
        raise ConfigError(
            f"{variable} (or OTEL_EXPORTER_OTLP_PROTOCOL) must be one of "
            f"{', '.join(PROTOCOLS)}, not {protocol!r}"
        )
    return protocol


def _span_exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if _protocol("TRACES") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _metric_exporter(name: str) -> MetricExporter:
    if name == "console":
        return ConsoleMetricExporter()
    if _protocol("METRICS") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter()
