"""Fan-out: the runs an event triggers, created once per (function, event)."""

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from reverb_store import jobs
from reverb_store.ids import new_id


@dataclass(frozen=True, slots=True)
class TriggeredRun:
    run_id: str
    function_id: str
    event_id: str


_MATCHES = """
SELECT DISTINCT t.position, e.id AS event_id, f.id AS function_id, f.app_id, f.retries
FROM unnest($1::text[]) WITH ORDINALITY AS t(id, position)
JOIN reverb.events e ON e.id = t.id
JOIN reverb.triggers tr ON tr.event_name = e.name
JOIN reverb.functions f ON f.id = tr.function_id
ORDER BY t.position, f.id
"""

_INSERT_RUNS = """
INSERT INTO reverb.runs (id, function_id, app_id, status, event_ids, max_attempts, traceparent)
SELECT t.id, t.function_id, t.app_id, 'queued', ARRAY[t.event_id], t.max_attempts, $6
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[])
     AS t(id, function_id, app_id, event_id, max_attempts)
ON CONFLICT (function_id, (event_ids[1])) WHERE parent_run_id IS NULL AND cardinality(event_ids) > 0
DO NOTHING
RETURNING id, function_id, event_ids[1] AS event_id
"""


async def create_runs(
    connection: asyncpg.Connection, event_ids: Sequence[str], traceparent: str | None
) -> list[TriggeredRun]:
    """Create one queued run per function listening to each event, and its `advance_run` job.

    One transaction. A (function, event) pair that already has a run gets no
    new one, so a retried fan-out job adds nothing. Returns the runs created.
    """
    async with connection.transaction():
        matches = await connection.fetch(_MATCHES, list(event_ids))
        if not matches:
            return []
        rows = await connection.fetch(
            _INSERT_RUNS,
            [new_id() for _ in matches],
            [match["function_id"] for match in matches],
            [match["app_id"] for match in matches],
            [match["event_id"] for match in matches],
            [match["retries"] + 1 for match in matches],
            traceparent,
        )
        created = [TriggeredRun(row["id"], row["function_id"], row["event_id"]) for row in rows]
        advance = [jobs.AdvanceRun(run.run_id, traceparent) for run in created]
        await jobs.enqueue(connection, advance)
        return created
