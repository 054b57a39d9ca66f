"""Trace context read from traceparents; per-step spans skipped only when nothing exports."""

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from reverb_telemetry import context_from_traceparent, spans_exported
from reverb_telemetry.export import ExportConfigurationError, span_exporter
from reverb_telemetry.tracing import tracer_provider

PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"


def test_a_provider_without_processors_exports_nothing() -> None:
    assert not spans_exported(TracerProvider())


def test_a_provider_with_an_exporter_exports() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))

    assert spans_exported(provider)


def test_an_unknown_provider_is_assumed_to_export() -> None:
    assert spans_exported(NoOpTracerProvider())


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later",
        "not a traceparent",
    ],
)
def test_a_traceparent_is_read_as_the_w3c_propagator_reads_it(traceparent: str) -> None:
    expected = TraceContextTextMapPropagator().extract({"traceparent": traceparent})

    ours = trace.get_current_span(context_from_traceparent(traceparent)).get_span_context()

    assert ours == trace.get_current_span(expected).get_span_context()


def test_nothing_is_exported_without_an_endpoint() -> None:
    assert span_exporter({}) is None
    assert not spans_exported(tracer_provider("reverb-worker", {}))


@pytest.mark.parametrize(
    ("environ", "exporter"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, HttpExporter),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", PROTOCOL: "grpc"},
            GrpcExporter,
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317",
                PROTOCOL: "http/protobuf",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            },
            GrpcExporter,
        ),
    ],
)
def test_the_protocol_picks_the_exporter(environ: dict[str, str], exporter: type) -> None:
    assert isinstance(span_exporter(environ), exporter)


def test_an_unknown_protocol_is_refused() -> None:
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", PROTOCOL: "http/json"}

    with pytest.raises(ExportConfigurationError, match="'http/json' is not supported"):
        span_exporter(environ)


def test_the_service_name_defaults_per_service_and_otel_service_name_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    default = tracer_provider("reverb-host", {}).resource.attributes
    assert default["service.name"] == "reverb-host"
    assert default["deployment.environment"] == "test"

    monkeypatch.setenv("OTEL_SERVICE_NAME", "shop-host")
    assert tracer_provider("reverb-host", {}).resource.attributes["service.name"] == "shop-host"
