"""Completing many runs in one statement: the group commit of the common final.

`complete_run` (in `runs`) is the general transition; this is its batched form
for the common case, a run without a parent: one UPDATE for all of them,
their jobs deleted in the same statement (as every final transition does). A
run it does not complete (it has a parent to resume, or this job no longer drives
it) is left to `complete_run`. Gated runs are completed too when the batch is given
the worker's gates: the batch is then one transaction, the UPDATE and the gates told of
all its gated runs at once (`Gates.freed_many`: one statement frees their
concurrency slots); without gates they are left to `complete_run`.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from reverb_store.execution.gates import FREED_FLOW, NO_GATES, Gates, Handover, freed_of
from reverb_store.ids import JobId, RunId
from reverb_store.jobs import QUEUE_TABLE

# Lock order (docs/architecture.md, "Lock order"): the runs, by id, then their jobs, by
# id, each in a MATERIALIZED locking subselect whose sort comes before its locks; the
# UPDATE and the DELETE touch only rows those already hold. Without it the rows were
# locked in the input's order, and the batch deadlocked with the heartbeat (`keep`).
_COMPLETE_RUNS = f"""
WITH runs_locked AS MATERIALIZED (
    SELECT id FROM reverb.runs WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE
), done AS (
    UPDATE reverb.runs r
    SET status = 'completed', output = t.output, error = NULL, job_id = NULL,
        ended_at = now(), updated_at = now()
    FROM unnest($1::text[], $2::bigint[], $3::jsonb[]) AS t(run_id, job_id, output)
    WHERE r.id = t.run_id AND r.id IN (SELECT id FROM runs_locked)
      AND r.status = 'running' AND r.job_id = t.job_id
      AND r.parent_run_id IS NULL {{gated}}
    RETURNING r.id, t.job_id{{returning}}
), jobs_locked AS MATERIALIZED (
    SELECT id FROM {QUEUE_TABLE} WHERE id IN (SELECT job_id FROM done) ORDER BY id FOR UPDATE
), ended AS (
    DELETE FROM {QUEUE_TABLE} WHERE id IN (SELECT id FROM jobs_locked)
)
SELECT * FROM done
"""
_COMPLETE_UNGATED = _COMPLETE_RUNS.format(gated="AND NOT r.gated", returning="")
# With the gates: gated runs too, with what `tell_freed` needs.
_COMPLETE_ANY = _COMPLETE_RUNS.format(
    gated="", returning=f", r.function_id, r.app_id, r.gated, {FREED_FLOW}"
)


# One run (an idle worker's completions, one at a time): a single-run transition locks its
# run, then its job (the lock order's rule for one run), so it needs no locking subselect,
# which cost a lone completion about 0.07 ms.
_COMPLETE_ONE = f"""
WITH done AS (
    UPDATE reverb.runs r
    SET status = 'completed', output = t.output, error = NULL, job_id = NULL,
        ended_at = now(), updated_at = now()
    FROM unnest($1::text[], $2::bigint[], $3::jsonb[]) AS t(run_id, job_id, output)
    WHERE r.id = t.run_id AND r.status = 'running' AND r.job_id = t.job_id
      AND r.parent_run_id IS NULL AND NOT r.gated
    RETURNING r.id, t.job_id
), ended AS (
    DELETE FROM {QUEUE_TABLE} WHERE id IN (SELECT job_id FROM done)
)
SELECT * FROM done
"""


@dataclass(frozen=True, slots=True)
class RunCompletion:
    """A run's result, to be stored by the job driving it."""

    run_id: RunId
    job_id: JobId
    # JSON text.
    output: str
    # Whether run gates decide on the run (`ClaimedRun.gated`).
    gated: bool = False


async def complete_runs(
    connection: asyncpg.Connection,
    completions: Sequence[RunCompletion],
    gates: Gates = NO_GATES,
    handover: Handover | None = None,
) -> list[bool]:
    """Complete the parentless runs these jobs drive, in one statement; one flag per input.

    False: not completed here (a parent waits on it, the run is gated and `gates` are
    none, or the job no longer drives it); `complete_run` tells which. Raises
    asyncpg.DataError if an output is not storable JSON (then none is stored).
    `handover`: the worker's, to drive the held runs the freed capacity admits itself.
    """
    arguments = (
        [item.run_id for item in completions],
        [item.job_id for item in completions],
        [item.output for item in completions],
    )
    if not gates or not any(item.gated for item in completions):
        single = len(completions) == 1
        rows = await connection.fetch(_COMPLETE_ONE if single else _COMPLETE_UNGATED, *arguments)
    else:
        async with connection.transaction():
            rows = await connection.fetch(_COMPLETE_ANY, *arguments)
            freed = [freed_of(row, "completed", row["flow"]) for row in rows if row["gated"]]
            if freed:
                await gates.freed_many(connection, freed, handover)
    done = {row["id"] for row in rows}
    return [item.run_id in done for item in completions]
