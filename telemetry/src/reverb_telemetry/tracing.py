"""OpenTelemetry context carried across processes as W3C `traceparent` strings.

The HTTP request's context goes into job payloads (a `traceparent` field) and
into gRPC metadata, so that the run and each step join the event's trace.
Exporters are added by `configure_tracing`'s caller; without one, spans still
get real ids, so propagation works end to end.
"""

from collections.abc import Iterable, Mapping

from opentelemetry import context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()


def configure_tracing(service_name: str) -> TracerProvider:
    """Install a tracer provider for this process and return it (to add exporters to)."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    trace.set_tracer_provider(provider)
    return provider


def spans_exported(provider: trace.TracerProvider | None = None) -> bool:
    """Whether finished spans go anywhere: False when the SDK tracer provider (by default the
    installed one) has no span processor (no exporter was added), so that fine-grained
    spans (one per step) can be skipped. Coarse spans still carry the trace context."""
    if provider is None:
        provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        return True
    processor = getattr(provider, "_active_span_processor", None)
    return bool(getattr(processor, "_span_processors", True))


def current_traceparent() -> str | None:
    """The traceparent of the current span, or None outside any span."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def context_from_traceparent(traceparent: str | None) -> context.Context:
    """A context whose parent span is the one `traceparent` names (empty when None)."""
    if not traceparent:
        return context.Context()
    span_context = _version_00(traceparent)
    if span_context is None:
        return _propagator.extract({"traceparent": traceparent})
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context))


def _version_00(traceparent: str) -> trace.SpanContext | None:
    """The span context of a well-formed version-00 traceparent, parsed without the
    propagator's regular expression (a host reads one per invocation); None otherwise."""
    if len(traceparent) != 55 or not traceparent.startswith("00-"):
        return None
    version, trace_id, span_id, flags = traceparent.split("-", 3)
    if len(trace_id) != 32 or len(span_id) != 16 or len(flags) != 2:
        return None
    if not _HEX.issuperset(trace_id + span_id + flags):
        return None
    span_context = trace.SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(span_id, 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(int(flags, 16)),
    )
    return span_context if span_context.is_valid else None


_HEX = frozenset("0123456789abcdef")


def grpc_metadata() -> tuple[tuple[str, str], ...]:
    """The current trace context as gRPC metadata."""
    traceparent = current_traceparent()
    return (("traceparent", traceparent),) if traceparent else ()


def context_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> context.Context:
    """The trace context sent in gRPC invocation metadata."""
    carrier: Mapping[str, str] = {
        key: value.decode() if isinstance(value, bytes) else value
        for key, value in (metadata or ())
    }
    return _propagator.extract(carrier)
