"""`step.invoke`: a child run started from a step, and the parent resumed by its end."""

from datetime import timedelta

import asyncpg

from reverb.engine_errors import FUNCTION_NOT_FOUND
from reverb_store import jobs
from reverb_store.execution.gates import NO_GATES, FunctionRef, Gates
from reverb_store.execution.records import ErrorRecord, StepState, StepTiming
from reverb_store.execution.steps import step_state
from reverb_store.flow.options import parse
from reverb_store.ids import FunctionId, RunId, StepId, new_id

# The event a child run receives: its data is what the parent passed to `invoke`.
INVOKED_EVENT = "reverb/function.invoked"

_INSERT_STEP = """
INSERT INTO reverb.steps
    (run_id, id, name, kind, status, wake_at, child_run_id, started_at)
VALUES ($1, $2, $3, 'invoke', 'waiting', now() + $4::interval, $5, coalesce($6, now()))
ON CONFLICT (run_id, id) DO NOTHING
RETURNING id
"""

_INSERT_FAILED_STEP = """
INSERT INTO reverb.steps (run_id, id, name, kind, status, error, started_at, ended_at)
VALUES ($1, $2, $3, 'invoke', 'failed', $4::jsonb, coalesce($5, now()), now())
ON CONFLICT (run_id, id) DO NOTHING
RETURNING id
"""

_INSERT_EVENT = """
INSERT INTO reverb.events (id, name, data, ts) VALUES ($1, $2, $3::jsonb, now())
"""

_INSERT_CHILD = """
INSERT INTO reverb.runs
    (id, function_id, app_id, status, event_ids, max_attempts, parent_run_id, parent_step_id,
     traceparent, gated)
VALUES ($1, $2, $3, 'queued', ARRAY[$4::text], $5, $6, $7, $8, $9)
"""


async def start_child(
    connection: asyncpg.Connection,
    run_id: RunId,
    timing: StepTiming,
    *,
    function_id: FunctionId,
    data: str,
    wait_limit: timedelta,
    traceparent: str | None,
    gates: Gates = NO_GATES,
) -> StepState:
    """Record the invoke step as waiting and start the child run, in one transaction.

    A step already recorded starts nothing (its state is returned). An unknown
    function fails the step at once. The child is gated if a run gate applies to its
    function (`admission`).
    """
    async with connection.transaction():
        function = await connection.fetchrow(
            "SELECT app_id, retries, flow::text AS flow FROM reverb.functions WHERE id = $1",
            function_id,
        )
        if function is None:
            error = ErrorRecord(
                FUNCTION_NOT_FOUND.name, f"no function {function_id!r} is registered"
            )
            inserted = await connection.fetchval(
                _INSERT_FAILED_STEP,
                run_id,
                timing.step_id,
                timing.name,
                error.to_json(),
                timing.started_at,
            )
            if inserted is None:
                return await step_state(connection, run_id, timing.step_id)
            return StepState("failed", None, error)
        child_id = new_id()
        inserted = await connection.fetchval(
            _INSERT_STEP,
            run_id,
            timing.step_id,
            timing.name,
            wait_limit,
            child_id,
            timing.started_at,
        )
        if inserted is None:
            return await step_state(connection, run_id, timing.step_id)
        event_id = new_id()
        await connection.execute(_INSERT_EVENT, event_id, INVOKED_EVENT, data)
        await connection.execute(
            _INSERT_CHILD,
            child_id,
            function_id,
            function["app_id"],
            event_id,
            function["retries"] + 1,
            run_id,
            timing.step_id,
            traceparent,
            bool(gates)
            and gates.applies(
                FunctionRef(function_id, function["app_id"], parse(function["flow"]))
            ),
        )
        await jobs.enqueue(connection, [jobs.AdvanceRun(child_id, traceparent)])
        return StepState("waiting")


async def resume_parent(
    connection: asyncpg.Connection,
    parent_run_id: RunId,
    step_id: StepId,
    *,
    output: str | None = None,
    error: ErrorRecord | None = None,
) -> bool:
    """Resolve the parent's invoke step with the child's output or error; wake the parent.

    Call inside the child's final transaction. The parent's row is locked first,
    so that a parent suspending at the same moment either sees the step resolved
    or is woken here. Returns whether the step was still waiting.
    """
    parent = await connection.fetchrow(
        "SELECT status, traceparent FROM reverb.runs WHERE id = $1 FOR UPDATE", parent_run_id
    )
    if parent is None:
        return False
    if error is None:
        status = await connection.execute(
            "UPDATE reverb.steps SET status = 'completed', output = $3::jsonb, wake_at = NULL,"
            " ended_at = now() WHERE run_id = $1 AND id = $2 AND status = 'waiting'",
            parent_run_id,
            step_id,
            output if output is not None else "null",
        )
    else:
        status = await connection.execute(
            "UPDATE reverb.steps SET status = 'failed', error = $3::jsonb, wake_at = NULL,"
            " ended_at = now() WHERE run_id = $1 AND id = $2 AND status = 'waiting'",
            parent_run_id,
            step_id,
            error.to_json(),
        )
    if status != "UPDATE 1":
        return False
    if parent["status"] in ("sleeping", "waiting"):
        await connection.execute(
            "UPDATE reverb.runs SET status = 'queued', updated_at = now() WHERE id = $1",
            parent_run_id,
        )
        await jobs.enqueue(connection, [jobs.AdvanceRun(parent_run_id, parent["traceparent"])])
    return True
