"""The debounce gate: a debounced run waits until its window ends, then starts with the
window's last event.

The fan-out (`execution.arrivals`) opens a window with its run, held here
(`Hold("debounce", until)`: a delayed job at the window's end). Each event of the key
moves the end on; a wake-up that comes before the end is held again until the new end.
Once the end has passed, the gate deletes the window and gives the run the window's
event, in the claim's transaction, before the claim reads the run's events. The
window's row is locked by the gate and by the fan-out that joins it, so an event at the
edge either moves the end (the run is held again) or finds the window gone (it opens a
new one): never both, never neither.
"""

import asyncpg

from reverb_store.execution.arrivals import DEBOUNCE
from reverb_store.execution.gates import ADMIT, Candidate, Freed, FunctionRef, Hold, Verdict

NAME = DEBOUNCE

_WINDOW = """
SELECT event_id, due_at, due_at > clock_timestamp() AS open FROM reverb.debounces
WHERE run_id = $1 FOR UPDATE
"""

_CLOSE = """
WITH closed AS (DELETE FROM reverb.debounces WHERE run_id = $1)
UPDATE reverb.runs SET event_ids = ARRAY[$2::text] WHERE id = $1
"""


class DebounceGate:
    """Holds a debounced run until its window ends (see the module)."""

    name = NAME

    def applies(self, function: FunctionRef) -> bool:
        return function.flow.debounce is not None

    async def decide(self, connection: asyncpg.Connection, candidate: Candidate) -> Verdict:
        window = await connection.fetchrow(_WINDOW, candidate.run_id)
        if window is None:
            return ADMIT  # started before (a resume, a retry), or an invoked run
        if window["open"]:
            return Hold(NAME, until=window["due_at"])
        await connection.execute(_CLOSE, candidate.run_id, window["event_id"])
        return ADMIT

    async def freed(self, connection: asyncpg.Connection, run: Freed) -> None:
        return None
