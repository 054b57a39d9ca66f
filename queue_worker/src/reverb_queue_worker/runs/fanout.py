"""The `process_event` job: create the runs an event triggers, and drive what fits here.

The runs this worker has room for are created claimed for it and driven at once
(no trip through the queue); the others are queued for any worker.
"""

from collections import Counter
from typing import cast

import structlog

from reverb_queue_worker.database import acquire
from reverb_queue_worker.jobs.active import ActiveJob
from reverb_queue_worker.jobs.slots import Booking
from reverb_queue_worker.moments import event_received
from reverb_queue_worker.runs.driver import drive_here
from reverb_queue_worker.services import Services
from reverb_queue_worker.spans import job_span, traceparent_within
from reverb_store import execution
from reverb_store.execution import ClaimedRun, Driver
from reverb_store.ids import EventId, JobId
from reverb_store.jobs import AdvanceRun, ProcessEvent

_log = structlog.get_logger("reverb.queue_worker")


async def process_event(services: Services, job: ActiveJob, payload: ProcessEvent) -> None:
    """One run per (function, event), each with its `advance_run` job, in one transaction."""
    own_jobs = services.own_jobs
    event_ids = list(payload.event_ids)
    with job_span("process_event", payload.traceparent, {"reverb.event.id": event_ids}):
        traceparent = traceparent_within(payload.traceparent)
        queue_manager_id = own_jobs.queue_manager_id
        # Slots for the runs driven here are booked as they are created; those the
        # fan-out did not use are freed when the booking closes, whatever happens.
        with own_jobs.booking() as booking:
            driver = (
                Driver(queue_manager_id, booking.book) if queue_manager_id is not None else None
            )
            async with acquire(services.pool) as connection:
                runs = await execution.create_runs(
                    connection,
                    cast(tuple[EventId, ...], payload.event_ids),
                    traceparent,
                    driver,
                    services.gates,
                    job,
                )
            driven = 0
            for run in runs:
                if run.job_id is not None and run.claim is not None:
                    driven += 1
                    _drive(services, run.job_id, run.claim, booking)
        if driven < len(runs):
            own_jobs.backlog()  # runs queued for want of room: taken as room frees
    if not runs:
        _log.debug("events trigger no new run", event_ids=event_ids)
    elif services.logs.enabled:
        triggered = Counter(run.event_id for run in runs)
        names = {run.event_id: run.event_name for run in runs}
        for event_id, count in triggered.items():
            event_received(services.logs, event_id, names[event_id], count, traceparent)
    # "run started" follows at info level (at once for the runs driven here).
    for run in runs:
        _log.debug(
            "run queued" if run.claim is None else "run created",
            run_id=run.run_id,
            function_id=run.function_id,
            event_id=run.event_id,
        )


def _drive(services: Services, job_id: JobId, claim: ClaimedRun, booking: Booking) -> None:
    job = ActiveJob(job_id, "advance_run")
    drive_here(services, job, AdvanceRun(claim.run_id, claim.traceparent), booking, claim)
