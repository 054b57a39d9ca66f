"""Suspended runs' wake-ups, kept out of pgqueuer's queue (migration 0019).

A run that sleeps or waits (a sleep's end, a wait's timeout, an invoke's timeout) would
otherwise leave a delayed `wake_run` job in the queue, and pgqueuer's dequeue reads every
delayed job of its entrypoint while nothing is due: at 10,000 waiting runs, thousands of
buffers a dequeue. Instead each run has one row in `reverb.run_wakeups`, read only through
its due-time index:

- `wake_later` stores (or replaces) the row, in the suspending transaction, and tells
  the caller's `Wakeups`, as `schedule` does for a delayed job: the scheduling worker
  arms its timer once that transaction committed.
- When a worker's timer rings it `promote`s due rows into the queue as `wake_run` jobs
  picked by its own queue manager, for the room it has, in the same transaction as its
  take and its read of the next due time (`next_due` covers both the queue and this
  table): the row's delete and the job's insert commit together, so a wake-up is never
  lost nor doubled; a worker killed holding the picked job hands it on as any job.
- A worker that died before its wake-up fell due armed nobody else's timer: every
  worker also looks at the due times at least every poll interval.
"""

from datetime import timedelta
from uuid import UUID

import asyncpg

from reverb_store.ids import RunId
from reverb_store.jobs.kinds import WAKE_RUN
from reverb_store.jobs.queue import QUEUE_TABLE, TakenJob, Wakeups, next_due, take_due, taken_job

_UPSERT = """
INSERT INTO reverb.run_wakeups (run_id, due_at, traceparent)
VALUES ($1, now() + $2::interval, $3)
ON CONFLICT (run_id) DO UPDATE SET due_at = EXCLUDED.due_at, traceparent = EXCLUDED.traceparent
"""


async def wake_later(
    connection: asyncpg.Connection,
    run_id: RunId,
    traceparent: str | None,
    delay: timedelta,
    wakeups: Wakeups,
) -> None:
    """Wake the run after `delay` (`wakeups` hears of it), replacing its earlier wake-up.

    In the caller's transaction: the run's suspension states its one next wake-up.
    """
    await connection.execute(_UPSERT, run_id, delay, traceparent)
    wakeups.wake_in(delay)


# Due rows, oldest first, skipping rows another worker is promoting; each becomes a
# `wake_run` job picked by $1 (no notification: the queue notifies queued jobs only).
# The lock order holds: no other lock is waited for once the rows are held.
_PROMOTE = f"""
WITH due AS MATERIALIZED (
    SELECT run_id FROM reverb.run_wakeups WHERE due_at <= now()
    ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED
), woken AS (
    DELETE FROM reverb.run_wakeups w USING due WHERE w.run_id = due.run_id
    RETURNING w.run_id, w.traceparent, w.due_at
)
INSERT INTO {QUEUE_TABLE}
    (priority, entrypoint, payload, status, queue_manager_id, execute_after, heartbeat)
SELECT {WAKE_RUN.sql_columns(run_id="run_id", traceparent="traceparent")},
       'picked', $1, due_at, now()
FROM woken
RETURNING id, entrypoint, payload
"""


async def promote(
    connection: asyncpg.Connection, queue_manager_id: UUID, limit: int
) -> list[TakenJob]:
    """Turn up to `limit` due wake-ups into `wake_run` jobs picked by `queue_manager_id`."""
    if limit <= 0:
        return []
    rows = await connection.fetch(_PROMOTE, queue_manager_id, limit)
    return [taken_job(row) for row in rows]


async def take_due_and_next(
    connection: asyncpg.Connection, queue_manager_id: UUID, limit: int
) -> tuple[list[TakenJob], float | None]:
    """What a worker does when its wake-up timer rings: `promote` due wake-ups, `take_due`
    for the room left, then `next_due`, in one transaction. All three read at one
    `now()`, so a job or wake-up falling due between the statements is in one or the
    other (taken, or the next due), never missed by both (a lost wake-up). As many jobs as
    `limit` means some due wake-ups may be left: call again once there is room."""
    async with connection.transaction():
        taken = await promote(connection, queue_manager_id, limit)
        if len(taken) < limit:
            taken += await take_due(connection, queue_manager_id, limit - len(taken))
        return taken, await next_due(connection)
