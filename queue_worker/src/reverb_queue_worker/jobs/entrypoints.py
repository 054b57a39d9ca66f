"""The pgqueuer entrypoints, and the same handlers for jobs the worker takes itself."""

import structlog
from pgqueuer.models import Job
from pgqueuer.qm import QueueManager

from reverb_queue_worker.jobs.handling import guarded
from reverb_queue_worker.runs.driver import advance_run
from reverb_queue_worker.runs.fanout import process_event
from reverb_queue_worker.services import Services
from reverb_store import jobs
from reverb_store.ids import JobId

_log = structlog.get_logger("reverb.queue_worker")


def register(queue_manager: QueueManager, services: Services) -> None:
    """Bind Reverb's entrypoints to their handlers on `queue_manager`."""

    async def dispatched(job: Job) -> None:
        # pgqueuer found due work: more may wait, for this worker's own takes.
        services.own_jobs.backlog()
        try:
            with services.own_jobs.waking():
                await handle(
                    services, int(job.id), job.entrypoint, job.payload or b"", job.attempts
                )
        finally:
            services.own_jobs.freed()

    for entrypoint in jobs.ENTRYPOINTS:
        queue_manager.entrypoint(entrypoint)(dispatched)


async def handle(
    services: Services, job_id: int, entrypoint: str, payload: bytes, attempts: int = 0
) -> None:
    """Run one job; a malformed payload is logged and dropped."""
    try:
        if entrypoint == jobs.PROCESS_EVENT:
            fan_out = jobs.ProcessEvent.decode(payload)
        else:
            advance = jobs.AdvanceRun.decode(payload)
    except (ValueError, KeyError, TypeError):
        _log.error("job with a malformed payload dropped", entrypoint=entrypoint, job_id=job_id)
        return
    if entrypoint == jobs.PROCESS_EVENT:
        await guarded(services, job_id, attempts, fan_out, lambda: process_event(services, fan_out))
    else:
        await guarded(
            services,
            job_id,
            attempts,
            advance,
            lambda: advance_run(services, JobId(job_id), advance),
        )
