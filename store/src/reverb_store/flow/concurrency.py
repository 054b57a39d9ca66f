"""The concurrency gate: at most `limit` runs per key execute steps at once.

A key's row in `concurrency_keys` is locked (keys in ascending order, after the run's
own row: the claim's lock order) by every admission and every free of the key, so the
count of its slots is exact whatever the number of workers, and no take in flight can
overshoot it: a run holds a slot from the claim that admits it (in the claim's
transaction) until the transition that stops it executing (complete, fail, retry,
suspend, release) deletes the slot in its own. Sleeping and waiting runs hold none.

A run that finds a key full is held in `concurrency_queue` at its rank (when it was
created, less its priority's seconds) and has no job: nothing polls it. A free wakes
the queue's first runs, as many as the key has room for; a woken run decides again
(a run may have taken the room meanwhile: it is held again, at its rank). A worker
killed while its runs hold slots leaves them `running` with their jobs: pgqueuer
hands the jobs on after the heartbeat timeout, the runs are taken over (a takeover
keeps its slots), and their ends free them.

A key paused by `RetryAfterError(pause_key=True)` holds every run that would take a
slot until the pause ends (`Hold("paused", until)`).

Slots of runs that stopped without telling the gates (a function removed meanwhile,
a cancellation outside a worker) are not counted: the count only sees slots of runs
still `running`, and such slots are deleted when the key is next admitted to.
"""

from datetime import timedelta

import asyncpg

from reverb_store.execution.gates import ADMIT, Candidate, Freed, FunctionRef, Hold, Verdict, wake
from reverb_store.flow.keys import RunEvent, key, priority, run_event
from reverb_store.flow.options import ConcurrencyLimit
from reverb_store.ids import RunId

NAME = "concurrency"

# The slots of runs executing under the key (this run's apart), without a lock: it only
# chooses how to lock. `mine`: this run executes under the key already (a takeover).
_LOOK = """
SELECT k.capacity, k.paused_until, now() AS now,
       (SELECT count(*) FROM reverb.concurrency_slots s JOIN reverb.runs r ON r.id = s.run_id
        WHERE s.key = $1 AND r.status = 'running' AND s.run_id <> $2) AS taken,
       EXISTS (SELECT FROM reverb.concurrency_slots WHERE key = $1 AND run_id = $2) AS mine
FROM (SELECT) AS one LEFT JOIN reverb.concurrency_keys k ON k.key = $1
"""

# Admissions and frees of a key lock its row exclusively, with the capacity of the
# deciding function's limit; a run that is about to be held locks it shared, so that
# holds wait only for frees and admissions, not for each other.
_LOCK = """
INSERT INTO reverb.concurrency_keys AS k (key, capacity) VALUES ($1, $2)
ON CONFLICT (key) DO UPDATE SET capacity = excluded.capacity
"""
_LOCK_SHARED = "SELECT FROM reverb.concurrency_keys WHERE key = $1 FOR SHARE"

# Under the key's lock (a statement of its own: its snapshot is taken after the lock),
# count again; take a slot if there is room, else join the key's queue.
_TAKE_OR_QUEUE = """
WITH taken AS (
    SELECT count(*) AS n FROM reverb.concurrency_slots s JOIN reverb.runs r ON r.id = s.run_id
    WHERE s.key = $1 AND r.status = 'running' AND s.run_id <> $2
), took AS (
    INSERT INTO reverb.concurrency_slots (key, run_id)
    SELECT $1, $2 FROM taken WHERE $5 AND n < $3
    ON CONFLICT DO NOTHING
), queued AS (
    INSERT INTO reverb.concurrency_queue (key, run_id, rank)
    SELECT $1, $2, $4 FROM taken WHERE NOT ($5 AND n < $3)
    ON CONFLICT (key, run_id) DO NOTHING
), unqueued AS (
    DELETE FROM reverb.concurrency_queue
    WHERE key = $1 AND run_id = $2 AND (SELECT $5 AND n < $3 FROM taken)
)
SELECT n < $3 AS room FROM taken
"""

# A run held under one key gives back the slot it took under another.
_GIVE_BACK = "DELETE FROM reverb.concurrency_slots WHERE run_id = $1 AND key = ANY($2::text[])"

_FREE = """
DELETE FROM reverb.concurrency_slots WHERE run_id = $1 RETURNING key
"""

_ROOM = """
SELECT k.capacity - (
    SELECT count(*) FROM reverb.concurrency_slots s JOIN reverb.runs r ON r.id = s.run_id
    WHERE s.key = k.key AND r.status = 'running'
) AS room
FROM reverb.concurrency_keys k WHERE k.key = $1
FOR UPDATE
"""

_NEXT = """
DELETE FROM reverb.concurrency_queue
WHERE (key, run_id) IN (
    SELECT key, run_id FROM reverb.concurrency_queue WHERE key = $1
    ORDER BY rank, run_id LIMIT $2
)
RETURNING run_id
"""


def keys_of(function: FunctionRef, event: RunEvent) -> list[tuple[str, ConcurrencyLimit]]:
    """The run's keys, each with its limit, in lock order."""
    keys = []
    for index, limit in enumerate(function.flow.concurrency):
        if limit.scope == "app":
            prefix = f"app:{function.app_id}"
        else:
            prefix = f"function:{function.function_id}"
        what = f"function {function.function_id!r}: concurrency[{index}].key"
        keys.append((key(prefix, limit.key, what, event), limit))
    return sorted(keys, key=lambda item: item[0])


class ConcurrencyGate:
    """At most `limit` executing runs per key (see the module)."""

    name = NAME

    def applies(self, function: FunctionRef) -> bool:
        return bool(function.flow.concurrency)

    async def decide(self, connection: asyncpg.Connection, candidate: Candidate) -> Verdict:
        function = FunctionRef(candidate.function_id, candidate.app_id, candidate.flow)
        event = await run_event(connection, candidate.run_id)
        rank = event.created_at - timedelta(seconds=_priority(function, event))
        took: list[str] = []
        held = False
        retry_at = None
        for name, limit in keys_of(function, event):
            look = await connection.fetchrow(_LOOK, name, candidate.run_id)
            assert look is not None
            if look["mine"]:
                continue  # a takeover: the run executes under this key already
            if look["paused_until"] is not None and look["paused_until"] > look["now"]:
                await connection.execute(_GIVE_BACK, candidate.run_id, took)
                return Hold("paused", look["paused_until"])
            likely_room = look["taken"] < limit.limit and not held
            if likely_room:
                await connection.execute(_LOCK, name, limit.limit)
            else:
                await connection.execute(_LOCK_SHARED, name)
            room = await connection.fetchval(
                _TAKE_OR_QUEUE, name, candidate.run_id, limit.limit, rank, likely_room
            )
            if likely_room and room:
                took.append(name)
            elif room:
                # Room appeared while this run looked (shared lock: it cannot take it):
                # the run waits in the queue, and tries again at once.
                held, retry_at = True, look["now"]
            else:
                held = True
        if held:
            await connection.execute(_GIVE_BACK, candidate.run_id, took)
            return Hold(NAME, retry_at)
        return ADMIT

    async def freed(self, connection: asyncpg.Connection, run: Freed) -> None:
        freed_keys = sorted(row["key"] for row in await connection.fetch(_FREE, run.run_id))
        for name in freed_keys:
            await wake_next(connection, name)


async def wake_next(connection: asyncpg.Connection, name: str) -> int:
    """Wake the first queued runs of key `name`, as many as it has room for (the key's
    row locked). Runs that ended meanwhile are dropped from the queue. The number woken."""
    woken = 0
    while True:
        room = await connection.fetchval(_ROOM, name)
        if room is None or room - woken <= 0:
            return woken
        rows = await connection.fetch(_NEXT, name, room - woken)
        if not rows:
            return woken
        for row in rows:
            woken += await wake(connection, row["run_id"])


def _priority(function: FunctionRef, event: RunEvent) -> int:
    what = f"function {function.function_id!r}: priority.run"
    return priority(function.flow.priority, what, event)


# A pause lasts at least until `until`; an earlier pause's later end is kept.
_PAUSE = """
UPDATE reverb.concurrency_keys
SET paused_until = greatest(paused_until, now() + $2::interval)
WHERE key IN (SELECT key FROM reverb.concurrency_slots WHERE run_id = $1)
RETURNING key
"""


async def pause_keys(connection: asyncpg.Connection, run_id: RunId, delay: timedelta) -> int:
    """Pause every concurrency key the run executes under for `delay` (PostgreSQL's clock):
    `RetryAfterError(pause_key=True)`. Until then no run of those keys is admitted (each is
    held `paused`, woken when the pause ends); runs executing under them go on. Called
    while the run still holds its slots (before the transition that frees them). The
    number of keys paused (0 for a run without a concurrency limit)."""
    return len(await connection.fetch(_PAUSE, run_id, delay))
