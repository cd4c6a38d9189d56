"""OTLP receivers for the tests: a real OTLP/HTTP server (protobuf bodies on ``/v1/traces`` and
``/v1/metrics``) and a real OTLP/gRPC server, both on loopback, both decoding what they are
sent with ``opentelemetry-proto`` into plain spans and metric points."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from sluice.gateway.server import RunningServer
from tests.conftest import read_request_body

#: OTLP's span kinds by their protobuf number
KINDS = {
    ProtoSpan.SPAN_KIND_INTERNAL: "internal",
    ProtoSpan.SPAN_KIND_SERVER: "server",
    ProtoSpan.SPAN_KIND_CLIENT: "client",
}


@dataclass
class SpanSeen:
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    status: int
    start: int
    end: int
    resource: dict[str, Any]
    scope: str


@dataclass
class PointSeen:
    """One histogram data point: its attributes, count and sum."""

    attributes: dict[str, Any]
    count: int
    sum: float
    bounds: list[float]


@dataclass
class Received:
    """What a receiver was sent, decoded."""

    spans: list[SpanSeen] = field(default_factory=list)
    #: the latest export's points of each metric (cumulative: the last holds them all)
    metrics: dict[str, list[PointSeen]] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def traces(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = attributes_of(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        SpanSeen(
                            name=span.name,
                            kind=KINDS.get(span.kind, str(span.kind)),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes=attributes_of(span.attributes),
                            status=span.status.code,
                            start=span.start_time_unix_nano,
                            end=span.end_time_unix_nano,
                            resource=resource,
                            scope=scope_spans.scope.name,
                        )
                    )

    def metrics_request(self, request: metrics_service_pb2.ExportMetricsServiceRequest) -> None:
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if not metric.HasField("histogram"):
                        continue
                    self.units[metric.name] = metric.unit
                    self.metrics[metric.name] = [
                        PointSeen(
                            attributes_of(point.attributes),
                            point.count,
                            point.sum,
                            list(point.explicit_bounds),
                        )
                        for point in metric.histogram.data_points
                    ]

    def named(self, name: str) -> list[SpanSeen]:
        return [span for span in self.spans if span.name == name]

    def children(self, parent: SpanSeen) -> list[SpanSeen]:
        return [span for span in self.spans if span.parent_span_id == parent.span_id]


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(value_of(v) for v in value.array_value.values)
    return None if kind is None else getattr(value, kind)


def attributes_of(pairs: Any) -> dict[str, Any]:
    return {pair.key: value_of(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


class OtlpHttpReceiver:
    """An ASGI app that takes OTLP/HTTP exports (protobuf, gzip or not) and keeps them."""

    def __init__(self) -> None:
        self.received = Received()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = await read_request_body(receive)
        headers = dict(scope["headers"])
        if headers.get(b"content-encoding") == b"gzip":
            body = gzip.decompress(body)
        path = scope["path"]
        self.received.requests.append(f"{scope['method']} {path}")
        reply: bytes
        if path == "/v1/traces":
            traces = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            self.received.traces(traces)
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        elif path == "/v1/metrics":
            metrics = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
            self.received.metrics_request(metrics)
            reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        head = [(b"content-type", b"application/x-protobuf")]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": reply})


@asynccontextmanager
async def otlp_http() -> AsyncIterator[tuple[str, Received]]:
    """An OTLP/HTTP receiver on loopback: its base URL (``OTEL_EXPORTER_OTLP_ENDPOINT``)."""
    receiver = OtlpHttpReceiver()
    async with RunningServer(receiver) as server:
        yield server.url, receiver.received


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.received.requests.append("grpc TraceService/Export")
        self.received.traces(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    async def Export(
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: Any
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        self.received.requests.append("grpc MetricsService/Export")
        self.received.metrics_request(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


@asynccontextmanager
async def otlp_grpc() -> AsyncIterator[tuple[str, Received]]:
    """An OTLP/gRPC receiver on loopback (plain text): its endpoint URL."""
    received = Received()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(received), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(received), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        await server.stop(grace=None)
