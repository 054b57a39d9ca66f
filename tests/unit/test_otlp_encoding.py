"""Reverb's OTLP span encoder writes the very message the SDK's exporters' encoder builds:
both parsed and compared, over spans with every kind of attribute value, events, links,
statuses, trace states, remote and local parents, resources and scopes."""

from collections.abc import Callable

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from reverb_telemetry.otlp_encoding import encode_request

REMOTE = SpanContext(
    0x4BF92F3577B34DA6A3CE929D0E0E4736,
    0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("vendor", "value"), ("other", "x")]),
)


def finished(resource: Resource, make: Callable[[trace.Tracer], None]) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    make(provider.get_tracer("reverb.tests", "1.2", schema_url="https://example.com/s"))
    provider.get_tracer("reverb.other").start_span("other scope").end()
    return list(exporter.get_finished_spans())


def every_shape(tracer: trace.Tracer) -> None:
    remote = trace.set_span_in_context(trace.NonRecordingSpan(REMOTE))
    with tracer.start_as_current_span(
        "invoke ✓ é",
        context=remote,
        kind=SpanKind.SERVER,
        attributes={
            "reverb.run.id": "0193a8e4-7c1f-7000-8000-000000000001",
            "reverb.attempt": 0,
            "negative": -5,
            "big": 2**62,
            "ratio": 0.25,
            "flag": True,
            "off": False,
            "names": ["a", "b"],
            "numbers": [1, 2, 3],
            "empty": "",
            "long": "x" * 300,
        },
    ) as invocation:
        for kind in (SpanKind.INTERNAL, SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER):
            tracer.start_span(f"child {kind.name}", kind=kind).end()
        with tracer.start_as_current_span(
            "step failing", attributes={"reverb.step.id": "charge"}
        ) as step:
            step.record_exception(RuntimeError("card declined"))
            step.set_status(Status(StatusCode.ERROR, "RuntimeError: card declined"))
            step.add_event("no attributes")
        with tracer.start_as_current_span("step fine") as fine:
            fine.set_status(Status(StatusCode.OK))
        tracer.start_span(
            "linked",
            links=[Link(REMOTE, {"why": "because"}), Link(invocation.get_span_context())],
        ).end()
    tracer.start_span("root, no parent", start_time=1, attributes={}).end(end_time=2)


@pytest.mark.parametrize(
    "resource",
    [
        Resource.create({"service.name": "reverb-host", "deployment": "test"}),
        Resource({"service.name": "reverb-worker"}, schema_url="https://example.com/r"),
        Resource({}),
    ],
)
def test_the_request_is_the_sdk_encoders(resource: Resource) -> None:
    spans = finished(resource, every_shape)
    assert len(spans) == 10

    ours = ExportTraceServiceRequest.FromString(encode_request(spans))

    assert ours == encode_spans(spans)


def test_spans_of_two_providers_keep_their_resources() -> None:
    first = finished(Resource({"service.name": "a"}), every_shape)
    second = finished(Resource({"service.name": "b"}), every_shape)
    spans = [first[0], second[0], *first[1:], *second[1:]]

    ours = ExportTraceServiceRequest.FromString(encode_request(spans))

    assert ours == encode_spans(spans)


def test_a_value_otlp_cannot_hold_is_refused() -> None:
    span = finished(Resource({}), every_shape)[0]
    span._attributes = {"odd": object()}  # type: ignore[dict-item]  # past the SDK's checks
    with pytest.raises(TypeError, match="object"):
        encode_request([span])
