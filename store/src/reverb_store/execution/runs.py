"""A run's transitions after its claim (`admission`): release, suspend, complete, retry, fail.

Every transition is guarded by `status = 'running' AND job_id`,
so only the job that drives a run moves it on. The transition that ends a job's
work deletes the job's row in the same statement: the job is done once it
commits (a worker running jobs itself needs no other step; pgqueuer's own
completion of a dequeued job then finds nothing left to do). Each tells the run
gates, in its transaction, that a gated run stopped executing (`tell_freed`).
"""

from collections.abc import Sequence
from datetime import timedelta
from typing import Literal

import asyncpg

from reverb_store import jobs
from reverb_store.execution.failures import announce_failure
from reverb_store.execution.gates import FREED_FLOW, NO_GATES, Gates, tell_freed
from reverb_store.execution.parents import resume_parent
from reverb_store.execution.records import ErrorRecord, RunStatus
from reverb_store.ids import JobId, RunId, StepId
from reverb_store.jobs import QUEUE_TABLE

# Prefixed to a transition's UPDATE ($2 is the job): the job's row goes with it.
_ENDING = f"WITH ended AS (DELETE FROM {QUEUE_TABLE} WHERE id = $2) "

# What a transition's UPDATE returns for `tell_freed`.
_FREED = f"id, function_id, app_id, gated, {FREED_FLOW}"


async def release_run(
    connection: asyncpg.Connection,
    run_id: RunId,
    job_id: JobId,
    *,
    invoked: bool,
    resume_after: timedelta,
    wakeups: jobs.Wakeups,
    gates: Gates = NO_GATES,
) -> bool:
    """Give the run back (status queued) without counting a function attempt.

    A new `advance_run` job, due after `resume_after` (`wakeups` hears of it), is
    enqueued in the same transaction. `invoked=False` (the host never got the Start)
    takes back the claim's invocation. False if this job no longer drives the run.
    """
    async with connection.transaction():
        row = await connection.fetchrow(
            _ENDING + "UPDATE reverb.runs SET status = 'queued', job_id = NULL,"
            " invocations = invocations - $3::int, updated_at = now()"
            " WHERE id = $1 AND status = 'running' AND job_id = $2"
            f" RETURNING coalesce(traceparent, '') AS traceparent, {_FREED}",
            run_id,
            job_id,
            0 if invoked else 1,
        )
        if row is None:
            return False
        await jobs.schedule(
            connection,
            [jobs.AdvanceRun(run_id, row["traceparent"] or None)],
            [resume_after],
            wakeups,
        )
        await tell_freed(connection, gates, row, "queued")
        return True


SuspendOutcome = Literal["resumed", "sleeping", "waiting"]

_LOCK_OWNED = f"""
SELECT traceparent, {_FREED} FROM reverb.runs
WHERE id = $1 AND status = 'running' AND job_id = $2 FOR UPDATE
"""

_PENDING = """
SELECT
  coalesce(bool_or(
      (status IN ('sleeping', 'retrying', 'waiting') AND wake_at <= now())
      OR (status IN ('completed', 'failed') AND NOT (id = ANY($2::text[])))
  ), false) AS due,
  coalesce(bool_or(status IN ('sleeping', 'retrying')), false) AS sleeping,
  min(wake_at) FILTER (WHERE status IN ('sleeping', 'retrying', 'waiting')) - now() AS delay
FROM reverb.steps WHERE run_id = $1
"""

_NOTHING_PENDING_DELAY = timedelta(seconds=1)


async def suspend_run(
    connection: asyncpg.Connection,
    run_id: RunId,
    job_id: JobId,
    known_step_ids: Sequence[StepId],
    wakeups: jobs.Wakeups,
    gates: Gates = NO_GATES,
) -> SuspendOutcome | None:
    """End an invocation that must wait; schedule the run's next `advance_run`
    (`wakeups` hears of it).

    `known_step_ids` are the final steps the host saw (memo and acks). If a wait
    became due, or a step was resolved behind the host's back (a child run
    ended), the run is re-queued at once; otherwise it sleeps or waits until the
    earliest `wake_at` (its wake-up in `reverb.run_wakeups`, `jobs.wake_later`). None if
    the job no longer drives the run.
    """
    async with connection.transaction():
        owned = await connection.fetchrow(_LOCK_OWNED, run_id, job_id)
        if owned is None:
            return None
        pending = await connection.fetchrow(_PENDING, run_id, list(known_step_ids))
        assert pending is not None  # an aggregate always returns a row
        delay: timedelta | None = pending["delay"]
        outcome: SuspendOutcome
        status: RunStatus
        if pending["due"]:
            outcome, status, delay = "resumed", "queued", timedelta(0)
        elif delay is None:
            # The host suspended with nothing to wait for: try again shortly.
            outcome, status, delay = "resumed", "queued", _NOTHING_PENDING_DELAY
        elif pending["sleeping"]:
            outcome, status = "sleeping", "sleeping"
        else:
            outcome, status = "waiting", "waiting"
        await connection.execute(
            _ENDING + "UPDATE reverb.runs SET status = $3, job_id = NULL, updated_at = now()"
            " WHERE id = $1",
            run_id,
            job_id,
            status,
        )
        if outcome == "resumed":
            await jobs.schedule(
                connection, [jobs.AdvanceRun(run_id, owned["traceparent"])], [delay], wakeups
            )
        else:
            # Kept out of pgqueuer's queue, whose dequeue reads every delayed job.
            await jobs.wake_later(connection, run_id, owned["traceparent"], delay, wakeups)
        await tell_freed(connection, gates, owned, status)
        return outcome


async def complete_run(
    connection: asyncpg.Connection,
    run_id: RunId,
    job_id: JobId,
    output: str,
    gates: Gates = NO_GATES,
) -> bool:
    """Store the run's result; a parent waiting on it gets it. False if not driven by this job."""
    async with connection.transaction():
        row = await connection.fetchrow(
            _ENDING
            + "UPDATE reverb.runs SET status = 'completed', output = $3::jsonb, error = NULL,"
            " job_id = NULL, ended_at = now(), updated_at = now()"
            " WHERE id = $1 AND status = 'running' AND job_id = $2"
            f" RETURNING parent_run_id, parent_step_id, {_FREED}",
            run_id,
            job_id,
            output,
        )
        if row is None:
            return False
        if row["parent_run_id"] is not None:
            await resume_parent(
                connection, row["parent_run_id"], row["parent_step_id"], output=output
            )
        await tell_freed(connection, gates, row, "completed")
        return True


async def retry_run(
    connection: asyncpg.Connection,
    run_id: RunId,
    job_id: JobId,
    error: ErrorRecord,
    delay: timedelta,
    wakeups: jobs.Wakeups,
    gates: Gates = NO_GATES,
) -> bool:
    """Queue the function's next attempt after `delay` (`wakeups` hears of it). False if
    not driven by this job."""
    async with connection.transaction():
        row = await connection.fetchrow(
            _ENDING
            + "UPDATE reverb.runs SET status = 'queued', attempt = attempt + 1, job_id = NULL,"
            " error = $3::jsonb, updated_at = now()"
            " WHERE id = $1 AND status = 'running' AND job_id = $2"
            f" RETURNING coalesce(traceparent, '') AS traceparent, {_FREED}",
            run_id,
            job_id,
            error.to_json(),
        )
        if row is None:
            return False
        await jobs.schedule(
            connection, [jobs.AdvanceRun(run_id, row["traceparent"] or None)], [delay], wakeups
        )
        await tell_freed(connection, gates, row, "queued")
        return True


async def fail_run(
    connection: asyncpg.Connection,
    run_id: RunId,
    job_id: JobId,
    error: ErrorRecord,
    gates: Gates = NO_GATES,
) -> bool:
    """Fail the run for good; a parent waiting on it sees the error, and the failure is
    announced (`failures`: the `reverb/function.failed` event, the on_failure handler's
    run). False if not ours."""
    async with connection.transaction():
        row = await connection.fetchrow(
            _ENDING + "UPDATE reverb.runs SET status = 'failed', error = $3::jsonb, job_id = NULL,"
            " ended_at = now(), updated_at = now()"
            " WHERE id = $1 AND status = 'running' AND job_id = $2"
            f" RETURNING parent_run_id, parent_step_id, {_FREED}",
            run_id,
            job_id,
            error.to_json(),
        )
        if row is None:
            return False
        if row["parent_run_id"] is not None:
            parent_run_id, parent_step_id = row["parent_run_id"], row["parent_step_id"]
            await resume_parent(connection, parent_run_id, parent_step_id, error=error)
        await announce_failure(connection, run_id, error, gates)
        await tell_freed(connection, gates, row, "failed")
        return True
