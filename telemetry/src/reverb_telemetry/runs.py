"""A run's span: known by every process before it ends, because its ids come from the run's.

A run lasts from its creation to its end, across invocations, sleeps and workers, so no
process holds its span open. Its span id is the low 64 bits of the run id (a UUIDv7:
random bits), its start the id's millisecond timestamp, and its trace the one its
`traceparent` names, or, for a run no request started (none stored), the run id's 128 bits.
So each `advance_run` and each wait names the run's span as its parent while the run goes
on (`run_context`), and the worker that ends the run makes the span itself, with those
ids, from the run's creation to now (`run_span`). A run id that is not a UUID gets no
span of its own: its children hang from its traceparent, as before.
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import context, trace
from opentelemetry.util.types import AttributeValue

from reverb_telemetry.spans import Tracer
from reverb_telemetry.tracing import context_from_traceparent, preset_ids

_LOW_64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class RunTrace:
    trace_id: int
    span_id: int
    flags: trace.TraceFlags
    # Unix nanoseconds when the run was created.
    started_ns: int
    # The run span's parent: the span whose context `traceparent` holds, or none.
    parent: context.Context


def run_trace(run_id: str, traceparent: str | None) -> RunTrace | None:
    """The run span's identity, or None for a run id that is not a UUIDv7."""
    try:
        value = uuid.UUID(run_id)
    except ValueError:
        return None
    if value.version != 7 or not value.int & _LOW_64:
        return None
    parent = context_from_traceparent(traceparent)
    outer = trace.get_current_span(parent).get_span_context()
    if outer.is_valid:
        trace_id, flags = outer.trace_id, outer.trace_flags
    else:
        trace_id, flags = value.int, trace.TraceFlags(trace.TraceFlags.SAMPLED)
    started_ns = (value.int >> 80) * 1_000_000
    return RunTrace(trace_id, value.int & _LOW_64, flags, started_ns, parent)


def run_context(run_id: str, traceparent: str | None) -> context.Context:
    """A context whose current span is the run's (as a remote parent): where its
    invocations and waits go. Falls back to `traceparent`'s for a run without ids."""
    identity = run_trace(run_id, traceparent)
    if identity is None:
        return context_from_traceparent(traceparent)
    span_context = trace.SpanContext(
        identity.trace_id, identity.span_id, is_remote=True, trace_flags=identity.flags
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context))


def run_span(
    tracer: trace.Tracer | Tracer,
    run_id: str,
    traceparent: str | None,
    name: str,
    attributes: Mapping[str, AttributeValue],
) -> trace.Span | None:
    """The run's span, begun at the run's creation with its own ids; the caller records
    the outcome and ends it. None for a run id without them."""
    identity = run_trace(run_id, traceparent)
    if identity is None:
        return None
    with preset_ids(identity.trace_id, identity.span_id):
        return tracer.start_span(
            name,
            context=identity.parent,
            kind=trace.SpanKind.INTERNAL,
            attributes=attributes,
            start_time=identity.started_ns,
        )
