"""Per-step spans are skipped only when no span would be exported."""

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider

from reverb_telemetry import spans_exported


def test_a_provider_without_processors_exports_nothing() -> None:
    assert not spans_exported(TracerProvider())


def test_a_provider_with_an_exporter_exports() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))

    assert spans_exported(provider)


def test_an_unknown_provider_is_assumed_to_export() -> None:
    assert spans_exported(NoOpTracerProvider())
