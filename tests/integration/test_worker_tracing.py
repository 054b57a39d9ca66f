"""One trace per event: the fan-out, each advance_run and the host's invocation join the
trace the event was accepted in (traceparent in job payloads, Start and gRPC metadata)."""

import uuid

import asyncpg
import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import reverb
from reverb import Context, event
from reverb_function_host import start as start_host
from reverb_queue_worker import start as start_worker
from reverb_store import NewEvent, insert_events
from tests.integration.test_worker_hosts import app, wait_status
from tests.integration.test_worker_runs import host_settings, register, worker_settings
from tests.tracing import recorded_spans

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INGEST_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    return recorded_spans()


def in_trace(span: ReadableSpan) -> bool:
    return span.context is not None and span.context.trace_id == int(TRACE_ID, 16)


async def test_the_run_joins_the_trace_of_its_event(
    database_url: str, connection: asyncpg.Connection, spans: InMemorySpanExporter
) -> None:
    host = await start_host(app, host_settings(), register_app=False)
    await register(connection, app, f"127.0.0.1:{host.port}")
    worker = await start_worker(worker_settings(database_url))
    try:
        async with connection.transaction():
            (event_id,) = await insert_events(
                connection,
                [NewEvent("test.greet", orjson.dumps({"name": "eve"}).decode())],
                traceparent=f"00-{TRACE_ID}-{INGEST_SPAN}-01",
            )
        run = await wait_status(connection, event_id, "completed")
    finally:
        await worker.stop()
        await host.stop(0)

    ours = {span.name: span for span in spans.get_finished_spans() if in_trace(span)}
    fan_out, advance, invoke = ours["process_event"], ours["advance_run"], ours["invoke greets"]
    whole = ours["run greets"]
    assert fan_out.parent is not None and fan_out.parent.span_id == int(INGEST_SPAN, 16)
    # The run's span is a child of the fan-out, with ids taken from the run id, and its
    # advance is its child (named as the parent before the run's span was made).
    assert whole.parent is not None and fan_out.context is not None and whole.context is not None
    assert whole.parent.span_id == fan_out.context.span_id
    assert whole.context.span_id == uuid.UUID(run["id"]).int & (2**64 - 1)
    assert whole.attributes is not None and whole.attributes["reverb.run.status"] == "completed"
    assert whole.start_time is not None and whole.end_time is not None
    assert whole.start_time // 1_000_000 == uuid.UUID(run["id"]).int >> 80
    assert advance.parent is not None and advance.parent.span_id == whole.context.span_id
    assert invoke.parent is not None and advance.context is not None
    assert invoke.parent.span_id == advance.context.span_id
    assert run["traceparent"] == f"00-{TRACE_ID}-{fan_out.context.span_id:016x}-01"


failing = reverb.App("tracing-tests")


@failing.function("refuses", trigger=event("test.refuse"), retries=0)
async def refuses(ctx: Context) -> None:
    await ctx.step.run("check", lambda: None)
    raise ValueError("card declined")


async def test_an_event_sent_without_a_trace_gets_one_and_its_run_records_its_failure(
    database_url: str, connection: asyncpg.Connection, spans: InMemorySpanExporter
) -> None:
    host = await start_host(failing, host_settings(), register_app=False)
    await register(connection, failing, f"127.0.0.1:{host.port}")
    worker = await start_worker(worker_settings(database_url))
    try:
        async with connection.transaction():
            (event_id,) = await insert_events(connection, [NewEvent("test.refuse", "{}")])
        run = await wait_status(connection, event_id, "failed")
    finally:
        await worker.stop()
        await host.stop(0)

    # The event came without a trace: the fan-out began one, which the run joined (its
    # stored traceparent, whose trace id GET /runs/{id} shows), with its advance, the
    # invocation and the step.
    trace_id = int(run["traceparent"].split("-")[1], 16)
    ours = {
        span.name: span
        for span in spans.get_finished_spans()
        if span.context is not None and span.context.trace_id == trace_id
    }
    assert {"run refuses", "advance_run", "invoke refuses", "step check"} <= set(ours)
    whole = ours["run refuses"]
    assert whole.parent is not None and ours["process_event"].context is not None
    assert whole.parent.span_id == ours["process_event"].context.span_id
    assert whole.status.status_code is StatusCode.ERROR
    assert whole.status.description == "ValueError: card declined"
    (exception,) = whole.events
    assert exception.name == "exception" and exception.attributes is not None
    assert exception.attributes["exception.type"] == "ValueError"
    assert exception.attributes["exception.message"] == "card declined"
    assert "Traceback" in str(exception.attributes["exception.stacktrace"])
    assert ours["invoke refuses"].status.status_code is StatusCode.ERROR
