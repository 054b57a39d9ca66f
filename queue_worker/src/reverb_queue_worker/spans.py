"""The worker's spans (a fan-out, a run's advance), made only when spans are exported.

Without an exporter a span would cost CPU for nothing: the job's traceparent is
passed on as it is, so the trace still joins up once an exporter is added.
"""

import contextlib
from collections.abc import Iterator, Mapping

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from reverb_telemetry import context_from_traceparent, current_traceparent, spans_exported

_tracer = trace.get_tracer("reverb.queue_worker")


@contextlib.contextmanager
def job_span(
    name: str, traceparent: str | None, attributes: Mapping[str, AttributeValue]
) -> Iterator[trace.Span]:
    """A span under `traceparent` when spans are exported, else a span that records nothing."""
    if not spans_exported():
        yield trace.INVALID_SPAN
        return
    with _tracer.start_as_current_span(
        name, context=context_from_traceparent(traceparent), attributes=attributes
    ) as span:
        yield span


def traceparent_within(traceparent: str | None) -> str | None:
    """The traceparent to pass on from inside a `job_span` begun under `traceparent`."""
    if not spans_exported():
        return traceparent
    return current_traceparent() or traceparent
