"""Cancelling runs: one by id, or in bulk by function and creation time.

A cancelled run is final at once (`cancelled`, error RunCancelled, `ended_at` set), in
the caller's transaction, whatever it was doing:
- queued, sleeping, waiting or paused: nothing drives it; its pending jobs are hints
  that find it unclaimable and end;
- running: its job keeps `job_id`, the run is listed in `stopping_runs`, and the job
  learns of it at its next step boundary, the step commit (`steps.commit_outputs`,
  `steps.stop_reason`; the worker's final transitions only move a `running` run): the
  step in flight finishes and its output is committed, no further step starts, and the
  job lets the run go (`let_go_cancelled`).

The run gates are told of every gated run cancelled, in the cancelling transaction,
whatever it was doing: a running run's concurrency slots go to the runs waiting for
them at once (its job's letting go then finds nothing more to free).

Child runs (started by `step.invoke`) are cancelled with their parent, all the way
down; a run whose parent is not being cancelled resumes that parent with its invoke
step failed (RunCancelled), as any child's end does. Rows are locked in ascending id
order (docs/architecture.md, "Lock order"), then the parents resumed.
"""

from collections.abc import Collection
from datetime import datetime
from typing import Final

import asyncpg

from reverb.engine_errors import RUN_CANCELLED
from reverb_store.execution.gates import NO_GATES, Gates, tell_freed
from reverb_store.execution.parents import resume_parent
from reverb_store.execution.records import ErrorRecord, RunStatus
from reverb_store.ids import FunctionId, JobId, RunId
from reverb_store.jobs import QUEUE_TABLE

# The statuses a run can be cancelled from.
CANCELLABLE: Final[frozenset[RunStatus]] = frozenset(
    ("queued", "running", "sleeping", "waiting", "paused")
)
_LIVE = "('queued', 'running', 'sleeping', 'waiting', 'paused')"

# `{roots}` selects the runs asked for (with $1 the error); their live descendants join
# them. The locking subselect sorts before it locks, and re-checks each row's status
# once it holds it (a run that ended meanwhile is left as it ended).
_CANCEL = f"""
WITH RECURSIVE roots AS (
    SELECT id FROM reverb.runs WHERE {{roots}} AND status IN {_LIVE}
), tree AS (
    SELECT id FROM roots
    UNION
    SELECT r.id FROM reverb.runs r JOIN tree t ON r.parent_run_id = t.id
    WHERE r.parent_run_id IS NOT NULL AND r.status IN {_LIVE}
), locked AS MATERIALIZED (
    SELECT id, status, job_id FROM reverb.runs
    WHERE id IN (SELECT id FROM tree) AND status IN {_LIVE}
    ORDER BY id FOR UPDATE
), stopping AS (
    INSERT INTO reverb.stopping_runs (run_id)
    SELECT id FROM locked WHERE status = 'running'
    ON CONFLICT (run_id) DO NOTHING
)
UPDATE reverb.runs r
SET status = 'cancelled', error = $1::jsonb, ended_at = now(), updated_at = now(),
    job_id = CASE WHEN l.status = 'running' THEN l.job_id END
FROM locked l
WHERE r.id = l.id
RETURNING r.id, r.parent_run_id, r.parent_step_id, r.function_id, r.app_id, r.gated,
          l.status AS previous, r.id IN (SELECT id FROM roots) AS root
"""
_CANCEL_ONE = _CANCEL.format(roots="id = $2")
_CANCEL_MANY = _CANCEL.format(
    roots="function_id = $2 AND created_at >= $3 AND created_at < $4 AND status = ANY($5::text[])"
)


def cancelled_error(message: str = "the run was cancelled") -> ErrorRecord:
    """The error a cancelled run (and a parent's invoke step waiting on it) records."""
    return ErrorRecord(RUN_CANCELLED.name, message)


async def cancel_run(
    connection: asyncpg.Connection,
    run_id: RunId,
    *,
    error: ErrorRecord | None = None,
    gates: Gates = NO_GATES,
) -> RunStatus | None:
    """Cancel the run and its live descendants; return the run's status before the call.

    A status in `CANCELLABLE` means it is cancelled now; `cancelled`, that it already
    was (nothing changes); `completed` or `failed`, that it ended and is left alone.
    None if there is no such run. `error` defaults to `cancelled_error()`; `gates` are
    told of the gated runs cancelled (pass the gates the workers register: a running
    run's concurrency slots are handed on at once).
    """
    async with connection.transaction():
        rows = await connection.fetch(_CANCEL_ONE, (error or cancelled_error()).to_json(), run_id)
        await _settle(connection, rows, error or cancelled_error(), gates)
        for row in rows:
            if row["id"] == run_id:
                previous: RunStatus = row["previous"]
                return previous
        status: RunStatus | None = await connection.fetchval(
            "SELECT status FROM reverb.runs WHERE id = $1", run_id
        )
        return status


async def cancel_runs(
    connection: asyncpg.Connection,
    function_id: FunctionId,
    created_from: datetime,
    created_to: datetime,
    statuses: Collection[RunStatus] = CANCELLABLE,
    *,
    error: ErrorRecord | None = None,
    gates: Gates = NO_GATES,
) -> int:
    """Cancel the function's runs created in [created_from, created_to) whose status is
    in `statuses` (every live status by default), with their live descendants; return
    how many of the function's runs were cancelled (descendants not counted).

    ValueError if `statuses` names a status a run cannot be cancelled from.
    """
    refused = sorted(set(statuses) - CANCELLABLE)
    if refused:
        raise ValueError(f"runs cannot be cancelled from status {', '.join(refused)}")
    recorded = error or cancelled_error()
    async with connection.transaction():
        rows = await connection.fetch(
            _CANCEL_MANY,
            recorded.to_json(),
            function_id,
            created_from,
            created_to,
            sorted(statuses),
        )
        await _settle(connection, rows, recorded, gates)
    return sum(1 for row in rows if row["root"])


async def _settle(
    connection: asyncpg.Connection,
    rows: list[asyncpg.Record],
    error: ErrorRecord,
    gates: Gates,
) -> None:
    """Resume the parents outside the cancelled set; tell the gates what stopped."""
    cancelled = {row["id"] for row in rows}
    for row in rows:
        parent = row["parent_run_id"]
        if parent is not None and parent not in cancelled:
            await resume_parent(connection, parent, row["parent_step_id"], error=error)
        # A running run's gates are told now too, not when its job lets it go: its
        # slots go to the runs waiting for them while its last step finishes.
        await tell_freed(connection, gates, row, "cancelled")


# Runs first, then the job (docs/architecture.md, "Lock order"); nothing changes unless
# this job drives the run.
_LET_GO = f"""
WITH released AS (
    UPDATE reverb.runs SET job_id = NULL, updated_at = now()
    -- failed: a run timed out while running (`timeouts`); fail_run clears `job_id`.
    WHERE id = $1 AND job_id = $2 AND status IN ('cancelled', 'failed')
    RETURNING id, function_id, app_id, gated, status
), stopped AS (
    DELETE FROM reverb.stopping_runs WHERE run_id IN (SELECT id FROM released)
), ended AS (
    DELETE FROM {QUEUE_TABLE} WHERE id = $2 AND EXISTS (SELECT FROM released)
)
SELECT * FROM released
"""


async def let_go_cancelled(
    connection: asyncpg.Connection, run_id: RunId, job_id: JobId, gates: Gates = NO_GATES
) -> bool:
    """The job driving a run that was cancelled (or timed out: `timeouts`) stops driving
    it: the run's `job_id` is cleared, it leaves `stopping_runs`, and the job's row is
    deleted. False if the run is not one this job drives that must stop so."""
    async with connection.transaction():
        row = await connection.fetchrow(_LET_GO, run_id, job_id)
        if row is None:
            return False
        await tell_freed(connection, gates, row, row["status"])
        return True
