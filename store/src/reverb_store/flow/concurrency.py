"""The concurrency gate: at most `limit` runs per key execute steps at once.

A key's capacity is split into shards (`concurrency_shards`: one for a limit under 32,
up to 64 for larger ones), each a counter of the slots taken in it; a slot is a row of
`concurrency_slots` naming its shard. A run holds a slot from the claim that admits it
(in the claim's transaction) until the transition that stops it executing (complete,
fail, retry, suspend, release, cancel) deletes it in its own. Sleeping and waiting runs
hold none. A shard's `used` is never below its live slots (a take counts in the
statement that inserts its slot, a free after it deleted it), so a shard with room is
room under the limit, whatever the number of workers, and no take in flight can
overshoot it.

- **A take** is one statement in the claim's transaction: the first shard with room
  that no other transaction holds (`FOR UPDATE SKIP LOCKED`, from a random shard) is
  counted and the slot inserted. Its row stays locked only until the claim commits, and
  other takes skip it, so the admissions of one key do not queue behind each other.
- **A new key** is made by its first take (its row and shards, `_NEW_KEY`), which the
  other first takes wait for once; then they take as above.
- **The locked path**, when no shard with room is free (the key looks full, or its limit
  changed): the key's row and then all its shards are locked, the slots of
  runs still live are counted again in a statement of its own (its snapshot is taken
  after the locks; what stopped without telling the gates is forgotten there), and the
  run takes a slot or joins the key's `concurrency_queue` at its rank (created_at less
  the priority's seconds), with no job, and marks the shards `waiters`.
- **A free** deletes the run's slots and counts them off their shards. When the shard
  has waiters, the slot is handed over instead: in the freeing transaction the queue's
  first live run gets the slot and an `advance_run` job (committed with the transition;
  nothing polls), and its claim finds the slot its own. A free that found no waiter
  while it held the shard's lock clears the mark (a hold needs that lock to set it, so
  none can be missed).

A worker killed while its runs hold slots leaves them `running` with their jobs:
pgqueuer hands the jobs on after the heartbeat timeout, the runs are taken over (a
takeover keeps its slots), and their ends free them.

A key paused by `RetryAfterError(pause_key=True)` holds every run that would take a
slot until the pause ends (`Hold("paused", until)`).
"""

import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg

from reverb_store import jobs
from reverb_store.execution.gates import (
    ADMIT,
    Candidate,
    Freed,
    FunctionRef,
    HandedRun,
    Handover,
    Hold,
    Verdict,
)
from reverb_store.flow.keys import RunEvent, key, priority, run_event
from reverb_store.flow.options import ConcurrencyLimit
from reverb_store.ids import RunId

NAME = "concurrency"

# Shards of a key: one below SHARD_SIZE * 2, then one per SHARD_SIZE slots, at most
# MAX_SHARDS (a take locks one of them for the rest of its transaction, a free the ones
# its slots were in).
SHARD_SIZE = 16
MAX_SHARDS = 64

# The live slots: a run executing, or a queued run a free handed a slot to.
_LIVE = "r.status IN ('running', 'queued')"

# A take without waiting: this run's slot (a takeover, or handed over) or a shard with
# room no other transaction holds, counted with the slot's insert. The key's row, with
# this limit's capacity, says the shards are current; no row: the locked path. `room`:
# a shard had room (when the statement began), though others held every such shard.
# `{wait}` is `SKIP LOCKED`, or empty for the second try (`_TAKE_WAITING`), which waits
# for a shard with room (a shard whose room went meanwhile is passed over once locked).
_TAKE_TEMPLATE = """
WITH mine AS (
    SELECT FROM reverb.concurrency_slots WHERE key = $1 AND run_id = $2
), current AS (
    SELECT paused_until, coalesce(paused_until > now(), false) AS paused, capacity = $3 AS fresh
    FROM reverb.concurrency_keys WHERE key = $1
), pick AS (
    SELECT shard FROM reverb.concurrency_shards
    WHERE key = $1 AND used < capacity
      AND NOT EXISTS (SELECT FROM mine) AND EXISTS (SELECT FROM current WHERE fresh AND NOT paused)
    ORDER BY (shard + $4) % $5
    LIMIT 1
    FOR UPDATE {wait}
), took AS (
    UPDATE reverb.concurrency_shards s SET used = s.used + 1
    FROM pick WHERE s.key = $1 AND s.shard = pick.shard
    RETURNING s.shard
), slot AS (
    INSERT INTO reverb.concurrency_slots (key, run_id, shard) SELECT $1, $2, shard FROM took
), unqueued AS (
    DELETE FROM reverb.concurrency_queue
    WHERE key = $1 AND run_id = $2 AND EXISTS (SELECT FROM took)
)
SELECT EXISTS (SELECT FROM mine) AS mine, (SELECT shard FROM took) AS shard,
       (SELECT paused_until FROM current WHERE paused) AS paused_until,
       EXISTS (SELECT FROM current) AS known,
       CASE WHEN NOT EXISTS (SELECT FROM took) THEN EXISTS (
           SELECT FROM reverb.concurrency_shards WHERE key = $1 AND used < capacity
       ) END AS room,
       CASE WHEN NOT EXISTS (SELECT FROM took) THEN EXISTS (SELECT FROM current WHERE fresh) AND (
           SELECT bool_and(waiters) FROM reverb.concurrency_shards WHERE key = $1
       ) END AS waiters
"""
_TAKE = _TAKE_TEMPLATE.format(wait="SKIP LOCKED")
_TAKE_WAITING = _TAKE_TEMPLATE.format(wait="")

# A key no run took a slot of yet: its row and shards, unless another transaction made
# them (which it then waits for, once, instead of queueing behind every first take's
# lock of the key's row until its commit, as the locked path would): the take is tried
# again after it.
_NEW_KEY = """
WITH made AS (
    INSERT INTO reverb.concurrency_keys (key, capacity) VALUES ($1, $2)
    ON CONFLICT (key) DO NOTHING
    RETURNING key
)
INSERT INTO reverb.concurrency_shards (key, shard, capacity)
SELECT $1, g, $2 / $3 + (g < $2 % $3)::int FROM made, generate_series(0, $3 - 1) AS g
ON CONFLICT (key, shard) DO NOTHING
"""

# The locked path, first: the key's row (with the deciding function's limit), then its
# shards in order, rebuilt for that limit ($3 shards; slots of shards dropped move).
_LOCK = """
INSERT INTO reverb.concurrency_keys AS k (key, capacity) VALUES ($1, $2)
ON CONFLICT (key) DO UPDATE SET capacity = excluded.capacity
RETURNING paused_until, now() AS now
"""
_LOCK_SHARDS = """
WITH dropped AS (
    DELETE FROM reverb.concurrency_shards WHERE key = $1 AND shard >= $3
), moved AS (
    UPDATE reverb.concurrency_slots SET shard = shard % $3 WHERE key = $1 AND shard >= $3
)
INSERT INTO reverb.concurrency_shards AS s (key, shard, capacity)
SELECT $1, g, $2 / $3 + (g < $2 % $3)::int FROM generate_series(0, $3 - 1) AS g
ON CONFLICT (key, shard) DO UPDATE SET capacity = excluded.capacity
"""

# Then, under those locks (a statement of its own: its snapshot is taken after them),
# count every shard's live slots again, and take a slot in the first with room, or
# join the key's queue and mark the shards.
_TAKE_OR_QUEUE = f"""
WITH counts AS (
    SELECT sh.shard, sh.capacity,
           (SELECT count(*) FROM reverb.concurrency_slots s JOIN reverb.runs r ON r.id = s.run_id
            WHERE s.key = $1 AND s.shard = sh.shard AND {_LIVE} AND s.run_id <> $2) AS live
    FROM reverb.concurrency_shards sh WHERE sh.key = $1
), chosen AS (
    SELECT shard FROM counts WHERE live < capacity ORDER BY shard LIMIT 1
), counted AS (
    UPDATE reverb.concurrency_shards sh
    SET used = c.live + (c.shard IN (SELECT shard FROM chosen))::int,
        waiters = sh.waiters OR NOT EXISTS (SELECT FROM chosen)
    FROM counts c WHERE sh.key = $1 AND sh.shard = c.shard
), slot AS (
    INSERT INTO reverb.concurrency_slots (key, run_id, shard) SELECT $1, $2, shard FROM chosen
), queued AS (
    INSERT INTO reverb.concurrency_queue (key, run_id, rank)
    SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT FROM chosen)
    ON CONFLICT (key, run_id) DO NOTHING
), unqueued AS (
    DELETE FROM reverb.concurrency_queue
    WHERE key = $1 AND run_id = $2 AND EXISTS (SELECT FROM chosen)
)
SELECT EXISTS (SELECT FROM chosen)
"""

# The shared path of a hold, when the key is full and runs wait already (every shard
# marked): its shards locked shared, so that holds do not wait for each other, only
# for takes in the locked path and for frees (which then see the queued run); then, a
# statement of its own, the run joins the queue if the live slots fill the key still.
# False: room appeared meanwhile, or a mark was cleared (the run tries again at once).
_LOCK_SHARED = "SELECT FROM reverb.concurrency_shards WHERE key = $1 ORDER BY shard FOR SHARE"
_QUEUE = f"""
WITH full_key AS (
    SELECT bool_and(sh.waiters) AND sum(sh.capacity) <= (
        SELECT count(*) FROM reverb.concurrency_slots s JOIN reverb.runs r ON r.id = s.run_id
        WHERE s.key = $1 AND {_LIVE} AND s.run_id <> $2
    ) AS held
    FROM reverb.concurrency_shards sh WHERE sh.key = $1
), queued AS (
    INSERT INTO reverb.concurrency_queue (key, run_id, rank)
    SELECT $1, $2, $3 FROM full_key WHERE held
    ON CONFLICT (key, run_id) DO NOTHING
)
SELECT coalesce((SELECT held FROM full_key), false)
"""

# A free (of one run's slots, or of a group commit's runs'): the slots go, the runs
# leave any queue, and the slots are counted off their shards, the shards locked in
# (key, shard) order, unless a shard had waiters when the statement began (its slots
# are then handed over without the lock, `_HAND_OVER`). `waiters` of a counted shard is
# read after its lock: a hold that queued meanwhile committed before the free counts.
_FREE = """
WITH freed AS (
    DELETE FROM reverb.concurrency_slots WHERE run_id = ANY($1::text[]) RETURNING key, shard
), unqueued AS (
    DELETE FROM reverb.concurrency_queue WHERE run_id = ANY($1::text[]) AND NOT $2
), seen AS (
    SELECT f.key, f.shard, count(*)::int AS slots, coalesce(bool_or(sh.waiters), false) AS waiters
    FROM freed f LEFT JOIN reverb.concurrency_shards sh ON sh.key = f.key AND sh.shard = f.shard
    GROUP BY f.key, f.shard
), locked AS MATERIALIZED (
    SELECT sh.key, sh.shard, seen.slots FROM reverb.concurrency_shards sh
    JOIN seen ON seen.key = sh.key AND seen.shard = sh.shard AND NOT seen.waiters
    ORDER BY sh.key, sh.shard
    FOR UPDATE OF sh
), counted AS (
    UPDATE reverb.concurrency_shards sh SET used = greatest(sh.used - l.slots, 0)
    FROM locked l WHERE sh.key = l.key AND sh.shard = l.shard
    RETURNING sh.key, sh.shard, sh.waiters
)
SELECT s.key, s.shard, s.slots, c.key IS NOT NULL AS counted,
       coalesce(c.waiters, s.waiters) AS waiters
FROM seen s LEFT JOIN counted c ON c.key = s.key AND c.shard = s.shard
ORDER BY s.key, s.shard
"""

_COUNT_OFF = """
UPDATE reverb.concurrency_shards SET used = greatest(used - $3, 0)
WHERE key = $1 AND shard = $2
RETURNING waiters
"""

# The slot of shard $2 goes to the first live run queued for key $1, with its job (a
# run queued but not held, one cancelled meanwhile, is passed over): a wake-up due now,
# which workers take before new runs (a burst of new runs queued behind the key must not
# delay the runs it admits), or, with $4 (a `Handover`: the freeing worker has room), the
# job picked by that worker's queue manager, which drives the run once the free commits.
# With $3 (the free
# counted the slot off, holding the shard's lock) the slot is counted again if it was
# handed over, and the waiters mark cleared if nobody waits.
_HAND_OVER = f"""
WITH next AS (
    SELECT q.key, q.run_id, r.traceparent
    FROM reverb.concurrency_queue q JOIN reverb.runs r ON r.id = q.run_id
    WHERE q.key = $1 AND r.status = 'queued' AND r.job_id IS NULL
    ORDER BY q.rank, q.run_id
    LIMIT 1
    FOR UPDATE OF q SKIP LOCKED
), popped AS (
    DELETE FROM reverb.concurrency_queue q USING next
    WHERE q.key = next.key AND q.run_id = next.run_id
), slot AS (
    INSERT INTO reverb.concurrency_slots (key, run_id, shard) SELECT $1, run_id, $2 FROM next
    ON CONFLICT (key, run_id) DO NOTHING
), counted AS (
    UPDATE reverb.concurrency_shards
    SET used = used + (EXISTS (SELECT FROM next))::int, waiters = EXISTS (SELECT FROM next)
    WHERE $3 AND key = $1 AND shard = $2
), woken AS (
    INSERT INTO {jobs.QUEUE_TABLE}
        (priority, entrypoint, payload, status, queue_manager_id, execute_after, heartbeat)
    SELECT {jobs.WAKE_RUN.sql_columns(run_id="run_id", traceparent="traceparent")},
           CASE WHEN $4::uuid IS NULL THEN 'queued' ELSE 'picked' END::pgqueuer_status,
           $4::uuid, now(), now()
    FROM next
    RETURNING id
)
SELECT run_id, traceparent, (SELECT id FROM woken) AS job_id FROM next
"""


def keys_of(function: FunctionRef, event: RunEvent | None) -> list[tuple[str, ConcurrencyLimit]]:
    """The run's keys, each with its limit, in lock order (`event` is needed only when a
    limit has a key expression: `needs_event`)."""
    keys = []
    for index, limit in enumerate(function.flow.concurrency):
        if limit.scope == "app":
            prefix = f"app:{function.app_id}"
        else:
            prefix = f"function:{function.function_id}"
        what = f"function {function.function_id!r}: concurrency[{index}].key"
        keys.append((key(prefix, limit.key, what, event), limit))
    return sorted(keys, key=lambda item: item[0])


def needs_event(function: FunctionRef) -> bool:
    """Whether the run's keys depend on its event."""
    return any(limit.key is not None for limit in function.flow.concurrency)


def shards(limit: int) -> int:
    """How many shards a key of this limit has."""
    return max(1, min(MAX_SHARDS, limit // SHARD_SIZE))


class ConcurrencyGate:
    """At most `limit` executing runs per key (see the module)."""

    name = NAME

    def __init__(self, start: Callable[[], int] | None = None) -> None:
        # The shard a take tries first (spreads takes over a key's shards).
        self._start = start or (lambda: random.randrange(MAX_SHARDS))

    def applies(self, function: FunctionRef) -> bool:
        return bool(function.flow.concurrency)

    async def decide(self, connection: asyncpg.Connection, candidate: Candidate) -> Verdict:
        function = FunctionRef(candidate.function_id, candidate.app_id, candidate.flow)
        event = await run_event(connection, candidate.run_id) if needs_event(function) else None
        start = self._start()
        # Whether the run holds a slot under a key decided so far (given back if held).
        holding = False
        for name, limit in keys_of(function, event):
            count = shards(limit.limit)
            where = (name, candidate.run_id, limit.limit, start % count, count)
            take = await _take(connection, _TAKE, where)
            if not take["known"]:
                # A new key: made once, not in the locked path (see `_NEW_KEY`).
                await connection.execute(_NEW_KEY, name, limit.limit, count)
                take = await _take(connection, _TAKE, where)
            if take["shard"] is None and take["room"] and not take["mine"]:
                # Every shard with room was held by another take or free: wait for one.
                take = await _take(connection, _TAKE_WAITING, where)
            paused_until = take["paused_until"]
            if take["shard"] is not None:
                holding = True  # a slot taken
                continue
            if take["mine"] and (paused_until is None or candidate.status == "running"):
                holding = True  # a slot handed over, or a takeover: it executes under the key
                continue
            if paused_until is not None:
                return await _held(connection, candidate, Hold("paused", paused_until), True)
            if event is None:
                event = await run_event(connection, candidate.run_id)
            rank = event.created_at - timedelta(seconds=_priority(function, event))
            if take["waiters"]:
                # Full, and runs wait already: queue this one behind them.
                await connection.execute(_LOCK_SHARED, name)
                if await connection.fetchval(_QUEUE, name, candidate.run_id, rank):
                    return await _held(connection, candidate, Hold(NAME), holding)
                return await _held(connection, candidate, Hold(NAME, datetime.now(UTC)), holding)
            # The locked path.
            state = await connection.fetchrow(_LOCK, name, limit.limit)
            assert state is not None
            paused_until = state["paused_until"]
            if paused_until is not None and paused_until > state["now"]:
                return await _held(connection, candidate, Hold("paused", paused_until), True)
            await connection.execute(_LOCK_SHARDS, name, limit.limit, count)
            if not await connection.fetchval(_TAKE_OR_QUEUE, name, candidate.run_id, rank):
                return await _held(connection, candidate, Hold(NAME), holding)
            holding = True
        return ADMIT

    async def freed(self, connection: asyncpg.Connection, run: Freed) -> None:
        await release(connection, [run.run_id])

    async def freed_many(
        self,
        connection: asyncpg.Connection,
        runs: Sequence[Freed],
        handover: Handover | None = None,
    ) -> None:
        await release(connection, [run.run_id for run in runs], handover=handover)


async def release(
    connection: asyncpg.Connection,
    run_ids: Sequence[RunId],
    keep_queued: bool = False,
    handover: Handover | None = None,
) -> None:
    """Free the runs' slots (see the module): each is handed over to its key's first
    waiter, or counted off its shard. The runs leave the keys' queues unless
    `keep_queued` (a hold giving back what it took). With `handover`, the runs handed a
    slot are driven by the freeing worker while it has room (`Handover`)."""
    for row in await connection.fetch(_FREE, list(run_ids), keep_queued):
        name, shard, slots = row["key"], row["shard"], row["slots"]
        if row["counted"]:
            if row["waiters"]:
                await _hand_over(connection, name, shard, slots, handover, locked=True)
            continue
        if row["waiters"]:
            slots -= await _hand_over(connection, name, shard, slots, handover, locked=False)
        if slots and await connection.fetchval(_COUNT_OFF, name, shard, slots):
            await _hand_over(connection, name, shard, slots, handover, locked=True)


async def _hand_over(
    connection: asyncpg.Connection,
    name: str,
    shard: int,
    slots: int,
    handover: Handover | None,
    *,
    locked: bool,
) -> int:
    """Hand up to `slots` slots of the shard to the key's first waiters (`locked`: the
    caller counted them off holding the shard's lock); the number handed over."""
    handed = 0
    while handed < slots:
        driver = handover.queue_manager_id if handover is not None and handover.room() else None
        row = await connection.fetchrow(_HAND_OVER, name, shard, locked, driver)
        if row is None:
            break
        if handover is not None and driver is not None:
            handover.handed(HandedRun(row["run_id"], row["job_id"], row["traceparent"]))
        handed += 1
    return handed


async def _take(
    connection: asyncpg.Connection, statement: str, where: tuple[str, RunId, int, int, int]
) -> asyncpg.Record:
    """A take (`_TAKE`, or `_TAKE_WAITING`) in a savepoint, rolled back if it took nothing.

    A shard whose room went after the statement's snapshot, or while the take waited for
    it, is passed over, but PostgreSQL keeps the lock it took on the row to recheck it.
    A run that took nothing goes on to the locked path or the shared one, which wait for
    the key's row or for its shards, and a transaction already there, holding the key's
    row, waits for that shard: a deadlock, found only after `deadlock_timeout` (a
    second). The rollback releases that lock (a take that took nothing wrote nothing);
    a take that took a slot leaves its savepoint to the commit.
    """
    await connection.execute("SAVEPOINT reverb_concurrency_take")
    take = await connection.fetchrow(statement, *where)
    assert take is not None
    if take["shard"] is None:
        await connection.execute("ROLLBACK TO SAVEPOINT reverb_concurrency_take")
    return take


async def _held(
    connection: asyncpg.Connection, candidate: Candidate, hold: Hold, holding: bool
) -> Hold:
    """Hold the run: the slots it took (or was handed) under other keys go back; a run
    queued under a full key stays queued there, a paused one leaves every queue."""
    if holding or hold.reason != NAME:
        await release(connection, [candidate.run_id], keep_queued=hold.reason == NAME)
    return hold


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
