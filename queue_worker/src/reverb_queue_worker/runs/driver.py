"""The `advance_run` job: claim a run and drive it through one Invoke stream."""

from datetime import timedelta

import structlog
from pgqueuer.errors import RetryRequested

from reverb_queue_worker.backoff import HOST_CAP, backoff
from reverb_queue_worker.database import acquire
from reverb_queue_worker.hosts.channels import HostUnreachable
from reverb_queue_worker.runs.finals import finish
from reverb_queue_worker.runs.invocation import Invocation, StreamBroken
from reverb_queue_worker.services import Services
from reverb_queue_worker.spans import job_span, traceparent_within
from reverb_store import execution
from reverb_store.execution import ClaimedRun, Hold, Refusal
from reverb_store.ids import JobId, RunId
from reverb_store.jobs import AdvanceRun

_log = structlog.get_logger("reverb.queue_worker")


async def advance_run(
    services: Services, job_id: JobId, job: AdvanceRun, claim: ClaimedRun | None = None
) -> None:
    """Claim the run for this job and drive it as far as it goes.

    `claim`: the run was created claimed for this job (a fan-out this worker did).
    A run that cannot be claimed is someone else's (or finished), and one a run
    gate holds or skips waits or ends (`admission`): either way the job ends.
    When no host can be reached, or the stream breaks, the run is released with
    a new `advance_run` job after a growing delay (no function attempt counted).
    """
    with job_span("advance_run", job.traceparent, {"reverb.run_id": job.run_id}) as span:
        if claim is None:
            async with acquire(services.pool) as connection:
                claimed = await execution.claim_run(
                    connection, RunId(job.run_id), job_id, services.gates
                )
            if isinstance(claimed, Refusal):
                verdict = claimed.verdict
                _log.info(
                    "run held" if isinstance(verdict, Hold) else "run skipped",
                    run_id=job.run_id,
                    gate=claimed.gate,
                    reason=verdict.reason,
                )
                return
            claim = claimed
        if claim is None:
            _log.debug("run not claimable", run_id=job.run_id, job_id=job_id)
            return
        span.set_attribute("reverb.function_id", claim.function_id)
        span.set_attribute("reverb.invocation", claim.invocations)
        log = _log.bind(run_id=claim.run_id, function_id=claim.function_id)
        log.info(
            "run started" if claim.invocations == 1 else "run resumed",
            attempt=claim.attempt,
            invocation=claim.invocations,
        )
        try:
            await _drive(services, claim, job_id, log)
        except (HostUnreachable, StreamBroken) as error:
            invoked = isinstance(error, StreamBroken) and error.invoked
            delay = _retry_delay(services, claim.run_id)
            log.warning(
                "host unreachable, run released",
                reason=str(error),
                retry_in_seconds=round(delay.total_seconds(), 3),
            )
            await _release(services, claim.run_id, job_id, delay, invoked=invoked)
        except Exception as error:
            log.exception("advancing the run failed")
            delay = _retry_delay(services, claim.run_id)
            try:
                await _release(services, claim.run_id, job_id, delay)
            except Exception:
                # The database is unreachable too: pgqueuer retries this job (same id),
                # which may take the still-running run over.
                raise RetryRequested(delay, reason="advancing the run failed") from error
        else:
            services.host_retries.reached(claim.run_id)


async def _drive(
    services: Services,
    claim: ClaimedRun,
    job_id: JobId,
    log: structlog.typing.FilteringBoundLogger,
) -> None:
    invocation = Invocation(services, claim, traceparent_within(claim.traceparent))
    end = await invocation.run()
    await finish(services, claim, job_id, end, log)


def _retry_delay(services: Services, run_id: RunId) -> timedelta:
    failures = services.host_retries.failed(run_id)
    return backoff(failures, base=services.settings.backoff_base, cap=HOST_CAP)


async def _release(
    services: Services,
    run_id: RunId,
    job_id: JobId,
    resume_after: timedelta,
    *,
    invoked: bool = True,
) -> None:
    async with acquire(services.pool) as connection:
        await execution.release_run(
            connection,
            run_id,
            job_id,
            invoked=invoked,
            resume_after=resume_after,
            gates=services.gates,
        )
