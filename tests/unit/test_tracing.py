"""Trace context read from traceparents; per-step spans skipped only when nothing exports."""

import uuid

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from reverb_telemetry import context_from_traceparent, current_traceparent, spans_exported
from reverb_telemetry.export import ExportConfigurationError, span_exporter
from reverb_telemetry.runs import run_context, run_span, run_trace
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


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "not a traceparent",
        None,
    ],
)
def test_the_current_traceparent_is_the_w3c_propagators(traceparent: str | None) -> None:
    context = context_from_traceparent(traceparent)
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context)

    token = otel_context.attach(context)
    try:
        assert current_traceparent() == carrier.get("traceparent")
    finally:
        otel_context.detach(token)


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


def test_a_runs_span_ids_come_from_its_id() -> None:
    run_id = "01a235af-51d1-7cd5-9cb2-62608374f17e"
    value = uuid.UUID(run_id).int
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    joined = run_trace(run_id, traceparent)
    alone = run_trace(run_id, None)

    assert joined is not None and alone is not None
    assert joined.span_id == alone.span_id == value & (2**64 - 1)
    assert joined.started_ns == alone.started_ns == (value >> 80) * 1_000_000
    assert joined.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    # A run no request started (no traceparent stored) is a trace named after its id.
    assert alone.trace_id == value
    assert run_trace("run-7", None) is None
    assert run_trace(str(uuid.uuid4()), None) is None


def test_a_runs_span_is_made_with_its_own_ids_and_start() -> None:
    exporter = InMemorySpanExporter()
    provider = tracer_provider("reverb-worker", {})
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    run_id = "01a235af-51d1-7cd5-9cb2-62608374f17e"
    child_parent = trace.get_current_span(run_context(run_id, None)).get_span_context()

    span = run_span(provider.get_tracer("test"), run_id, None, "run f", {})
    assert span is not None
    span.end()

    (made,) = exporter.get_finished_spans()
    assert made.context is not None and made.parent is None
    assert (made.context.trace_id, made.context.span_id) == (
        child_parent.trace_id,
        child_parent.span_id,
    )
    assert made.start_time == run_trace(run_id, None).started_ns  # type: ignore[union-attr]
