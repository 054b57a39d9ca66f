"""The throttle gate: at most `limit` run starts per `period`, per key, with `burst`.

Only a run's first start is throttled (a resume or a retry is not a start). The key's
row is locked while its state moves on (`arithmetic.throttle`, PostgreSQL's clock): a
run that may not start yet is given the next free slot at once, kept as its pass, and
held until that time (`Hold("throttle", until)`, a delayed job), so each throttled run
is woken once, at its own time, and none is dropped. A pass is kept until the run ends,
so a run a later gate holds (concurrency) does not take a second slot.
"""

import asyncpg

from reverb_store.execution.gates import ADMIT, Candidate, Freed, FunctionRef, Hold, Verdict
from reverb_store.flow import arithmetic
from reverb_store.flow.keys import key, run_event

NAME = "throttle"

_PASS = "SELECT at, now() AS now FROM reverb.flow_passes WHERE run_id = $1 AND gate = $2"

_LOCK_KEY = """
INSERT INTO reverb.throttle_keys AS k (key, tat) VALUES ($1, now())
ON CONFLICT (key) DO UPDATE SET tat = k.tat
RETURNING tat, now() AS now, xmax = 0 AS created
"""

_GRANT = """
WITH moved AS (UPDATE reverb.throttle_keys SET tat = $2 WHERE key = $1)
INSERT INTO reverb.flow_passes (run_id, gate, at) VALUES ($3, $4, $5)
"""

_FORGET = "DELETE FROM reverb.flow_passes WHERE run_id = $1 AND gate = $2"

ENDED = ("completed", "failed", "cancelled")


class ThrottleGate:
    """Delays run starts beyond the function's throttle (see the module)."""

    name = NAME

    def applies(self, function: FunctionRef) -> bool:
        return function.flow.throttle is not None

    async def decide(self, connection: asyncpg.Connection, candidate: Candidate) -> Verdict:
        throttle = candidate.flow.throttle
        if throttle is None or candidate.invocations > 0:
            return ADMIT
        granted = await connection.fetchrow(_PASS, candidate.run_id, NAME)
        if granted is not None:
            if granted["at"] <= granted["now"]:
                return ADMIT
            return Hold(NAME, granted["at"])
        event = await run_event(connection, candidate.run_id)
        what = f"function {candidate.function_id!r}: throttle.key"
        name = key(f"function:{candidate.function_id}", throttle.key, what, event)
        state = await connection.fetchrow(_LOCK_KEY, name)
        assert state is not None
        step = arithmetic.throttle(
            None if state["created"] else state["tat"],
            state["now"],
            limit=throttle.limit,
            period=throttle.period,
            burst=throttle.burst,
        )
        await connection.execute(_GRANT, name, step.tat, candidate.run_id, NAME, step.start_at)
        if step.start_at <= state["now"]:
            return ADMIT
        return Hold(NAME, step.start_at)

    async def freed(self, connection: asyncpg.Connection, run: Freed) -> None:
        if run.status in ENDED:
            await connection.execute(_FORGET, run.run_id, NAME)
