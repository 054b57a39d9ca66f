"""Reverb's own spans (a step's, an invocation's, the worker's), made by the installed SDK
tracer's configuration but without the SDK's per-span machinery.

`Tracer.start_span` in the SDK costs more than the rest of a step's engine work on the
host: a `BoundedAttributes` (a lock, and each value cleaned) and three `BoundedList`s per
span, a lock per span, the sampler's `SamplingResult` with its attribute mapping, a
`ReadableSpan` copy at `end`, and, through the API's `ProxyTracer`, one more call per
span. `start_span` here makes the same span from the same tracer's parts (its sampler,
id generator, resource, scope, span limits, span processors and internal metrics): a
`ReverbSpan` is an SDK `Span` (every method but `__init__`, `end` and the attribute,
event and link writers is the SDK's own), which keeps a span's start attributes as the
plain dict it is given when they are within the span limits, makes its event and link
lists only when one is added, and is handed to the span processors itself at `end` (it
accepts no change once ended, as the SDK's copy would not). So what is exported is what
the SDK's span would export, and processors, exporters and `OTEL_*` settings are the
SDK's.

The default sampler (`parentbased_always_on`: the SDK's `DEFAULT_ON` object) is decided
inline, as it decides (sampled when there is no parent or the parent is sampled, with the
parent's trace state); any other sampler is asked.
"""

import logging
import threading
from collections.abc import Mapping
from time import time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace import sampling
from opentelemetry.sdk.util import BoundedList
from opentelemetry.util.types import Attributes, AttributeValue

_PLAIN = frozenset((str, int, float, bool))
_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
_NOT_SAMPLED = trace.TraceFlags(trace.TraceFlags.DEFAULT)
_UNSET = trace.Status(trace.StatusCode.UNSET)
# The SDK locks each span's writers with a lock of its own; Reverb's spans share one (a
# span is written by one task at a time, and the lock is held for a dict write).
_LOCK = threading.Lock()
# The SDK's logger, for its own warnings.
_logger = logging.getLogger("opentelemetry.sdk.trace")


class ReverbSpan(SdkSpan):
    """An SDK span made by `start_span` (see the module)."""

    def __init__(  # noqa: PLR0913 (a span's parts)
        self,
        tracer: SdkTracer,
        name: str,
        span_context: trace.SpanContext,
        parent: trace.SpanContext | None,
        kind: trace.SpanKind,
        attributes: dict[str, AttributeValue] | BoundedAttributes,
        start_time: int,
        record_end_metrics: Any,
    ) -> None:
        # Not the SDK's __init__: that is what this class leaves out.
        self._name = name
        self._context = span_context
        self._parent = parent
        self._kind = kind
        self._resource = tracer.resource
        self._instrumentation_info = tracer.instrumentation_info
        self._instrumentation_scope = tracer._instrumentation_scope
        self._sampler = tracer.sampler
        self._span_processor = tracer.span_processor
        self._limits = tracer._span_limits
        self._attributes = attributes
        self._events = ()
        self._links = ()
        self._status = _UNSET
        self._start_time = start_time
        self._end_time = None
        self._record_end_metrics = record_end_metrics

    _lock = _LOCK
    _trace_config = None
    _record_exception = True
    _set_status_on_exception = True

    def _bounded(self) -> None:
        """Attributes set after the start go through the SDK's cleaning and limits."""
        if not isinstance(self._attributes, BoundedAttributes):
            limits = self._limits
            self._attributes = BoundedAttributes(
                limits.max_span_attributes,
                self._attributes,
                immutable=False,
                max_value_len=limits.max_span_attribute_length,
            )

    def set_attribute(self, key: str, value: Any) -> None:
        self._bounded()
        super().set_attribute(key, value)

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self._bounded()
        super().set_attributes(attributes)

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        if not isinstance(self._events, BoundedList):
            self._events = BoundedList(self._limits.max_events)
        super().add_event(name, attributes, timestamp)

    def add_link(self, context: trace.SpanContext, attributes: Attributes = None) -> None:
        if not isinstance(self._links, BoundedList):
            self._links = BoundedList(self._limits.max_links)
        super().add_link(context, attributes)

    def end(self, end_time: int | None = None) -> None:
        with _LOCK:
            if self._end_time is not None:
                _logger.warning("Calling end() on an ended span.")
                return
            self._end_time = end_time if end_time is not None else time_ns()
            if isinstance(self._attributes, BoundedAttributes):
                self._attributes._immutable = True
        if self._record_end_metrics is not None:
            self._record_end_metrics()
        processor = self._span_processor
        processor._on_ending(self)
        processor.on_end(self)


def _attributes(
    given: Mapping[str, AttributeValue] | None, tracer: SdkTracer
) -> dict[str, AttributeValue] | BoundedAttributes:
    """The start attributes as a dict when the SDK would keep them as they are."""
    limits = tracer._span_limits
    if not given:
        return {}
    if (
        limits.max_span_attribute_length is None
        and (limits.max_span_attributes is None or len(given) <= limits.max_span_attributes)
        and all(type(key) is str and key and type(value) in _PLAIN for key, value in given.items())
    ):
        return dict(given)
    return BoundedAttributes(
        limits.max_span_attributes,
        given,
        immutable=False,
        max_value_len=limits.max_span_attribute_length,
    )


def _start(
    tracer: SdkTracer,
    name: str,
    context: otel_context.Context | None,
    kind: trace.SpanKind,
    attributes: Mapping[str, AttributeValue] | None,
    start_time: int | None,
) -> trace.Span:
    """What the SDK's `Tracer.start_span` does (opentelemetry-sdk 1.45, which uv.lock
    pins), for a span without links."""
    current = trace.get_current_span(context).get_span_context()
    if not tracer._is_enabled():
        return trace.NonRecordingSpan(current)
    parent: trace.SpanContext | None = current
    generator = tracer.id_generator
    if parent is None or not parent.is_valid:
        parent = None
        trace_id = generator.generate_trace_id()
        random_trace_id = generator.is_trace_id_random()
    else:
        trace_id = parent.trace_id
        random_trace_id = parent.trace_flags.random_trace_id
    sampler = tracer.sampler
    if sampler is sampling.DEFAULT_ON:
        sampled = parent is None or parent.trace_flags.sampled
        decision = sampling.Decision.RECORD_AND_SAMPLE if sampled else sampling.Decision.DROP
        trace_state = None if parent is None else parent.trace_state
        kept = _attributes(attributes, tracer) if sampled else {}
    else:
        result = sampler.should_sample(context, trace_id, name, kind, attributes, ())
        decision, trace_state = result.decision, result.trace_state
        sampled = decision is sampling.Decision.RECORD_AND_SAMPLE
        kept = _attributes(result.attributes, tracer)
    flags = _SAMPLED if sampled else _NOT_SAMPLED
    if random_trace_id:
        flags = trace.TraceFlags(flags | trace.TraceFlags.RANDOM_TRACE_ID)
    span_context = trace.SpanContext(
        trace_id,
        generator.generate_span_id(),
        is_remote=False,
        trace_flags=flags,
        trace_state=trace_state,
    )
    record_end_metrics = tracer._tracer_metrics.start_span(parent, decision)
    if decision is sampling.Decision.DROP:
        return trace.NonRecordingSpan(span_context)
    span = ReverbSpan(
        tracer,
        name,
        span_context,
        parent,
        kind,
        kept,
        start_time if start_time is not None else time_ns(),
        record_end_metrics,
    )
    tracer.span_processor.on_start(span, parent_context=context)
    return span


class Tracer:
    """A tracer for Reverb's own spans: the installed provider's (looked up again when
    another provider is installed), or `provider`'s, with `start_span` as above when it
    is the SDK's."""

    __slots__ = ("_fixed", "_name", "_provider", "_tracer")

    def __init__(self, name: str, provider: trace.TracerProvider | None = None) -> None:
        self._name = name
        self._fixed = provider
        self._provider: trace.TracerProvider | None = None
        self._tracer: trace.Tracer | None = None

    def _current(self) -> trace.Tracer:
        provider = self._fixed or trace.get_tracer_provider()
        tracer = self._tracer
        if provider is not self._provider or tracer is None:
            tracer = self._tracer = provider.get_tracer(self._name)
            self._provider = provider
        return tracer

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: Mapping[str, AttributeValue] | None = None,
        start_time: int | None = None,
    ) -> trace.Span:
        tracer = self._current()
        if type(tracer) is SdkTracer:
            return _start(tracer, name, context, kind, attributes, start_time)
        return tracer.start_span(
            name, context=context, kind=kind, attributes=attributes, start_time=start_time
        )
