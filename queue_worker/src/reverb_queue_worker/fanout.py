"""The `process_event` job: create the runs an event triggers."""

import structlog
from opentelemetry import trace

from reverb_queue_worker.database import acquire
from reverb_queue_worker.services import Services
from reverb_store import execution
from reverb_store.jobs import ProcessEvent
from reverb_telemetry import context_from_traceparent, current_traceparent

_log = structlog.get_logger("reverb.queue_worker")
_tracer = trace.get_tracer("reverb.queue_worker")


async def process_event(services: Services, job: ProcessEvent) -> None:
    """One run per (function, event), each with its `advance_run` job, in one transaction."""
    with _tracer.start_as_current_span(
        "process_event",
        context=context_from_traceparent(job.traceparent),
        attributes={"reverb.event_ids": list(job.event_ids)},
    ):
        traceparent = current_traceparent() or job.traceparent
        async with acquire(services.pool) as connection:
            runs = await execution.create_runs(connection, job.event_ids, traceparent)
    if not runs:
        _log.debug("events trigger no new run", event_ids=list(job.event_ids))
    for run in runs:
        _log.info(
            "run queued", run_id=run.run_id, function_id=run.function_id, event_id=run.event_id
        )
