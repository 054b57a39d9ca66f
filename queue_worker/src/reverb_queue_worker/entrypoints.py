"""The pgqueuer entrypoints, with what happens when a job's handler fails."""

import asyncio
from datetime import timedelta

import structlog
from pgqueuer.errors import RetryRequested
from pgqueuer.models import Job
from pgqueuer.qm import QueueManager

from reverb_queue_worker.backoff import HOST_CAP, backoff
from reverb_queue_worker.database import acquire
from reverb_queue_worker.driver import advance_run
from reverb_queue_worker.fanout import process_event
from reverb_queue_worker.services import Services
from reverb_store import execution, jobs

_log = structlog.get_logger("reverb.queue_worker")


def register(queue_manager: QueueManager, services: Services) -> None:
    """Bind `process_event` and `advance_run` to their handlers on `queue_manager`."""

    @queue_manager.entrypoint(jobs.PROCESS_EVENT)
    async def process_event_job(job: Job) -> None:
        try:
            payload = jobs.ProcessEvent.decode(job.payload or b"")
        except (ValueError, KeyError, TypeError):
            _log.error("process_event job with a malformed payload dropped", job_id=job.id)
            return
        try:
            await process_event(services, payload)
        except asyncio.CancelledError:
            await asyncio.shield(_hand_over(services, int(job.id), payload))
            raise
        except Exception as error:
            await _enqueue_again(services, job, payload, error)

    @queue_manager.entrypoint(jobs.ADVANCE_RUN)
    async def advance_run_job(job: Job) -> None:
        try:
            payload = jobs.AdvanceRun.decode(job.payload or b"")
        except (ValueError, KeyError, TypeError):
            _log.error("advance_run job with a malformed payload dropped", job_id=job.id)
            return
        try:
            await advance_run(services, int(job.id), payload)
        except asyncio.CancelledError:
            await asyncio.shield(_hand_over(services, int(job.id), payload))
            raise
        except RetryRequested:
            raise
        except Exception as error:
            await _enqueue_again(services, job, payload, error)


async def _hand_over(
    services: Services, job_id: int, payload: jobs.ProcessEvent | jobs.AdvanceRun
) -> None:
    """The worker is stopping mid-job and pgqueuer drops cancelled jobs: leave the work
    to a new job. A run this job drives is released (status queued) first."""
    try:
        async with acquire(services.pool) as connection:
            if isinstance(payload, jobs.AdvanceRun):
                released = await execution.release_run(
                    connection, payload.run_id, job_id, invoked=True, resume_after=timedelta(0)
                )
                if released:
                    _log.info("worker stopping, run released", run_id=payload.run_id)
                    return
            await jobs.enqueue(connection, [payload])
    except Exception as error:
        _log.error("could not hand a cancelled job over", job_id=job_id, error=str(error))


async def _enqueue_again(
    services: Services,
    job: Job,
    payload: jobs.ProcessEvent | jobs.AdvanceRun,
    error: Exception,
) -> None:
    """Schedule the job's work again after a short backoff, as a new job.

    A new job (an insert) wakes the workers; a pgqueuer retry (an update) would
    wait for their next poll. If even that fails, pgqueuer retries this job.
    """
    delay = backoff(job.attempts, base=services.settings.backoff_base, cap=HOST_CAP)
    _log.warning(
        "job failed, scheduled again",
        entrypoint=job.entrypoint,
        job_id=job.id,
        error=f"{type(error).__name__}: {error}",
        retry_in_seconds=round(delay.total_seconds(), 3),
    )
    try:
        async with acquire(services.pool) as connection:
            await jobs.enqueue(connection, [payload], [delay])
    except Exception:
        raise RetryRequested(delay, reason=str(error)) from error
