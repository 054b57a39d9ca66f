"""What happens when a job's work fails or the worker stops in the middle of it.

The same for jobs pgqueuer dequeued and jobs the worker runs itself.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog
from pgqueuer.errors import RetryRequested

from reverb_queue_worker.backoff import HOST_CAP, backoff
from reverb_queue_worker.database import acquire
from reverb_queue_worker.services import Services
from reverb_store import execution, jobs
from reverb_store.ids import JobId, RunId

_log = structlog.get_logger("reverb.queue_worker")

Payload = jobs.ProcessEvent | jobs.AdvanceRun


async def guarded(
    services: Services,
    job_id: int,
    attempts: int,
    payload: Payload,
    work: Callable[[], Awaitable[None]],
) -> None:
    """Run the job's `work`. Cancelled (the worker is stopping), its work goes to a new job;
    failed, it is scheduled again as a new job after a backoff. RetryRequested (the
    database is unreachable even for that) is raised for the job's runner to handle."""
    try:
        await work()
    except asyncio.CancelledError:
        await asyncio.shield(_hand_over(services, job_id, payload))
        raise
    except RetryRequested:
        raise
    except Exception as error:
        await _enqueue_again(services, job_id, attempts, payload, error)


async def _hand_over(services: Services, job_id: int, payload: Payload) -> None:
    """The worker is stopping mid-job and pgqueuer drops cancelled jobs: leave the work
    to a new job. A run this job drives is released (status queued) first."""
    try:
        async with acquire(services.pool) as connection:
            if isinstance(payload, jobs.AdvanceRun):
                released = await execution.release_run(
                    connection,
                    RunId(payload.run_id),
                    JobId(job_id),
                    invoked=True,
                    resume_after=timedelta(0),
                    gates=services.gates,
                )
                if released:
                    _log.info("worker stopping, run released", run_id=payload.run_id)
                    return
            await jobs.enqueue(connection, [payload])
    except Exception as error:
        _log.error("could not hand a cancelled job over", job_id=job_id, error=str(error))


async def _enqueue_again(
    services: Services, job_id: int, attempts: int, payload: Payload, error: Exception
) -> None:
    """Schedule the job's work again after a short backoff, as a new job.

    A new job is run by this worker when it comes due (or found by the others'
    polls); a pgqueuer retry would wait for a poll. If even that fails, the
    job's runner retries this job.
    """
    delay = backoff(attempts, base=services.settings.backoff_base, cap=HOST_CAP)
    _log.warning(
        "job failed, scheduled again",
        job="process_event" if isinstance(payload, jobs.ProcessEvent) else "advance_run",
        job_id=job_id,
        error=f"{type(error).__name__}: {error}",
        retry_in_seconds=round(delay.total_seconds(), 3),
    )
    try:
        async with acquire(services.pool) as connection:
            await jobs.enqueue(connection, [payload], [delay])
    except Exception:
        raise RetryRequested(delay, reason=str(error)) from error
