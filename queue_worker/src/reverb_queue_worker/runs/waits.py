"""The `match_waits` job: resolve the open waits that accepted events meet, and cancel the
runs whose cancel_on they meet."""

import structlog

from reverb_queue_worker.database import acquire
from reverb_queue_worker.jobs.active import ActiveJob
from reverb_queue_worker.services import Services
from reverb_queue_worker.spans import job_span
from reverb_store import execution
from reverb_store.jobs import MatchWaits

_log = structlog.get_logger("reverb.queue_worker")


async def match_waits(services: Services, job: ActiveJob, payload: MatchWaits) -> None:
    """Each waiting step the events meet completes with its event, and its run is queued;
    each run whose cancellation wait they meet is cancelled."""
    event_ids = list(payload.event_ids)
    with job_span("match_waits", payload.traceparent, {"reverb.event_ids": event_ids}):
        async with acquire(services.pool) as connection:
            matched = await execution.match_events(connection, event_ids, services.gates)
    for run_id in matched.woken:
        _log.debug("wait resolved", run_id=run_id, event_ids=event_ids)
    for run_id in matched.cancelled:
        _log.info("run cancelled by an event (cancel_on)", run_id=run_id, event_ids=event_ids)
