"""A parent's invoke step resolved by its child's end (`step.invoke`)."""

import asyncpg

from reverb_store import jobs
from reverb_store.execution.records import ErrorRecord
from reverb_store.ids import RunId, StepId


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
