"""OTLP/HTTP (protobuf) span export: the SDK's exporter with Reverb's span encoder
(`otlp_encoding`).

Everything but the encoding (endpoint, headers, timeout, compression, certificates, the
size limit, retries, the exporter's own metrics) is the SDK's, configured by its
`OTEL_*` variables. The SDK's `export` encodes inline, so this is that method with the
encoder swapped (opentelemetry-exporter-otlp-proto-http 1.45: the version uv.lock pins;
tests/e2e/test_traces.py exports through it). Imported only when spans are exported over
HTTP (`export.span_exporter`).
"""

import logging
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.http._common import (
    RequestPayloadTooLargeError,
    _is_request_too_large,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE

from reverb_telemetry.otlp_encoding import encode_request

_logger = logging.getLogger(__name__)


class HttpSpanExporter(OTLPSpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            _logger.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        with self._metrics.export_operation(len(spans)) as result:
            try:
                serialized = encode_request(spans)
            except Exception as error:
                _logger.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE
            if _is_request_too_large(serialized, self._max_request_size):
                _logger.warning(
                    "Dropping span batch: serialized size %d bytes exceeds max_request_size "
                    "%d bytes.",
                    len(serialized),
                    self._max_request_size,
                )
                result.error = RequestPayloadTooLargeError(
                    f"Serialized span request size {len(serialized)} bytes exceeds "
                    f"max_request_size {self._max_request_size} bytes."
                )
                return SpanExportResult.FAILURE
            exported = self._client.export(serialized)
            if not exported.success:
                result.error = exported.error
                result.error_attrs = (
                    {HTTP_RESPONSE_STATUS_CODE: exported.status_code}
                    if exported.status_code is not None
                    else None
                )
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
