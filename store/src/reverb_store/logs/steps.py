"""Step completions read from reverb.steps, as log documents.

A completed `step.run` is the one moment on the step path: writing a document for it
cost more than 5 % of the worker's and PostgreSQL's CPU per step (measured: worker
196 → 240 µs, PostgreSQL 165 → 174 µs), so by default (`REVERB_LOG_STEP_DOCUMENTS`
off) its document is made when a run's logs are read, from the step's row, which holds
everything it says. `merged` puts them among the run's written documents.
"""

import hashlib
from collections.abc import Sequence

import asyncpg

from reverb_store.logs.documents import STEP_COMPLETED, LogDocument, trace_ids

_COMPLETED = """
SELECT s.id, s.ended_at, s.attempts, r.function_id, r.event_ids[1] AS event_id,
       e.name AS event_name, r.traceparent
FROM reverb.steps s
JOIN reverb.runs r ON r.id = s.run_id
LEFT JOIN reverb.events e ON e.id = r.event_ids[1]
WHERE s.run_id = $1 AND s.kind = 'run' AND s.status = 'completed' AND s.ended_at IS NOT NULL
"""


async def completed_steps(connection: asyncpg.Connection, run_id: str) -> list[LogDocument]:
    """A `step.completed` document per completed step.run of the run (any order)."""
    rows = await connection.fetch(_COMPLETED, run_id)
    return [_document(run_id, row) for row in rows]


def merged(
    written: Sequence[LogDocument], derived: Sequence[LogDocument], offset: int, limit: int
) -> list[LogDocument]:
    """The page `offset`..`offset + limit` of both lists in (timestamp, id) order."""
    every = sorted([*written, *derived], key=lambda document: (document.timestamp, document.id))
    return every[offset : offset + limit]


def _document(run_id: str, row: asyncpg.Record) -> LogDocument:
    trace_id, span_id = trace_ids(row["traceparent"])
    return LogDocument(
        id=_stable_id(run_id, row["id"]),
        timestamp=row["ended_at"],
        level="info",
        kind=STEP_COMPLETED,
        message="step completed",
        event_id=row["event_id"],
        event_name=row["event_name"],
        run_id=run_id,
        function_id=row["function_id"],
        step_id=row["id"],
        attempt=row["attempts"] - 1,
        trace_id=trace_id,
        span_id=span_id,
    )


def _stable_id(run_id: str, step_id: str) -> int:
    """The same id at every read (63 bits of a digest of the run and step ids)."""
    digest = hashlib.blake2b(f"{run_id}\0{step_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1
