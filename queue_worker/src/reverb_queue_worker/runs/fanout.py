"""The `process_event` job: create the runs an event triggers, and drive what fits here.

The runs this worker has room for are created claimed for it and driven at once
(no trip through the queue); the others are queued for any worker.
"""

from typing import cast

import structlog

from reverb_queue_worker.database import acquire
from reverb_queue_worker.jobs.handling import guarded
from reverb_queue_worker.runs.driver import advance_run
from reverb_queue_worker.services import Services
from reverb_queue_worker.spans import job_span, traceparent_within
from reverb_store import execution
from reverb_store.execution import ClaimedRun, Driver
from reverb_store.ids import EventId, JobId
from reverb_store.jobs import AdvanceRun, ProcessEvent

_log = structlog.get_logger("reverb.queue_worker")


async def process_event(services: Services, job: ProcessEvent) -> None:
    """One run per (function, event), each with its `advance_run` job, in one transaction."""
    own_jobs = services.own_jobs
    booked = 0

    def book(runs: int) -> int:
        nonlocal booked
        booked = own_jobs.reserve(runs)
        return booked

    with job_span("process_event", job.traceparent, {"reverb.event_ids": list(job.event_ids)}):
        traceparent = traceparent_within(job.traceparent)
        queue_manager_id = own_jobs.queue_manager_id
        driver = Driver(queue_manager_id, book) if queue_manager_id is not None else None
        try:
            async with acquire(services.pool) as connection:
                event_ids = cast(tuple[EventId, ...], job.event_ids)
                runs = await execution.create_runs(
                    connection, event_ids, traceparent, driver, services.gates
                )
        except BaseException:
            own_jobs.unreserve(booked)
            raise
        driven = 0
        for run in runs:
            if run.job_id is not None and run.claim is not None:
                driven += 1
                _drive(services, run.job_id, run.claim)
        own_jobs.unreserve(booked - driven)
        if driven < len(runs):
            own_jobs.backlog()  # runs queued for want of room: taken as room frees
    if not runs:
        _log.debug("events trigger no new run", event_ids=list(job.event_ids))
    # "run started" follows at info level (at once for the runs driven here).
    for run in runs:
        _log.debug(
            "run queued" if run.claim is None else "run created",
            run_id=run.run_id,
            function_id=run.function_id,
            event_id=run.event_id,
        )


def _drive(services: Services, job_id: JobId, claim: ClaimedRun) -> None:
    payload = AdvanceRun(claim.run_id, claim.traceparent)

    async def work() -> None:
        await guarded(
            services,
            job_id,
            0,
            payload,
            lambda: advance_run(services, job_id, payload, claim),
        )

    services.own_jobs.run(job_id, work, reserved=True)
