"""Reverb's own spans (`reverb_telemetry.spans`) are what the SDK's tracer would make:
the same exported message for the same ids and times, the sampler's decision, the span
limits, and no change once ended."""

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, TraceIdRatioBased
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from reverb_telemetry.otlp_encoding import encode_request
from reverb_telemetry.spans import Tracer
from reverb_telemetry.tracing import PresetIds, preset_ids

REMOTE = SpanContext(
    0x4BF92F3577B34DA6A3CE929D0E0E4736,
    0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("vendor", "value")]),
)
UNSAMPLED = SpanContext(REMOTE.trace_id, REMOTE.span_id, is_remote=True)


def provider_with(exporter: InMemorySpanExporter, **options: object) -> TracerProvider:
    provider = TracerProvider(id_generator=PresetIds(), **options)  # type: ignore[arg-type]
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def made_by_both(**options: object) -> tuple[list[ReadableSpan], list[ReadableSpan]]:
    """The same spans, made by the SDK's tracer and by Reverb's, with the same ids."""
    made: list[list[ReadableSpan]] = []
    for ours in (False, True):
        exporter = InMemorySpanExporter()
        provider = provider_with(exporter, **options)
        tracer = Tracer("reverb.tests", provider) if ours else provider.get_tracer("reverb.tests")
        parent = trace.set_span_in_context(trace.NonRecordingSpan(REMOTE))
        with preset_ids(REMOTE.trace_id, 0x1111):
            invocation = tracer.start_span(
                "invoke f",
                context=parent,
                kind=SpanKind.SERVER,
                attributes={"reverb.run.id": "r", "reverb.attempt": 2, "ratio": 0.5},
                start_time=1_000,
            )
        token = otel_context.attach(trace.set_span_in_context(invocation))
        try:
            with preset_ids(REMOTE.trace_id, 0x2222):
                step = tracer.start_span(
                    "step s", attributes={"reverb.step.id": "s"}, start_time=2_000
                )
            step.set_attribute("later", ["a", "b"])
            step.record_exception(RuntimeError("no"), timestamp=3_000)
            step.set_status(StatusCode.ERROR, "RuntimeError: no")
            step.add_event("note", {"n": 1}, timestamp=3_500)
            step.end(4_000)
            # A user's span (an instrumented library's) under the step.
            with preset_ids(REMOTE.trace_id, 0x3333):
                child = provider.get_tracer("user").start_span(
                    "GET", context=trace.set_span_in_context(step), start_time=3_100
                )
            child.end(3_200)
        finally:
            otel_context.detach(token)
        invocation.set_attribute("reverb.outcome", "RunCompleted")
        invocation.end(5_000)
        made.append(list(exporter.get_finished_spans()))
    return made[0], made[1]


def message(spans: list[ReadableSpan]) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(encode_request(spans))


def test_reverb_spans_export_what_the_sdk_spans_export() -> None:
    sdk, ours = made_by_both()
    assert [span.name for span in ours] == ["step s", "GET", "invoke f"]
    assert message(ours) == message(sdk)
    step, child, invocation = ours
    assert child.parent == step.context
    assert invocation.parent == REMOTE
    assert invocation.context.trace_state == REMOTE.trace_state
    assert dict(invocation.attributes or {})["reverb.outcome"] == "RunCompleted"
    assert [event.name for event in step.events] == ["exception", "note"]


def test_the_span_limits_apply_as_in_the_sdk() -> None:
    limits = SpanLimits(max_span_attributes=2, max_events=1, max_attribute_length=3)
    sdk, ours = made_by_both(span_limits=limits)
    assert message(ours) == message(sdk)
    invocation = ours[-1]
    assert invocation.dropped_attributes == 2
    assert ours[0].dropped_events == 1


@pytest.mark.parametrize(
    ("sampler", "parent", "recorded"),
    [
        (None, REMOTE, True),
        (None, UNSAMPLED, False),
        (None, None, True),
        (ALWAYS_OFF, None, False),
        (TraceIdRatioBased(1.0), UNSAMPLED, True),
    ],
)
def test_the_sampler_decides(sampler: object, parent: SpanContext | None, recorded: bool) -> None:
    exporter = InMemorySpanExporter()
    options = {} if sampler is None else {"sampler": sampler}
    provider = provider_with(exporter, **options)
    context = None if parent is None else trace.set_span_in_context(trace.NonRecordingSpan(parent))
    span = Tracer("reverb.tests", provider).start_span("step s", context=context)
    assert span.is_recording() is recorded
    assert span.get_span_context().trace_flags.sampled is recorded
    span.end()
    assert len(exporter.get_finished_spans()) == int(recorded)


def test_an_ended_span_takes_no_change() -> None:
    exporter = InMemorySpanExporter()
    span = Tracer("reverb.tests", provider_with(exporter)).start_span(
        "step s", attributes={"reverb.step.id": "s"}
    )
    span.end(10)
    span.set_attribute("late", 1)
    span.add_event("late")
    span.set_status(StatusCode.ERROR)
    span.end(20)
    (finished,) = exporter.get_finished_spans()
    assert dict(finished.attributes or {}) == {"reverb.step.id": "s"}
    assert finished.events == ()
    assert finished.status.status_code is StatusCode.UNSET
    assert finished.end_time == 10
