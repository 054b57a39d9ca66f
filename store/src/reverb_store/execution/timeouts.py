"""Function timeouts: a run that has not started, or not ended, within its function's
`reverb.Timeouts` fails with FunctionTimeout.

Nothing polls. The runs' creation trigger (migrations 0017 and 0020) queues one delayed
`time_out_run` job per limit of a run whose function has one, in the transaction that
creates the run: `start` due at its creation plus the limit, `finish` at its start (or,
not started yet, its creation) plus the limit. Starting a run queues nothing: a `finish`
job that finds its run not started yet is queued again the limit later, the earliest
the run can pass it, and one that finds it started but within its limit is queued again
for `started_at` plus the limit. The job, when due, runs
`time_out_run`: in one transaction with the run's row locked, a run still in flight
(queued, also behind a gate; running; sleeping; waiting; paused) fails for good, with
the usual consequences of `fail_run` (a parent waiting on it sees the error, the failure
is announced, the gates hear a gated run stopped). A run that ended meanwhile, or for
`start` one that started, is left as it is: the job ends without effect.

The limit is read when the job runs: a redeploy that removed it leaves the run alone,
one that lengthened it queues the check again for the new time.

A running run stops at its next step boundary, as a cancelled one does: it is listed in
`stopping_runs` and keeps its `job_id`; the step in flight finishes and its output is
committed, no further step starts, and its job lets it go (`let_go_cancelled`: the job's
row deleted, the gates told), its final transitions moving nothing (they only move a
`running` run).
"""

from datetime import timedelta

import asyncpg

from reverb.engine_errors import FUNCTION_TIMEOUT
from reverb_store import jobs
from reverb_store.execution.failures import announce_failure
from reverb_store.execution.gates import NO_GATES, Gates
from reverb_store.execution.parents import resume_parent
from reverb_store.execution.records import ErrorRecord
from reverb_store.ids import RunId

_IN_FLIGHT = "('queued', 'running', 'sleeping', 'waiting', 'paused')"

# The run, if in flight, with its limit as its function has it now (a redeploy may have
# changed it since the job was queued) and the time left until the limit passes.
_LOCK = f"""
SELECT r.status, r.job_id, r.started_at, f.start_timeout, f.finish_timeout,
    CASE WHEN $2 = 'start' THEN r.created_at + f.start_timeout
         ELSE r.started_at + f.finish_timeout END - now() AS remaining
FROM reverb.runs r LEFT JOIN reverb.functions f ON f.id = r.function_id
WHERE r.id = $1 AND r.status IN {_IN_FLIGHT}
FOR UPDATE OF r
"""

# A running run keeps its job until the job lets it go at its next step boundary (as a
# cancelled one does: `stopping_runs`, `cancellation.let_go_cancelled`); any other's
# job row (none, or a wake-up's hint) is left to end at its claim.
_FAIL = """
WITH stopping AS (
    INSERT INTO reverb.stopping_runs (run_id) SELECT $1 WHERE $3
    ON CONFLICT (run_id) DO NOTHING
)
UPDATE reverb.runs SET status = 'failed', error = $2::jsonb,
    job_id = CASE WHEN $3 THEN job_id END, ended_at = now(), updated_at = now()
WHERE id = $1
RETURNING parent_run_id, parent_step_id, id, function_id, app_id, gated
"""


def timeout_error(limit: jobs.TimeoutLimit, duration: str) -> ErrorRecord:
    """The error a timed-out run fails with."""
    if limit == "start":
        message = f"the run did not start within its function's start timeout ({duration})"
    else:
        message = f"the run did not finish within its function's finish timeout ({duration})"
    return ErrorRecord(FUNCTION_TIMEOUT.name, message)


def _duration(value: timedelta | None) -> str:
    if value is None:
        return "since removed"
    seconds = value.total_seconds()
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


async def time_out_run(
    connection: asyncpg.Connection,
    run_id: RunId,
    limit: jobs.TimeoutLimit,
    wakeups: jobs.Wakeups,
    gates: Gates = NO_GATES,
) -> bool:
    """Fail the run with FunctionTimeout if `limit` applies to it still: it is in flight,
    for `start` it has not started, and its function's limit (as registered now) has
    passed. A limit a redeploy lengthened is checked again when it passes (a new job,
    `wakeups` hears of it); one it removed no longer applies. True if it failed the run."""
    async with connection.transaction():
        row = await connection.fetchrow(_LOCK, run_id, limit)
        if row is None or (limit == "start" and row["started_at"] is not None):
            return False
        remaining: timedelta | None = row["remaining"]
        if limit == "finish" and row["started_at"] is None and row["finish_timeout"]:
            # Not started yet: the limit cannot pass before this much time from now.
            remaining = row["finish_timeout"]
        if remaining is None:
            return False  # the function, or its limit, is gone
        if remaining > timedelta(0):
            await jobs.schedule(connection, [jobs.TimeOutRun(run_id, limit)], [remaining], wakeups)
            return False
        duration = row["start_timeout"] if limit == "start" else row["finish_timeout"]
        error = timeout_error(limit, _duration(duration))
        running = row["status"] == "running"
        failed = await connection.fetchrow(_FAIL, run_id, error.to_json(), running)
        assert failed is not None  # the row is locked and in flight
        if failed["parent_run_id"] is not None:
            await resume_parent(
                connection, failed["parent_run_id"], failed["parent_step_id"], error=error
            )
        await announce_failure(connection, run_id, error, gates)
        return True
