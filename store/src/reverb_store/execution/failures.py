"""A run that failed for good is announced: the event `reverb/function.failed`, and a run of
its function's `on_failure` handler, in the transaction that fails it.

The event's data is `{"function_id", "run_id", "event", "error": {"type", "message",
"stack"}}` (`event`: the failed run's triggering event `{"id", "name", "data", "ts"}`, or
null for a run without one). It is stored with its fan-out job when a function listens
to it (any function may, for global alerting), like any event a step sends.

The handler (`functions.on_failure`, a function of the same app the SDK registers as
`<id>-failure` with no trigger of its own) gets a run created here, on that event, with
its `advance_run` job: the fan-out never matches it, so it runs for its own function's
failures only. The one-run-per-(function, event) index makes this idempotent.

A run triggered by `reverb/function.failed` itself (a handler, or a listener) that
fails announces nothing: a failing alert must not feed itself.
"""

from datetime import UTC, datetime

import asyncpg
import orjson

from reverb_store import jobs
from reverb_store.events import NewEvent, insert_events
from reverb_store.execution.gates import NO_GATES, FunctionRef, Gates
from reverb_store.execution.records import ErrorRecord
from reverb_store.ids import RunId, new_id

FAILED_EVENT = "reverb/function.failed"

_FAILED = """
SELECT r.function_id, r.traceparent, e.id AS event_id, e.name, e.data::text AS data, e.ts,
       h.id AS handler_id, h.app_id AS handler_app_id, h.retries AS handler_retries
FROM reverb.runs r
LEFT JOIN reverb.events e ON e.id = r.event_ids[1]
LEFT JOIN reverb.functions f ON f.id = r.function_id
LEFT JOIN reverb.functions h ON h.id = f.on_failure
WHERE r.id = $1
"""

_HANDLER_RUN = """
INSERT INTO reverb.runs
    (id, function_id, app_id, status, event_ids, max_attempts, traceparent, gated)
VALUES ($1, $2, $3, 'queued', ARRAY[$4::text], $5, $6, $7)
ON CONFLICT (function_id, (event_ids[1]))
    WHERE parent_run_id IS NULL AND replay_of IS NULL AND cardinality(event_ids) > 0
DO NOTHING
RETURNING id
"""


async def announce_failure(
    connection: asyncpg.Connection,
    run_id: RunId,
    error: ErrorRecord,
    gates: Gates = NO_GATES,
) -> None:
    """Emit `reverb/function.failed` for the run and start its function's failure handler.
    Call inside the transaction that fails the run."""
    row = await connection.fetchrow(_FAILED, run_id)
    if row is None or row["name"] == FAILED_EVENT:
        return
    trigger = None
    if row["event_id"] is not None:
        trigger = {
            "id": row["event_id"],
            "name": row["name"],
            "data": orjson.Fragment(row["data"]),
            "ts": _timestamp(row["ts"]),
        }
    data = {
        "function_id": row["function_id"],
        "run_id": run_id,
        "event": trigger,
        "error": {"type": error.type, "message": error.message, "stack": error.stack},
    }
    traceparent = row["traceparent"]
    (event_id,) = await insert_events(
        connection, [NewEvent(FAILED_EVENT, orjson.dumps(data).decode())], traceparent
    )
    handler = row["handler_id"]
    if handler is None:
        return
    handler_run = new_id()
    gated = bool(gates) and gates.applies(FunctionRef(handler, row["handler_app_id"]))
    created = await connection.fetchval(
        _HANDLER_RUN,
        handler_run,
        handler,
        row["handler_app_id"],
        event_id,
        row["handler_retries"] + 1,
        traceparent,
        gated,
    )
    if created is not None:
        await jobs.enqueue(connection, [jobs.AdvanceRun(handler_run, traceparent)])


def _timestamp(value: datetime) -> str:
    """As the HTTP API writes times: RFC 3339 in UTC with microseconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
