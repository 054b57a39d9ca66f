"""Skipped runs: an event that started no run of a function listening to it, and why.

`GET /events/{id}` lists them as `skipped: [{"function_id", "reason"}]`. A reason is a
short word naming what decided: `paused` (the function was paused: the fan-out records
it in its own statement, `fanout`), and the reasons flow control adds (they call
`record_skips` in the transaction that decides). One skip is kept per (event, function):
the first reason recorded stays, so a retried fan-out records nothing twice.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from reverb_store.ids import EventId, FunctionId

# The reason of the runs a paused function did not start.
PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class SkippedRun:
    """A run an event did not start."""

    event_id: EventId
    function_id: FunctionId
    # A short word: `paused`, or a flow-control reason.
    reason: str


_RECORD = """
INSERT INTO reverb.event_skips (event_id, function_id, reason)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
ON CONFLICT (event_id, function_id) DO NOTHING
"""


async def record_skips(connection: asyncpg.Connection, skips: Sequence[SkippedRun]) -> None:
    """Record skipped runs, in the caller's transaction (a pair recorded before keeps its
    first reason). ValueError for an empty reason."""
    if not skips:
        return
    if any(not skip.reason for skip in skips):
        raise ValueError("a skipped run needs a reason")
    await connection.execute(
        _RECORD,
        [skip.event_id for skip in skips],
        [skip.function_id for skip in skips],
        [skip.reason for skip in skips],
    )


async def skips_of_event(connection: asyncpg.Connection, event_id: EventId) -> list[SkippedRun]:
    """The runs the event did not start, by function id."""
    rows = await connection.fetch(
        "SELECT event_id, function_id, reason FROM reverb.event_skips WHERE event_id = $1"
        " ORDER BY function_id",
        event_id,
    )
    return [SkippedRun(row["event_id"], row["function_id"], row["reason"]) for row in rows]
