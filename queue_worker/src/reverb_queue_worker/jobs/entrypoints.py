"""Each job kind's handler, in one table; the pgqueuer entrypoints and the worker's own
jobs both run through it.

The store declares the kinds (`reverb_store.jobs.KINDS`: entrypoint, payload type,
priority); this table binds a handler to each, and `check` (run when the worker
starts) refuses a kind without one. Adding a kind is an entry there and one here.
"""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog
from pgqueuer.models import Job
from pgqueuer.qm import QueueManager

from reverb_queue_worker.cron import fire_cron, tick_cron
from reverb_queue_worker.jobs.active import ActiveJob
from reverb_queue_worker.jobs.handling import HandOver, guarded
from reverb_queue_worker.moments import job_dead_lettered
from reverb_queue_worker.runs.driver import advance_run, hand_over_run
from reverb_queue_worker.runs.fanout import process_event
from reverb_queue_worker.runs.timeouts import time_out_run
from reverb_queue_worker.runs.waits import match_waits
from reverb_queue_worker.services import Services
from reverb_store import jobs
from reverb_store.ids import JobId

_log = structlog.get_logger("reverb.queue_worker")

P = TypeVar("P", bound=jobs.JobPayload)


@dataclass(frozen=True, slots=True)
class Binding(Generic[P]):
    """A kind's handler: its `work`, and what a stopping worker leaves to a new job
    (`hand_over`; by default the payload is enqueued again)."""

    kind: jobs.JobKind[P]
    work: Callable[[Services, ActiveJob, P], Awaitable[None]]
    hand_over: HandOver[P] | None = None

    async def run(self, services: Services, job: ActiveJob, payload: bytes) -> None:
        """Run one job; a malformed payload is logged and dropped."""
        try:
            decoded = self.kind.payload.decode(payload)
        except (ValueError, KeyError, TypeError):
            _log.error("job with a malformed payload dropped", entrypoint=job.kind, job_id=job.id)
            job_dead_lettered(services.logs, job.kind, payload)
            return
        await guarded(
            services, job, decoded, lambda: self.work(services, job, decoded), self.hand_over
        )


HANDLERS: Mapping[jobs.KindName, Binding[Any]] = {
    binding.kind.name: binding
    for binding in (
        Binding(jobs.PROCESS_EVENT, process_event),
        Binding(jobs.ADVANCE_RUN, advance_run, hand_over_run),
        Binding(jobs.WAKE_RUN, advance_run, hand_over_run),
        Binding(jobs.CRON_TICK, tick_cron),
        Binding(jobs.CRON_FIRE, fire_cron),
        Binding(jobs.TIME_OUT_RUN, time_out_run),
        Binding(jobs.MATCH_WAITS, match_waits),
    )
}


def check() -> None:
    """Refuse to start without a handler for every job kind (a job of a kind without one
    would be taken and never run)."""
    missing = sorted(set(jobs.KINDS) - set(HANDLERS))
    if missing:
        raise RuntimeError(f"no handler for the job kinds {missing}")


async def handle(services: Services, job: ActiveJob, payload: bytes) -> None:
    """Run one job of any kind."""
    await HANDLERS[job.kind].run(services, job, payload)


def register(queue_manager: QueueManager, services: Services) -> None:
    """Bind every kind's entrypoint to its handler on `queue_manager`."""
    for name, binding in HANDLERS.items():
        queue_manager.entrypoint(name)(_dispatched(services, name, binding))


def _dispatched(
    services: Services, name: jobs.KindName, binding: Binding[Any]
) -> Callable[[Job], Awaitable[None]]:
    async def dispatched(job: Job) -> None:
        # pgqueuer found due work: more may wait, for this worker's own takes.
        services.own_jobs.backlog()
        active = ActiveJob(JobId(int(job.id)), name, job.attempts)
        try:
            await binding.run(services, active, job.payload or b"")
        finally:
            services.own_jobs.ended(active)
            services.own_jobs.freed()

    return dispatched
