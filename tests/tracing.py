"""Spans recorded in the test process, by Reverb's own tracer provider."""

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from reverb_telemetry.tracing import PresetIds, tracer_provider


def recorded_spans() -> InMemorySpanExporter:
    """Finished spans, recorded by the process's tracer provider (Reverb's, installed if
    none is: a run's span needs its preset ids)."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = tracer_provider("reverb-tests", {})
        trace.set_tracer_provider(provider)
    assert isinstance(provider.id_generator, PresetIds), "a foreign tracer provider is installed"
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter
