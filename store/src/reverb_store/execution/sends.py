"""`step.send_event`: events stored with their fan-out, and the step completed with their ids."""

from collections.abc import Sequence
from dataclasses import replace

import asyncpg
import orjson

from reverb_store.events import NewEvent, insert_events
from reverb_store.execution.records import StepState, StepTiming
from reverb_store.execution.steps import step_state
from reverb_store.ids import RunId, new_id

_INSERT_STEP = """
INSERT INTO reverb.steps (run_id, id, name, kind, status, output, started_at, ended_at)
VALUES ($1, $2, $3, 'send_event', 'completed', $4::jsonb, coalesce($5, now()), coalesce($6, now()))
ON CONFLICT (run_id, id) DO NOTHING
RETURNING id
"""


async def send_events(
    connection: asyncpg.Connection,
    run_id: RunId,
    timing: StepTiming,
    events: Sequence[NewEvent],
    traceparent: str | None,
) -> StepState:
    """Store the events (and their fan-out job) and the step, in one transaction.

    The step's output is the list of event ids. A step already recorded sends
    nothing again: its committed state is returned.
    """
    with_ids = [event if event.id else replace(event, id=new_id()) for event in events]
    ids = [event.id for event in with_ids]
    output = orjson.dumps(ids).decode()
    async with connection.transaction():
        inserted = await connection.fetchval(
            _INSERT_STEP,
            run_id,
            timing.step_id,
            timing.name,
            output,
            timing.started_at,
            timing.ended_at,
        )
        if inserted is None:
            return await step_state(connection, run_id, timing.step_id)
        await insert_events(connection, with_ids, traceparent)
        return StepState("completed", output)
