"""Pausing a function (incident containment): no new runs, runs in flight stop, resume.

While `functions.paused_at` is set:
- the fan-out creates no run of the function: each event is recorded as skipped with
  reason `paused`, in the fan-out's own statement (`fanout`);
- a claim of one of its runs parks it (`park_run`): status `paused`, no job;
- a run executing stops at its next step boundary: the step commit reports it
  (`steps.commit_outputs`, `steps.stop_reason`), the worker releases it, and its claim
  parks it. A sleeping or waiting run is parked when it next wakes.

`resume_function` clears `paused_at` and queues every parked run again (each continues
from its memo), and with `replay_skipped` starts a run for every event skipped since the
pause began. Pause, resume and park serialize on the function's row: resume updates it,
a park reads it `FOR SHARE` before parking, so a run is never parked after the resume
that should have queued it.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from reverb_store import jobs
from reverb_store.execution.gates import NO_GATES, FunctionRef, Gates, tell_freed
from reverb_store.execution.skips import PAUSED
from reverb_store.ids import AppId, FunctionId, JobId, RunId, new_id


@dataclass(frozen=True, slots=True)
class Resumed:
    """What a resume did."""

    # When the pause had begun (None: the function was not paused).
    paused_at: datetime | None
    # Parked runs queued again.
    runs: int
    # Runs started for events skipped while paused (with `replay_skipped`).
    replayed: int


async def pause_function(
    connection: asyncpg.Connection, function_id: FunctionId
) -> datetime | None:
    """Pause the function (a paused one stays paused since its first pause); return when
    the pause began. None if there is no such function."""
    paused_at: datetime | None = await connection.fetchval(
        "WITH paused AS (UPDATE reverb.functions SET paused_at = now(), updated_at = now()"
        " WHERE id = $1 AND paused_at IS NULL RETURNING paused_at)"
        " SELECT coalesce((SELECT paused_at FROM paused),"
        " (SELECT paused_at FROM reverb.functions WHERE id = $1))",
        function_id,
    )
    return paused_at


_LOCK_FUNCTION = "SELECT app_id, paused_at FROM reverb.functions WHERE id = $1 FOR UPDATE"

# The parked runs, locked in id order (docs/architecture.md, "Lock order"), queued with a
# job due now each.
_QUEUE_PARKED = f"""
WITH parked AS MATERIALIZED (
    SELECT id FROM reverb.runs WHERE function_id = $1 AND status = 'paused'
    ORDER BY id FOR UPDATE
), queued AS (
    UPDATE reverb.runs r SET status = 'queued', updated_at = now()
    FROM parked p WHERE r.id = p.id AND r.status = 'paused'
    RETURNING r.id, r.traceparent
), jobs AS (
    INSERT INTO {jobs.QUEUE_TABLE} (priority, entrypoint, payload, status, execute_after)
    SELECT {jobs.ADVANCE_RUN.sql_columns(run_id="id", traceparent="traceparent")},
           'queued', now()
    FROM queued
)
SELECT count(*) FROM queued
"""

_TAKE_SKIPPED = """
DELETE FROM reverb.event_skips
WHERE function_id = $1 AND reason = $2 AND skipped_at >= $3
RETURNING event_id, skipped_at
"""

# One run per skipped event, queued with its job (a pair that has a run already gets none).
_CREATE_RUNS = f"""
WITH created AS (
    INSERT INTO reverb.runs (id, function_id, app_id, status, event_ids, max_attempts, gated)
    SELECT t.id, $3, $4, 'queued', ARRAY[t.event_id], $5, $6
    FROM unnest($1::text[], $2::text[]) AS t(id, event_id)
    ON CONFLICT (function_id, (event_ids[1]))
        WHERE parent_run_id IS NULL AND replay_of IS NULL AND cardinality(event_ids) > 0
    DO NOTHING
    RETURNING id
), jobs AS (
    INSERT INTO {jobs.QUEUE_TABLE} (priority, entrypoint, payload, status, execute_after)
    SELECT {jobs.ADVANCE_RUN.sql_columns(run_id="id", traceparent="NULL::text")}, 'queued', now()
    FROM created
)
SELECT count(*) FROM created
"""


async def resume_function(
    connection: asyncpg.Connection,
    function_id: FunctionId,
    *,
    replay_skipped: bool = False,
    gates: Gates = NO_GATES,
) -> Resumed | None:
    """Resume the function: its parked runs are queued again, and with `replay_skipped`
    a run is started for each event skipped since the pause began. None if there is no
    such function; a function that was not paused resumes nothing."""
    async with connection.transaction():
        function = await connection.fetchrow(_LOCK_FUNCTION, function_id)
        if function is None:
            return None
        paused_at: datetime | None = function["paused_at"]
        if paused_at is None:
            return Resumed(None, 0, 0)
        await connection.execute(
            "UPDATE reverb.functions SET paused_at = NULL, updated_at = now() WHERE id = $1",
            function_id,
        )
        runs: int = await connection.fetchval(_QUEUE_PARKED, function_id)
        replayed = 0
        if replay_skipped:
            replayed = await _replay(connection, function_id, function["app_id"], paused_at, gates)
        return Resumed(paused_at, runs, replayed)


async def _replay(
    connection: asyncpg.Connection,
    function_id: FunctionId,
    app_id: AppId,
    paused_at: datetime,
    gates: Gates,
) -> int:
    skipped: Sequence[asyncpg.Record] = await connection.fetch(
        _TAKE_SKIPPED, function_id, PAUSED, paused_at
    )
    if not skipped:
        return 0
    retries: int = await connection.fetchval(
        "SELECT retries FROM reverb.functions WHERE id = $1", function_id
    )
    ordered = sorted(skipped, key=lambda row: (row["skipped_at"], row["event_id"]))
    gated = bool(gates) and gates.applies(FunctionRef(function_id, app_id))
    created: int = await connection.fetchval(
        _CREATE_RUNS,
        [new_id() for _ in ordered],
        [row["event_id"] for row in ordered],
        function_id,
        app_id,
        retries + 1,
        gated,
    )
    return created


_PARK = f"""
WITH parked AS (
    UPDATE reverb.runs SET status = 'paused', job_id = NULL, invocations = invocations - 1,
        updated_at = now()
    WHERE id = $1 AND status = 'running' AND job_id = $2
    RETURNING id, function_id, app_id, gated
), ended AS (
    DELETE FROM {jobs.QUEUE_TABLE} WHERE id = $2 AND EXISTS (SELECT FROM parked)
)
SELECT * FROM parked
"""


# What `park_run` did: parked the run; found the function resumed meanwhile (the claim
# goes on as usual); or found the run no longer driven by this job.
ParkOutcome = Literal["parked", "resumed", "lost"]


async def park_run(
    connection: asyncpg.Connection,
    run_id: RunId,
    job_id: JobId,
    function_id: FunctionId,
    gates: Gates = NO_GATES,
) -> ParkOutcome:
    """The claim found the run's function paused: park the run (`paused`, no job; the
    claim's invocation is given back) if the function still is."""
    async with connection.transaction():
        paused = await connection.fetchval(
            "SELECT paused_at IS NOT NULL FROM reverb.functions WHERE id = $1 FOR SHARE",
            function_id,
        )
        if not paused:
            return "resumed"
        row = await connection.fetchrow(_PARK, run_id, job_id)
        if row is None:
            return "lost"
        await tell_freed(connection, gates, row, "paused")
        return "parked"
