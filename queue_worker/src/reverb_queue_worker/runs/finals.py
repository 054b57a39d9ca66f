"""Making an invocation's end durable: completed, failed (maybe retried), suspended, or
stopped at a step boundary.

A completed run without a parent goes through the checkpoint writer's group
commit (many runs, one statement); everything else takes a pooled connection.
A transition that finds the run no longer driven by this job (it was cancelled, or
taken over) changes nothing; a cancelled run is then let go (`let_go_cancelled`).
"""

from datetime import timedelta

import asyncpg
import structlog

from reverb.engine_errors import INVALID_OUTPUT
from reverb_queue_worker.backoff import backoff
from reverb_queue_worker.database import acquire
from reverb_queue_worker.hosts import protocol
from reverb_queue_worker.jobs.active import ActiveJob
from reverb_queue_worker.moments import RunLog
from reverb_queue_worker.runs.invocation import InvocationEnd, Stopped
from reverb_queue_worker.services import Services
from reverb_queue_worker.spans import run_ended
from reverb_store import execution
from reverb_store.execution import ClaimedRun, ErrorRecord
from reverb_store.execution.completions import RunCompletion
from reverb_store.flow.concurrency import pause_keys
from reverb_store.ids import JobId


async def finish(
    services: Services,
    claim: ClaimedRun,
    job: ActiveJob,
    end: InvocationEnd,
    log: structlog.typing.FilteringBoundLogger,
    moments: RunLog,
) -> None:
    """Make the invocation's end durable; wake-ups it schedules go to `job`."""
    final = end.final
    job_id = JobId(job.id)
    if isinstance(final, Stopped):
        await _stop(services, claim, job, final, log)
        return
    if isinstance(final, protocol.Completed) and await _complete_in_batch(
        services, claim, job_id, final, log
    ):
        log.info("run completed")
        run_ended(claim, "completed")
        services.metrics.ended(claim.function_id, "completed")
        moments.completed()
        return
    async with acquire(services.pool) as connection:
        if isinstance(final, protocol.Completed):
            await _complete(connection, services, claim, job, final, log, moments)
        elif isinstance(final, protocol.Failed):
            await _fail(connection, services, claim, job, final, log, moments)
        else:
            outcome = await execution.suspend_run(
                connection, claim.run_id, job_id, sorted(end.known_step_ids), job, services.gates
            )
            if outcome is None:
                await _not_driven(connection, services, claim, job, "suspended", log)
            else:
                log.info("run suspended", until=outcome)


async def _complete_in_batch(
    services: Services,
    claim: ClaimedRun,
    job_id: JobId,
    final: protocol.Completed,
    log: structlog.typing.FilteringBoundLogger,
) -> bool:
    """Whether the group commit completed the run; if not, `complete_run` decides."""
    completion = RunCompletion(claim.run_id, job_id, final.output, claim.gated)
    try:
        return await services.checkpoints.complete(completion)
    except asyncpg.DataError:
        return False  # `_complete` fails the run with InvalidOutput
    except Exception as error:
        log.debug("batched completion failed, completing alone", error=str(error))
        return False


async def _complete(
    connection: asyncpg.Connection,
    services: Services,
    claim: ClaimedRun,
    job: ActiveJob,
    final: protocol.Completed,
    log: structlog.typing.FilteringBoundLogger,
    moments: RunLog,
) -> None:
    try:
        done = await execution.complete_run(
            connection, claim.run_id, job.id, final.output, services.gates
        )
    except asyncpg.DataError as error:
        invalid = ErrorRecord(
            INVALID_OUTPUT.name, f"the function's result cannot be stored: {error}"
        )
        failed = protocol.Failed(invalid, retriable=INVALID_OUTPUT.retriable)
        await _fail(connection, services, claim, job, failed, log, moments)
        return
    if done:
        log.info("run completed")
        run_ended(claim, "completed")
        services.metrics.ended(claim.function_id, "completed")
        moments.completed()
    else:
        await _not_driven(connection, services, claim, job, "completed", log)


async def _fail(
    connection: asyncpg.Connection,
    services: Services,
    claim: ClaimedRun,
    job: ActiveJob,
    final: protocol.Failed,
    log: structlog.typing.FilteringBoundLogger,
    moments: RunLog,
) -> None:
    if final.pause_key and final.retry_after is not None:
        # Before the transition that frees the run's slots.
        await pause_keys(connection, claim.run_id, final.retry_after)
    if final.retriable and claim.attempt + 1 < claim.max_attempts:
        delay = final.retry_after
        if delay is None:
            delay = backoff(claim.attempt, base=services.settings.backoff_base)
        retried = await execution.retry_run(
            connection, claim.run_id, job.id, final.error, delay, job, services.gates
        )
        if retried:
            log.info(
                "run failed, will retry",
                attempt=claim.attempt,
                error_type=final.error.type,
                delay_seconds=round(delay.total_seconds(), 3),
            )
            moments.retrying(final.error, claim.attempt)
            return
    elif await execution.fail_run(connection, claim.run_id, job.id, final.error, services.gates):
        log.info("run failed", attempt=claim.attempt, error_type=final.error.type)
        run_ended(claim, "failed", final.error)
        services.metrics.ended(claim.function_id, "failed")
        moments.failed(final.error, claim.attempt)
        return
    await _not_driven(connection, services, claim, job, "failed", log)


async def _not_driven(
    connection: asyncpg.Connection,
    services: Services,
    claim: ClaimedRun,
    job: ActiveJob,
    ending: str,
    log: structlog.typing.FilteringBoundLogger,
) -> None:
    if await execution.let_go_cancelled(connection, claim.run_id, job.id, services.gates):
        log.info("run cancelled while driven: let go", ending=ending)
    else:
        log.warning("run no longer driven by this job (taken over)", ending=ending)


async def _stop(
    services: Services,
    claim: ClaimedRun,
    job: ActiveJob,
    stopped: Stopped,
    log: structlog.typing.FilteringBoundLogger,
) -> None:
    """The run stopped at a step boundary. A cancelled run is let go; a paused function's
    run is released at once, and its claim parks it (or runs it, if the function was
    resumed meanwhile)."""
    async with acquire(services.pool) as connection:
        if stopped.reason == "cancelled" or not await execution.release_run(
            connection,
            claim.run_id,
            job.id,
            invoked=True,
            resume_after=timedelta(0),
            wakeups=job,
            gates=services.gates,
        ):
            await _not_driven(connection, services, claim, job, "stopped", log)
            return
    log.info("run stopped at a step boundary", reason=stopped.reason)
