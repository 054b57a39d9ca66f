"""OpenTelemetry context carried across processes as W3C `traceparent` strings.

The HTTP request's context goes into job payloads (a `traceparent` field) and
into gRPC metadata, so that the run and each step join the event's trace.
Exporters are added by `configure_tracing`'s caller; without one, spans still
get real ids, so propagation works end to end.
"""

import contextlib
import contextvars
import os
from collections.abc import Iterable, Iterator, Mapping

from opentelemetry import context, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from reverb_telemetry.export import span_exporter

_propagator = TraceContextTextMapPropagator()

_preset: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "reverb_preset_ids", default=None
)


class PresetIds(RandomIdGenerator):
    """Random ids, except inside `preset_ids`: a span whose ids were known before it began
    (a run's, which its invocations name as their parent while it lasts). The trace id is
    used only by a span without a parent."""

    def generate_span_id(self) -> int:
        preset = _preset.get()
        return super().generate_span_id() if preset is None else preset[1]

    def generate_trace_id(self) -> int:
        preset = _preset.get()
        return super().generate_trace_id() if preset is None else preset[0]


@contextlib.contextmanager
def preset_ids(trace_id: int, span_id: int) -> Iterator[None]:
    """The span started inside gets these ids (with a provider from `tracer_provider`)."""
    token = _preset.set((trace_id, span_id))
    try:
        yield
    finally:
        _preset.reset(token)


def tracer_provider(default_service_name: str, environ: Mapping[str, str]) -> TracerProvider:
    """A tracer provider configured by the SDK from the `OTEL_*` variables (resource,
    sampler, batch processor), exporting over OTLP when `environ` sets an endpoint.

    `OTEL_SERVICE_NAME` (or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`) wins over
    `default_service_name`."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service_name}))
    provider = TracerProvider(resource=resource, id_generator=PresetIds())
    exporter = span_exporter(environ)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def configure_tracing(
    default_service_name: str, environ: Mapping[str, str] | None = None
) -> TracerProvider:
    """Install this process's tracer provider (`tracer_provider`) and return it; shut it
    down when the process stops, so the spans still batched are sent. The `OTEL_*`
    variables are the OpenTelemetry SDK's configuration, read from the process
    environment (`environ` defaults to it), as the SDK reads them."""
    provider = tracer_provider(default_service_name, os.environ if environ is None else environ)
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
    """The traceparent of the current span, or None outside any span: what the W3C
    propagator's `inject` writes as `traceparent` (written here without its carrier and
    its `tracestate`, which no caller sends: the worker reads one per invocation)."""
    span_context = trace.get_current_span().get_span_context()
    if span_context == trace.INVALID_SPAN_CONTEXT:
        return None
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}"
        f"-{span_context.trace_flags:02x}"
    )


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


def record_error(span: trace.Span, error_type: str, message: str, stack: str) -> None:
    """Record an error Reverb reports (not a live exception: a step's or a run's stored
    error) as the span's status and an `exception` event, as the SDK records exceptions."""
    span.set_status(trace.StatusCode.ERROR, f"{error_type}: {message}")
    span.add_event(
        "exception",
        {"exception.type": error_type, "exception.message": message, "exception.stacktrace": stack},
    )
