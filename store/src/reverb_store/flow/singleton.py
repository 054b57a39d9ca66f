"""The singleton gate: one run at a time per key of a singleton function.

The fan-out (`execution.arrivals`) records every new run of a singleton function with
its key (`reverb.singletons`). A run is admitted, and holds the key (`admitted`), unless
another admitted run of the key has not ended: then it is skipped (`skip` mode,
`Skip("singleton")`, its events listed as skipped) or held (`cancel` mode,
`Hold("singleton")`: the fan-out cancelled the holder, and the holder's end wakes it).
A holder cancelled while it runs a step keeps the key until its job lets it go (its
step finishes and commits first), so two runs of a key never execute at once.

The admissions and ends of one key's runs are serialized by an advisory lock on the
key, taken after the run's own row (the claim's, or the transition's): a run held while
the holder ends is woken by that end, whichever commits first.
"""

import asyncpg

from reverb_store.execution.gates import ADMIT, Candidate, Freed, FunctionRef, Hold, Skip, Verdict
from reverb_store.execution.gates import wake as wake_run
from reverb_store.execution.skips import SkippedRun, record_skips
from reverb_store.flow.keys import lock_singleton_key
from reverb_store.flow.throttle import ENDED

NAME = "singleton"
REASON = "singleton"

_ENTRY = "SELECT function_id, key, admitted FROM reverb.singletons WHERE run_id = $1"

# `executing`: its job still drives it (a run cancelled while running, until let go).
_ENDED_ENTRY = """
SELECT s.function_id, s.key, s.admitted, r.job_id IS NOT NULL AS executing
FROM reverb.singletons s JOIN reverb.runs r ON r.id = s.run_id WHERE s.run_id = $1
"""

# A holder's entry goes when it ends (`freed`).
_HOLDER = """
SELECT run_id FROM reverb.singletons
WHERE function_id = $1 AND key = $2 AND admitted AND run_id <> $3 LIMIT 1
"""

_ADMIT = "UPDATE reverb.singletons SET admitted = true WHERE run_id = $1"

_DROP = """
WITH dropped AS (DELETE FROM reverb.singletons WHERE run_id = $1)
SELECT event_ids FROM reverb.runs WHERE id = $1
"""

_WAITING = """
SELECT s.run_id, r.status FROM reverb.singletons s JOIN reverb.runs r ON r.id = s.run_id
WHERE s.function_id = $1 AND s.key = $2 AND NOT s.admitted ORDER BY s.run_id
"""

_FORGET = "DELETE FROM reverb.singletons WHERE run_id = $1"


class SingletonGate:
    """One run at a time per key (see the module)."""

    name = NAME

    def applies(self, function: FunctionRef) -> bool:
        return function.flow.singleton is not None

    async def decide(self, connection: asyncpg.Connection, candidate: Candidate) -> Verdict:
        singleton = candidate.flow.singleton
        entry = await connection.fetchrow(_ENTRY, candidate.run_id)
        if singleton is None or entry is None or entry["admitted"]:
            return ADMIT  # holds the key already (a resume, a takeover), or has none
        await lock_singleton_key(connection, entry["function_id"], entry["key"])
        holder = await connection.fetchval(
            _HOLDER, entry["function_id"], entry["key"], candidate.run_id
        )
        if holder is None:
            await connection.execute(_ADMIT, candidate.run_id)
            return ADMIT
        if singleton.mode == "cancel":
            return Hold(NAME)  # the fan-out cancelled the holder: woken when it ends
        event_ids = await connection.fetchval(_DROP, candidate.run_id)
        await record_skips(
            connection,
            [SkippedRun(event_id, candidate.function_id, REASON) for event_id in event_ids or ()],
        )
        return Skip(REASON)

    async def freed(self, connection: asyncpg.Connection, run: Freed) -> None:
        if run.status not in ENDED:
            return
        entry = await connection.fetchrow(_ENDED_ENTRY, run.run_id)
        if entry is None or entry["executing"]:
            # A run cancelled in a step keeps the key until its job lets it go (the gates
            # are told again then): its step still executes.
            return
        await lock_singleton_key(connection, entry["function_id"], entry["key"])
        await connection.execute(_FORGET, run.run_id)
        # Not only a holder's end wakes the next run held (`cancel` mode): a run woken for
        # the key and cancelled before it was admitted passes the wake-up on, or the run
        # held behind it would never wake.
        holder = await connection.fetchval(_HOLDER, entry["function_id"], entry["key"], run.run_id)
        singleton = run.flow.singleton
        if holder is None and singleton is not None and singleton.mode == "cancel":
            await _wake_next(connection, entry["function_id"], entry["key"])


async def _wake_next(connection: asyncpg.Connection, function_id: str, key: str) -> None:
    """Wake the oldest run held for the key, dropping the entries of runs that ended
    without being admitted (cancelled while queued)."""
    for row in await connection.fetch(_WAITING, function_id, key):
        if row["status"] in ENDED:
            await connection.execute(_FORGET, row["run_id"])
            continue
        if await wake_run(connection, row["run_id"]):
            return
