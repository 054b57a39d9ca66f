"""OTLP/gRPC span export: the SDK's exporter with Reverb's span encoder (`otlp_encoding`).

Everything but the encoding (endpoint, headers, timeout, compression, certificates,
retries, the exporter's own metrics) is the SDK's, configured by its `OTEL_*` variables.
The request goes out as the encoder's bytes: the stub is the generated one's `Export`
call without its request serializer (the generated stub would take a message, which
upb would parse from those bytes only to serialize it again). Imported only when spans
are exported over gRPC (`export.span_exporter`).
"""

from collections.abc import Sequence

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace import ReadableSpan

from reverb_telemetry.otlp_encoding import encode_request

# The generated stub's method (opentelemetry-proto's trace_service_pb2_grpc).
_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class _BytesStub:
    """`TraceServiceStub` with an `Export` that sends a serialized request."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.Export: grpc.UnaryUnaryMultiCallable[bytes, ExportTraceServiceResponse] = (
            channel.unary_unary(  # noqa: N815 (the stub's name)
                _EXPORT,
                request_serializer=None,
                response_deserializer=ExportTraceServiceResponse.FromString,
            )
        )


class GrpcSpanExporter(OTLPSpanExporter):
    def _initialize_channel_and_stub(self) -> None:
        """The SDK's channel (also made again by its reconnection), with the stub above."""
        super()._initialize_channel_and_stub()  # type: ignore[no-untyped-call]
        self._client = _BytesStub(self._channel)  # type: ignore[assignment,arg-type]

    def _translate_data(self, data: Sequence[ReadableSpan]) -> bytes:  # type: ignore[override]
        """The request (the exporter mixin's one encoding hook, called per attempt)."""
        return encode_request(data)
