"""OTLP export of spans, configured by the OpenTelemetry SDK's own environment variables.

Spans are exported when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
is set. `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` (else `OTEL_EXPORTER_OTLP_PROTOCOL`) picks the
exporter: `http/protobuf` (the specification's default) or `grpc`, Jaeger's two OTLP
receivers. Everything else (endpoint, headers, timeout, compression, certificates, the
batch processor's `OTEL_BSP_*`, the sampler, resource attributes, `OTEL_SERVICE_NAME`) is
read by the SDK itself, as its documentation describes: nothing here re-implements it.
The exporters are the SDK's, with Reverb's span encoder (`otlp_encoding`) in place of
theirs (`grpc_exporter`, `http_exporter`).
"""

from collections.abc import Mapping

from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
)
from opentelemetry.sdk.trace.export import SpanExporter

PROTOCOLS = ("grpc", "http/protobuf")
DEFAULT_PROTOCOL = "http/protobuf"


class ExportConfigurationError(ValueError):
    """The OTLP export variables name something this build cannot export with."""


def exporting(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for OTLP export of spans."""
    return bool(
        environ.get(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "").strip()
        or environ.get(OTEL_EXPORTER_OTLP_ENDPOINT, "").strip()
    )


def protocol(environ: Mapping[str, str]) -> str:
    """The OTLP protocol the environment selects for spans."""
    chosen = (
        environ.get(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "").strip()
        or environ.get(OTEL_EXPORTER_OTLP_PROTOCOL, "").strip()
        or DEFAULT_PROTOCOL
    ).lower()
    if chosen not in PROTOCOLS:
        raise ExportConfigurationError(
            f"OTLP protocol {chosen!r} is not supported for traces: use one of "
            + ", ".join(PROTOCOLS)
        )
    return chosen


def span_exporter(environ: Mapping[str, str]) -> SpanExporter | None:
    """The OTLP span exporter the environment asks for (None when it asks for none);
    the exporter reads its endpoint, headers and the rest from the environment itself."""
    if not exporting(environ):
        return None
    if protocol(environ) == "grpc":
        from reverb_telemetry.grpc_exporter import GrpcSpanExporter

        return GrpcSpanExporter()
    from reverb_telemetry.http_exporter import HttpSpanExporter

    return HttpSpanExporter()
