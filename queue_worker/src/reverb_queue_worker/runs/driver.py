"""The `advance_run` job: claim a run and drive it through one Invoke stream."""

import contextlib
from collections.abc import Iterator
from datetime import timedelta

import asyncpg
import structlog
from pgqueuer.errors import RetryRequested

from reverb.engine_errors import FUNCTION_REMOVED
from reverb_queue_worker.backoff import HOST_CAP, backoff
from reverb_queue_worker.database import acquire
from reverb_queue_worker.hosts.channels import HostUnreachable
from reverb_queue_worker.jobs.active import ActiveJob
from reverb_queue_worker.jobs.handling import guarded
from reverb_queue_worker.jobs.slots import Booking
from reverb_queue_worker.moments import RunLog
from reverb_queue_worker.runs.finals import finish
from reverb_queue_worker.runs.invocation import Invocation, StreamBroken
from reverb_queue_worker.services import Services
from reverb_queue_worker.spans import job_span, run_ended, traceparent_within, waits_resolved
from reverb_store import execution
from reverb_store.execution import ClaimedRun, ErrorRecord, Handover, Hold, Refusal
from reverb_store.ids import RunId
from reverb_store.jobs import AdvanceRun

_log = structlog.get_logger("reverb.queue_worker")


async def advance_run(
    services: Services,
    job: ActiveJob,
    payload: AdvanceRun,
    claim: ClaimedRun | None = None,
    *,
    gated: bool = False,
) -> None:
    """Claim the run for this job and drive it as far as it goes.

    `claim`: the run was created claimed for this job (a fan-out this worker did).
    `gated`: the run is known to be gated (a held run handed capacity: `handing`).
    A run that cannot be claimed is someone else's (or finished), and one a run
    gate holds or skips waits or ends (`admission`): either way the job ends.
    When no host can be reached, or the stream breaks, the run is released with
    a new `advance_run` job after a growing delay (no function attempt counted).
    """
    job_id = job.id
    with job_span(
        "advance_run",
        payload.traceparent,
        {"reverb.run.id": payload.run_id},
        run_id=payload.run_id,
    ) as span:
        if claim is None:
            claimed = await _claim(services, job, RunId(payload.run_id), gated=gated)
            if isinstance(claimed, Refusal):
                verdict = claimed.verdict
                _log.info(
                    "run held" if isinstance(verdict, Hold) else "run skipped",
                    run_id=payload.run_id,
                    gate=claimed.gate,
                    reason=verdict.reason,
                )
                return
            claim = claimed
        if claim is None:
            _log.debug("run not claimable", run_id=payload.run_id, job_id=job_id)
            # A job taking over a run cancelled while its crashed predecessor drove it.
            async with acquire(services.pool) as connection:
                await execution.let_go_cancelled(
                    connection, RunId(payload.run_id), job_id, services.gates
                )
            return
        span.set_attribute("reverb.function.id", claim.function_id)
        span.set_attribute("reverb.invocation", claim.invocations)
        span.set_attribute("reverb.attempt", claim.attempt)
        waits_resolved(claim)
        log = _log.bind(run_id=claim.run_id, function_id=claim.function_id)
        moments = RunLog(services.logs, claim)
        if not claim.registered:
            await _fail_removed(services, claim, job, log, moments)
            return
        if claim.paused and await _park(services, claim, job, log):
            return
        if claim.invocations == 1:
            services.metrics.runs_started.labels(claim.function_id).inc()
        log.info(
            "run started" if claim.invocations == 1 else "run resumed",
            attempt=claim.attempt,
            invocation=claim.invocations,
        )
        moments.started(claim)
        try:
            await _drive(services, claim, job, log, moments)
        except (HostUnreachable, StreamBroken) as error:
            invoked = isinstance(error, StreamBroken) and error.invoked
            delay = _retry_delay(services, claim.run_id)
            log.warning(
                "host unreachable, run released",
                reason=str(error),
                retry_in_seconds=round(delay.total_seconds(), 3),
            )
            moments.host_unreachable(str(error))
            await _release(services, claim.run_id, job, delay, invoked=invoked)
        except Exception as error:
            log.exception("advancing the run failed")
            delay = _retry_delay(services, claim.run_id)
            try:
                await _release(services, claim.run_id, job, delay)
            except Exception:
                # The database is unreachable too: pgqueuer retries this job (same id),
                # which may take the still-running run over.
                raise RetryRequested(delay, reason="advancing the run failed") from error
        else:
            services.host_retries.reached(claim.run_id)


def drive_here(
    services: Services,
    job: ActiveJob,
    payload: AdvanceRun,
    booking: Booking,
    claim: ClaimedRun | None = None,
    *,
    gated: bool = False,
) -> None:
    """Run the `advance_run` of a job picked for this worker in the transaction that made
    it (a fan-out's run created claimed, `claim`; a held run handed capacity, `gated`),
    in a slot of `booking`."""

    async def work() -> None:
        await guarded(
            services,
            job,
            payload,
            lambda: advance_run(services, job, payload, claim, gated=gated),
            hand_over_run,
        )

    services.own_jobs.run(job, work, booking)


@contextlib.contextmanager
def handing(services: Services) -> Iterator[Handover | None]:
    """The Handover of a transition on this worker (the completion batch): the held runs
    its frees hand capacity to, while this worker has room, are driven here once it
    committed (`Handover`); none if it raised."""
    own_jobs = services.own_jobs
    queue_manager_id = own_jobs.queue_manager_id
    if queue_manager_id is None:
        yield None
        return
    with own_jobs.booking() as booking:
        handover = Handover(queue_manager_id, booking.book)
        yield handover
        for run in handover.runs:
            job = ActiveJob(run.job_id, "wake_run")
            payload = AdvanceRun(run.run_id, run.traceparent)
            drive_here(services, job, payload, booking, gated=True)


async def hand_over_run(
    services: Services, connection: asyncpg.Connection, job: ActiveJob, payload: AdvanceRun
) -> bool:
    """The worker is stopping: release the run this job drives (status queued, a new
    `advance_run` due at once). False if the job does not drive it."""
    released = await execution.release_run(
        connection,
        RunId(payload.run_id),
        job.id,
        invoked=True,
        resume_after=timedelta(0),
        wakeups=job,
        gates=services.gates,
    )
    if released:
        _log.info("worker stopping, run released", run_id=payload.run_id)
    return released


async def _drive(
    services: Services,
    claim: ClaimedRun,
    job: ActiveJob,
    log: structlog.typing.FilteringBoundLogger,
    moments: RunLog,
) -> None:
    invocation = Invocation(services, claim, traceparent_within(claim.traceparent), moments)
    end = await invocation.run()
    await finish(services, claim, job, end, log, moments)


async def _fail_removed(
    services: Services,
    claim: ClaimedRun,
    job: ActiveJob,
    log: structlog.typing.FilteringBoundLogger,
    moments: RunLog,
) -> None:
    """The run's app no longer registers its function: fail it for good (no host is
    called; a parent waiting on it sees the error)."""
    error = ErrorRecord(
        FUNCTION_REMOVED.name,
        f"function {claim.function_id!r} was removed from app {claim.app_id!r}"
        " by a later registration; this run cannot continue",
    )
    async with acquire(services.pool) as connection:
        failed = await execution.fail_run(connection, claim.run_id, job.id, error, services.gates)
    if failed:
        log.warning("run failed: its function was removed", error_type=error.type)
        run_ended(claim, "failed", error)
        services.metrics.ended(claim.function_id, "failed")
        moments.failed(error, claim.attempt)


async def _park(
    services: Services,
    claim: ClaimedRun,
    job: ActiveJob,
    log: structlog.typing.FilteringBoundLogger,
) -> bool:
    """The run's function is paused: park the run until it is resumed. False if it was
    resumed meanwhile: the claim goes on."""
    async with acquire(services.pool) as connection:
        outcome = await execution.park_run(
            connection, claim.run_id, job.id, claim.function_id, services.gates
        )
    if outcome == "resumed":
        return False
    log.info("run paused" if outcome == "parked" else "run no longer driven by this job")
    return True


async def _claim(
    services: Services, job: ActiveJob, run_id: RunId, *, gated: bool
) -> ClaimedRun | Refusal | None:
    """Claim the run for this job: with the other jobs' claims of this moment (one
    statement), then, for a run that may be gated, through the gates."""
    claimed = None if gated else await services.checkpoints.claim(run_id, job.id)
    if claimed is None and (gated or services.gates):
        async with acquire(services.pool) as connection:
            return await execution.claim_run(
                connection, run_id, job.id, services.gates, job, gated=True
            )
    if claimed is not None and execution.needs_memo(claimed):
        async with acquire(services.pool) as connection:
            return await execution.with_memo(connection, claimed)
    return claimed


def _retry_delay(services: Services, run_id: RunId) -> timedelta:
    failures = services.host_retries.failed(run_id)
    return backoff(failures, base=services.settings.backoff_base, cap=HOST_CAP)


async def _release(
    services: Services,
    run_id: RunId,
    job: ActiveJob,
    resume_after: timedelta,
    *,
    invoked: bool = True,
) -> None:
    async with acquire(services.pool) as connection:
        await execution.release_run(
            connection,
            run_id,
            job.id,
            invoked=invoked,
            resume_after=resume_after,
            wakeups=job,
            gates=services.gates,
        )
