"""One trace per event: the fan-out, each advance_run and the host's invocation join the
trace the event was accepted in (traceparent in job payloads, Start and gRPC metadata)."""

import asyncpg
import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from reverb_function_host import start as start_host
from reverb_queue_worker import start as start_worker
from reverb_store import NewEvent, insert_events
from tests.integration.test_worker_hosts import app, wait_status
from tests.integration.test_worker_runs import host_settings, register, worker_settings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INGEST_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """Finished spans, recorded by the process's tracer provider (installed if none is)."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


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
    assert fan_out.parent is not None and fan_out.parent.span_id == int(INGEST_SPAN, 16)
    assert advance.parent is not None and fan_out.context is not None
    assert advance.parent.span_id == fan_out.context.span_id
    assert invoke.parent is not None and advance.context is not None
    assert invoke.parent.span_id == advance.context.span_id
    assert run["traceparent"] == f"00-{TRACE_ID}-{fan_out.context.span_id:016x}-01"
