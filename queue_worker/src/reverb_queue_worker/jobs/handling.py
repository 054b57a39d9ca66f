"""What happens when a job's work fails or the worker stops in the middle of it.

The same for jobs pgqueuer dequeued and jobs the worker runs itself, of every kind.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import structlog
from pgqueuer.errors import RetryRequested

from reverb_queue_worker.backoff import HOST_CAP, backoff
from reverb_queue_worker.database import acquire
from reverb_queue_worker.jobs.active import ActiveJob
from reverb_queue_worker.services import Services
from reverb_store import jobs

_log = structlog.get_logger("reverb.queue_worker")

P = TypeVar("P", bound=jobs.JobPayload)

# Leave what a job holds (a run it drives) to a new job, on the job's connection;
# True if that enqueued the new job already, False to enqueue the payload again.
HandOver = Callable[[Services, asyncpg.Connection, ActiveJob, P], Awaitable[bool]]


async def guarded(
    services: Services,
    job: ActiveJob,
    payload: P,
    work: Callable[[], Awaitable[None]],
    hand_over: HandOver[P] | None = None,
) -> None:
    """Run the job's `work`. Cancelled (the worker is stopping), its work goes to a new job
    (`hand_over` first); failed, it is scheduled again as a new job after a backoff.
    RetryRequested (the database is unreachable even for that) is raised for the job's
    runner to handle."""
    try:
        await work()
    except asyncio.CancelledError:
        await asyncio.shield(_hand_over(services, job, payload, hand_over))
        raise
    except RetryRequested:
        raise
    except Exception as error:
        await _enqueue_again(services, job, payload, error)


async def _hand_over(
    services: Services, job: ActiveJob, payload: P, hand_over: HandOver[P] | None
) -> None:
    """The worker is stopping mid-job and pgqueuer drops cancelled jobs: leave the work
    to a new job."""
    try:
        async with acquire(services.pool) as connection:
            if hand_over is not None and await hand_over(services, connection, job, payload):
                return
            await jobs.enqueue(connection, [payload])
    except Exception as error:
        _log.error("could not hand a cancelled job over", job_id=job.id, error=str(error))


async def _enqueue_again(
    services: Services, job: ActiveJob, payload: jobs.JobPayload, error: Exception
) -> None:
    """Schedule the job's work again after a short backoff, as a new job.

    A new job is run by this worker when it comes due (or found by the others'
    polls); a pgqueuer retry would wait for a poll. If even that fails, the
    job's runner retries this job.
    """
    delay = backoff(job.attempts, base=services.settings.backoff_base, cap=HOST_CAP)
    _log.warning(
        "job failed, scheduled again",
        job=job.kind,
        job_id=job.id,
        error=f"{type(error).__name__}: {error}",
        retry_in_seconds=round(delay.total_seconds(), 3),
    )
    try:
        async with acquire(services.pool) as connection:
            await jobs.schedule(connection, [payload], [delay], job)
    except Exception:
        raise RetryRequested(delay, reason=str(error)) from error
