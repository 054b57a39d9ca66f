"""The batch gate: a batched run waits until its batch is full or its timeout passed,
then starts with all the batch's events (`ctx.events`, oldest first).

The fan-out (`execution.arrivals`) opens a batch with its run, held here
(`Hold("batch", until)`: a delayed job at the timeout); a batch that fills is closed by
the fan-out and its run woken at once. The gate closes the batch (deletes it) and gives
the run its events, in the claim's transaction, before the claim reads them. The
batch's row is locked by the gate and by the fan-out that joins it.
"""

import asyncpg

from reverb_store.execution.arrivals import BATCH
from reverb_store.execution.gates import ADMIT, Candidate, Freed, FunctionRef, Hold, Verdict

NAME = BATCH

_BATCH = """
SELECT event_ids, due_at, open AND due_at > clock_timestamp() AS open FROM reverb.batches
WHERE run_id = $1 FOR UPDATE
"""

# Oldest first, whatever order the fan-outs added them in.
_CLOSE = """
WITH closed AS (DELETE FROM reverb.batches WHERE run_id = $1)
UPDATE reverb.runs
SET event_ids = (SELECT array_agg(e.id ORDER BY e.ts, e.id) FROM reverb.events e
                 WHERE e.id = ANY($2::text[]))
WHERE id = $1
"""


class BatchGate:
    """Holds a batched run until its batch is full or timed out (see the module)."""

    name = NAME

    def applies(self, function: FunctionRef) -> bool:
        return function.flow.batch is not None

    async def decide(self, connection: asyncpg.Connection, candidate: Candidate) -> Verdict:
        batch = await connection.fetchrow(_BATCH, candidate.run_id)
        if batch is None:
            return ADMIT  # started before (a resume, a retry), or an invoked run
        if batch["open"]:
            return Hold(NAME, until=batch["due_at"])
        await connection.execute(_CLOSE, candidate.run_id, batch["event_ids"])
        return ADMIT

    async def freed(self, connection: asyncpg.Connection, run: Freed) -> None:
        return None
