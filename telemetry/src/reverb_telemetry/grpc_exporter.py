"""OTLP/gRPC span export: the SDK's exporter with Reverb's span encoder (`otlp_encoding`).

Everything but the encoding (endpoint, headers, timeout, compression, certificates,
retries, the exporter's own metrics) is the SDK's, configured by its `OTEL_*` variables.
Imported only when spans are exported over gRPC (`export.span_exporter`).
"""

from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan

from reverb_telemetry.otlp_encoding import encode_request


class GrpcSpanExporter(OTLPSpanExporter):
    def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        """The request (the exporter mixin's one encoding hook, called per attempt):
        Reverb's bytes, parsed by upb (C, about a microsecond a span), since the stub
        takes a message."""
        return ExportTraceServiceRequest.FromString(encode_request(data))
