"""The gateway's server spans: real ones when spans are exported, else only their context.

A call's span context is what the gateway stores (the events' fan-out jobs carry
its traceparent), so a call always gets one: under the caller's trace when it
sent a traceparent, else a new trace. Without an exporter the SDK would build a
span for nothing; a non-recording span with fresh ids, made current for the
call, carries the same context for a fraction of the cost.
"""

import contextlib
import random
from collections.abc import Iterator

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind

from reverb_telemetry import spans_exported

tracer = trace.get_tracer("reverb.ingress_gateway")

# Ids as the OpenTelemetry SDK makes them (`RandomIdGenerator`): unique, not secret.
_random = random.Random()


@contextlib.contextmanager
def server_span(name: str, parent: context.Context | None) -> Iterator[trace.Span]:
    """The span of one call (current while it runs), a child of `parent` if given."""
    if spans_exported():
        with tracer.start_as_current_span(
            name,
            context=parent,
            kind=SpanKind.SERVER,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield span
        return
    base = parent if parent is not None else context.get_current()
    outer = trace.get_current_span(base).get_span_context()
    trace_id = outer.trace_id if outer.is_valid else _random.getrandbits(128) or 1
    flags = outer.trace_flags if outer.is_valid else trace.TraceFlags(trace.TraceFlags.SAMPLED)
    span = trace.NonRecordingSpan(
        trace.SpanContext(trace_id, _random.getrandbits(64) or 1, False, flags)
    )
    token = context.attach(trace.set_span_in_context(span, base))
    try:
        yield span
    finally:
        context.detach(token)
