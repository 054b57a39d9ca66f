"""A run's cancellation read from reverb.runs, as a log document.

A run is cancelled where the cancel is asked: by the gateway (`POST /runs/{id}/cancel`,
`POST /runs/cancel`), by the worker (an event of its `cancel_on`, a cron tick replacing
it, a rate limit skipping it), in the asker's transaction, whatever process drives the
run, or none (a sleeping run). The run's row records all of it (status `cancelled`,
the error, `ended_at`), so its `run.cancelled` document is made from that row when the
run's logs are read, as step completions are (`steps`), and no process that cancels
needs a log writer.
"""

import hashlib

import asyncpg

from reverb_store.execution.records import ErrorRecord
from reverb_store.logs.documents import RUN_CANCELLED, LogDocument, trace_ids

_CANCELLED = """
SELECT r.ended_at, r.error, r.attempt, r.function_id, r.event_ids[1] AS event_id,
       e.name AS event_name, r.traceparent
FROM reverb.runs r
LEFT JOIN reverb.events e ON e.id = r.event_ids[1]
WHERE r.id = $1 AND r.status = 'cancelled' AND r.ended_at IS NOT NULL
"""


async def cancellation(connection: asyncpg.Connection, run_id: str) -> list[LogDocument]:
    """The run's `run.cancelled` document, if it was cancelled (else none)."""
    row = await connection.fetchrow(_CANCELLED, run_id)
    if row is None:
        return []
    error = None if row["error"] is None else ErrorRecord.from_json(row["error"])
    reason = "" if error is None or not error.message else f": {error.message}"
    trace_id, span_id = trace_ids(row["traceparent"])
    return [
        LogDocument(
            id=_stable_id(run_id),
            timestamp=row["ended_at"],
            level="warning",
            kind=RUN_CANCELLED,
            message=f"run cancelled{reason}",
            event_id=row["event_id"],
            event_name=row["event_name"],
            run_id=run_id,
            function_id=row["function_id"],
            attempt=row["attempt"],
            error=error,
            trace_id=trace_id,
            span_id=span_id,
        )
    ]


def _stable_id(run_id: str) -> int:
    """The same id at every read (63 bits of a digest of the run id and the moment)."""
    digest = hashlib.blake2b(f"{run_id}\0{RUN_CANCELLED}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1
