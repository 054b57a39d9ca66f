"""`step.invoke`: a child run started from a step, and the parent resumed by its end."""

from datetime import timedelta

import asyncpg

from reverb.engine_errors import FUNCTION_NOT_FOUND, RUN_SKIPPED
from reverb_store import jobs
from reverb_store.execution.arrivals import cancel_superseded, invoked_duplicate, invoked_singleton
from reverb_store.execution.gates import NO_GATES, FunctionRef, Gates
from reverb_store.execution.records import ErrorRecord, StepState, StepTiming
from reverb_store.execution.steps import step_state
from reverb_store.flow.keys import event_activation
from reverb_store.flow.options import parse
from reverb_store.ids import EventId, FunctionId, RunId, new_id

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
INSERT INTO reverb.events (id, name, data, ts) VALUES ($1, $2, $3::jsonb, now()) RETURNING ts
"""

# A duplicate invoke (the child's idempotency key is held): the step fails at once.
_FAIL_STEP = """
UPDATE reverb.steps SET status = 'failed', error = $3::jsonb, wake_at = NULL,
    child_run_id = NULL, ended_at = now()
WHERE run_id = $1 AND id = $2
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
    function (`admission`). The child's function's arrival options apply to the invoked
    event as to any event's: a duplicate of its idempotency key starts no child and fails
    the step at once (RunSkipped, the event skipped `idempotent`); a singleton child is
    recorded with its key (the singleton gate skips it, which fails the step, or in
    `cancel` mode cancels the key's other runs). Debounce and batch do not apply: the
    caller waits for a run of its own, with its own data.
    """
    superseded: list[RunId] = []
    state = await _start_child(
        connection,
        run_id,
        timing,
        function_id=function_id,
        data=data,
        wait_limit=wait_limit,
        traceparent=traceparent,
        gates=gates,
        superseded=superseded,
    )
    # Once the child is committed (its singleton entry with it), as the fan-out does.
    await cancel_superseded(connection, superseded, gates)
    return state


async def _start_child(
    connection: asyncpg.Connection,
    run_id: RunId,
    timing: StepTiming,
    *,
    function_id: FunctionId,
    data: str,
    wait_limit: timedelta,
    traceparent: str | None,
    gates: Gates,
    superseded: list[RunId],
) -> StepState:
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
        event_id = EventId(new_id())
        ts = await connection.fetchval(_INSERT_EVENT, event_id, INVOKED_EVENT, data)
        options = parse(function["flow"])
        activation = event_activation(event_id, INVOKED_EVENT, data, ts)
        if await invoked_duplicate(connection, function_id, event_id, options, activation):
            error = ErrorRecord(
                RUN_SKIPPED.name,
                f"skipped: idempotent (function {function_id!r} ran for this key within 24 hours)",
            )
            await connection.execute(_FAIL_STEP, run_id, timing.step_id, error.to_json())
            return StepState("failed", None, error)
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
            bool(gates) and gates.applies(FunctionRef(function_id, function["app_id"], options)),
        )
        child = RunId(child_id)
        superseded.extend(
            await invoked_singleton(connection, child, function_id, options, activation)
        )
        await jobs.enqueue(connection, [jobs.AdvanceRun(child_id, traceparent)])
        return StepState("waiting")
