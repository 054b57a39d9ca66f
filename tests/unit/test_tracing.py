"""Trace context read from traceparents; per-step spans skipped only when nothing exports."""

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from reverb_telemetry import context_from_traceparent, spans_exported


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
