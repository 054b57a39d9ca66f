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
    return _propagator.extract({"traceparent": traceparent})


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
