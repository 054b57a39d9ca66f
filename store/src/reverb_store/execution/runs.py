"""A run's transitions: claim, release, suspend, complete, retry and fail.

Every transition after the claim is guarded by `status = 'running' AND job_id`,
so only the job that drives a run moves it on. The transition that ends a job's
work deletes the job's row in the same statement: the job is done once it
commits (a worker running jobs itself needs no other step; pgqueuer's own
completion of a dequeued job then finds nothing left to do).
"""

from collections.abc import Sequence
from datetime import timedelta
from typing import Literal

import asyncpg

from reverb_store import jobs
from reverb_store.execution.invokes import resume_parent
from reverb_store.execution.records import ClaimedRun, ErrorRecord, EventRecord, MemoEntry
from reverb_store.execution.steps import resolve_and_load
from reverb_store.jobs import QUEUE_TABLE

# Prefixed to a transition's UPDATE ($2 is the job): the job's row goes with it.
_ENDING = f"WITH ended AS (DELETE FROM {QUEUE_TABLE} WHERE id = $2) "

# The events are looked up by `= ANY(event_ids)`: an index scan whatever the table's
# size (joining an unnest, the planner chose a scan of every event while the table
# was small, which made claims slower as events accumulated).
_CLAIM = """
WITH claimed AS (
    UPDATE reverb.runs
    SET status = 'running', job_id = $2, invocations = invocations + 1,
        started_at = coalesce(started_at, now()), updated_at = now()
    WHERE id = $1
      AND (status IN ('queued', 'sleeping', 'waiting') OR (status = 'running' AND job_id = $2))
    RETURNING function_id, app_id, attempt, max_attempts, invocations, event_ids, traceparent
)
SELECT c.function_id, c.app_id, c.attempt, c.max_attempts, c.invocations, c.traceparent,
       e.id AS event_id, e.name, e.data::text AS data, e.ts
FROM claimed c
LEFT JOIN reverb.events e ON e.id = ANY(c.event_ids)
ORDER BY array_position(c.event_ids, e.id)
"""


async def claim_run(connection: asyncpg.Connection, run_id: str, job_id: int) -> ClaimedRun | None:
    """Take the run for this job and read what its invocation starts from; None if not claimable.

    Then sleeps that are due complete and invokes past their timeout fail, so the
    memo includes them. No transaction spans these statements: should the worker
    die after the claim, the job that takes the run over (the same job) claims it
    again and resolves what is due then.
    """
    rows = await connection.fetch(_CLAIM, run_id, job_id)
    if not rows:
        return None
    first = rows[0]
    # A run's first invocation has no steps yet (an invocation the host never got is
    # given back by `release_run`): nothing to resolve or load.
    memo: tuple[MemoEntry, ...] = ()
    retrying_step_attempts = None
    if first["invocations"] > 1:
        memo, retrying_step_attempts = await resolve_and_load(connection, run_id)
    return ClaimedRun(
        run_id=run_id,
        function_id=first["function_id"],
        app_id=first["app_id"],
        attempt=first["attempt"],
        max_attempts=first["max_attempts"],
        invocations=first["invocations"],
        traceparent=first["traceparent"],
        events=tuple(
            EventRecord(row["event_id"], row["name"], row["data"], row["ts"])
            for row in rows
            if row["event_id"] is not None
        ),
        memo=memo,
        retrying_step_attempts=retrying_step_attempts,
    )


async def prepare_claim(connection: asyncpg.Connection) -> None:
    """Run the claim's statement once for no run (see `prepare_fan_out`)."""
    await connection.fetch(_CLAIM, "", 0)


async def release_run(
    connection: asyncpg.Connection,
    run_id: str,
    job_id: int,
    *,
    invoked: bool,
    resume_after: timedelta,
    wakeups: jobs.Wakeups,
) -> bool:
    """Give the run back (status queued) without counting a function attempt.

    A new `advance_run` job, due after `resume_after` (`wakeups` hears of it), is
    enqueued in the same transaction. `invoked=False` (the host never got the Start)
    takes back the claim's invocation. False if this job no longer drives the run.
    """
    async with connection.transaction():
        traceparent = await connection.fetchval(
            _ENDING + "UPDATE reverb.runs SET status = 'queued', job_id = NULL,"
            " invocations = invocations - $3::int, updated_at = now()"
            " WHERE id = $1 AND status = 'running' AND job_id = $2"
            " RETURNING coalesce(traceparent, '')",
            run_id,
            job_id,
            0 if invoked else 1,
        )
        if traceparent is None:
            return False
        await jobs.schedule(
            connection, [jobs.AdvanceRun(run_id, traceparent or None)], [resume_after], wakeups
        )
        return True


SuspendOutcome = Literal["resumed", "sleeping", "waiting"]

_LOCK_OWNED = """
SELECT traceparent FROM reverb.runs
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
    run_id: str,
    job_id: int,
    known_step_ids: Sequence[str],
    wakeups: jobs.Wakeups,
) -> SuspendOutcome | None:
    """End an invocation that must wait; schedule the run's next `advance_run`
    (`wakeups` hears of it).

    `known_step_ids` are the final steps the host saw (memo and acks). If a wait
    became due, or a step was resolved behind the host's back (a child run
    ended), the run is re-queued at once; otherwise it sleeps or waits until the
    earliest `wake_at`. None if the job no longer drives the run.
    """
    async with connection.transaction():
        owned = await connection.fetchrow(_LOCK_OWNED, run_id, job_id)
        if owned is None:
            return None
        pending = await connection.fetchrow(_PENDING, run_id, list(known_step_ids))
        assert pending is not None  # an aggregate always returns a row
        delay: timedelta | None = pending["delay"]
        outcome: SuspendOutcome
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
        await jobs.schedule(
            connection, [jobs.AdvanceRun(run_id, owned["traceparent"])], [delay], wakeups
        )
        return outcome


async def complete_run(
    connection: asyncpg.Connection, run_id: str, job_id: int, output: str
) -> bool:
    """Store the run's result; a parent waiting on it gets it. False if not driven by this job."""
    async with connection.transaction():
        row = await connection.fetchrow(
            _ENDING
            + "UPDATE reverb.runs SET status = 'completed', output = $3::jsonb, error = NULL,"
            " job_id = NULL, ended_at = now(), updated_at = now()"
            " WHERE id = $1 AND status = 'running' AND job_id = $2"
            " RETURNING parent_run_id, parent_step_id",
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
        return True


async def retry_run(
    connection: asyncpg.Connection,
    run_id: str,
    job_id: int,
    error: ErrorRecord,
    delay: timedelta,
    wakeups: jobs.Wakeups,
) -> bool:
    """Queue the function's next attempt after `delay` (`wakeups` hears of it). False if
    not driven by this job."""
    async with connection.transaction():
        traceparent = await connection.fetchval(
            _ENDING
            + "UPDATE reverb.runs SET status = 'queued', attempt = attempt + 1, job_id = NULL,"
            " error = $3::jsonb, updated_at = now()"
            " WHERE id = $1 AND status = 'running' AND job_id = $2"
            " RETURNING coalesce(traceparent, '')",
            run_id,
            job_id,
            error.to_json(),
        )
        if traceparent is None:
            return False
        await jobs.schedule(
            connection, [jobs.AdvanceRun(run_id, traceparent or None)], [delay], wakeups
        )
        return True


async def fail_run(
    connection: asyncpg.Connection, run_id: str, job_id: int, error: ErrorRecord
) -> bool:
    """Fail the run for good; a parent waiting on it sees the error. False if not ours."""
    async with connection.transaction():
        row = await connection.fetchrow(
            _ENDING + "UPDATE reverb.runs SET status = 'failed', error = $3::jsonb, job_id = NULL,"
            " ended_at = now(), updated_at = now()"
            " WHERE id = $1 AND status = 'running' AND job_id = $2"
            " RETURNING parent_run_id, parent_step_id",
            run_id,
            job_id,
            error.to_json(),
        )
        if row is None:
            return False
        if row["parent_run_id"] is not None:
            parent_run_id, parent_step_id = row["parent_run_id"], row["parent_step_id"]
            await resume_parent(connection, parent_run_id, parent_step_id, error=error)
        return True
