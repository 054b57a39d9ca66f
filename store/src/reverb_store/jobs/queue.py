"""Putting jobs in pgqueuer's queue, and a worker's own takes, heartbeats and deletions.

The queue notifies workers only of jobs due at once (migration 0002). A delayed job
is woken by whoever scheduled it: `schedule` requires a `Wakeups` to tell, so a
delayed job cannot be enqueued without someone arming a timer for it.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol
from uuid import UUID

import asyncpg
from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.queries import Queries

from reverb_store.ids import JobId
from reverb_store.jobs.kinds import KINDS, JobPayload, KindName, kind_of

# pgqueuer's queue table (no prefix), and the channel a statement that inserts jobs due
# at once notifies (migrations 0002 and 0021): Reverb's, not pgqueuer's, whose dequeue
# would dequeue again for the job the notified worker takes itself.
QUEUE_TABLE = "pgqueuer"
CHANNEL = "reverb_jobs_due"


class Wakeups(Protocol):
    """Told of every delayed job enqueued, to wake it when it comes due.

    Called right after the job's INSERT, which may commit only with the caller's
    transaction: arm a timer once the caller's work is done, not before.
    """

    def wake_in(self, delay: timedelta) -> None: ...


async def enqueue(connection: asyncpg.Connection, jobs: Sequence[JobPayload]) -> list[int]:
    """Enqueue jobs due now on `connection`, so they commit with the caller's transaction.

    The queue notifies the workers when they commit.
    """
    return await _insert(connection, jobs, [None] * len(jobs))


async def schedule(
    connection: asyncpg.Connection,
    jobs: Sequence[JobPayload],
    delays: Sequence[timedelta],
    wakeups: Wakeups,
) -> list[int]:
    """Enqueue jobs due after their `delays` (as `enqueue`); `wakeups` hears of each delay.

    A delay of zero or less is due now: notified, not reported.
    """
    job_ids = await _insert(connection, jobs, delays)
    for delay in delays:
        if delay > timedelta(0):
            wakeups.wake_in(delay)
    return job_ids


async def _insert(
    connection: asyncpg.Connection,
    jobs: Sequence[JobPayload],
    delays: Sequence[timedelta | None],
) -> list[int]:
    if not jobs:
        return []
    kinds = [
        kind_of(job, delayed=delay is not None and delay > timedelta(0))
        for job, delay in zip(jobs, delays, strict=True)
    ]
    ids = await Queries(AsyncpgDriver(connection)).enqueue(
        [kind.name for kind in kinds],
        [job.encode() for job in jobs],
        [kind.priority for kind in kinds],
        list(delays),
    )
    return [int(job_id) for job_id in ids]


def _due(name: str, priority: int) -> str:
    # The oldest due jobs of one entrypoint: a range of its (entrypoint, execute_after)
    # index, however many delayed jobs wait behind them.
    return f"""(SELECT id, {priority} AS priority, execute_after FROM {QUEUE_TABLE}
      WHERE entrypoint = '{name}' AND status = 'queued' AND execute_after <= now()
      ORDER BY execute_after LIMIT $2)"""


# Due jobs of higher-priority kinds first (wake-ups), then the others, oldest due first.
# Candidates are read without locks; the ones still queued are locked (skipping any
# another worker holds).
_TAKE_DUE = f"""
WITH candidates AS (
    {" UNION ALL ".join(_due(kind.name, kind.priority) for kind in KINDS.values())}
), chosen AS (
    SELECT id FROM {QUEUE_TABLE}
    WHERE id IN (
        SELECT id FROM candidates ORDER BY priority DESC, execute_after LIMIT $2
    ) AND status = 'queued'
    FOR UPDATE SKIP LOCKED
)
UPDATE {QUEUE_TABLE} q
SET status = 'picked', queue_manager_id = $1, heartbeat = now(), updated = now()
FROM chosen WHERE q.id = chosen.id
RETURNING q.id, q.entrypoint, q.payload
"""


@dataclass(frozen=True, slots=True)
class TakenJob:
    job_id: JobId
    kind: KindName
    payload: bytes


_KIND_NAMES: dict[str, KindName] = {name: name for name in KINDS}


def taken_job(row: asyncpg.Record) -> TakenJob:
    """A job row (id, entrypoint, payload) picked for a worker (KeyError: not our kind)."""
    return TakenJob(row["id"], _KIND_NAMES[row["entrypoint"]], bytes(row["payload"]))


async def take_due(
    connection: asyncpg.Connection, queue_manager_id: UUID, limit: int
) -> list[TakenJob]:
    """Pick up to `limit` due jobs for a worker's own use (see `_TAKE_DUE` for the order).

    Fewer than `limit` when fewer are due (or other workers hold them).
    """
    rows = await connection.fetch(_TAKE_DUE, queue_manager_id, limit)
    return [taken_job(row) for row in rows]


# The earliest queued job not due yet, and the earliest wake-up not due yet (`wakeups`:
# the run_wakeups table's due-time index).
_NEXT_DUE = (
    "SELECT extract(epoch FROM least("
    + ", ".join(
        f"(SELECT min(execute_after) FROM {QUEUE_TABLE} WHERE entrypoint = '{name}'"
        " AND status = 'queued' AND execute_after > now())"
        for name in KINDS
    )
    + ", (SELECT min(due_at) FROM reverb.run_wakeups WHERE due_at > now())"
    + ") - now())::float8"
)


async def next_due(connection: asyncpg.Connection) -> float | None:
    """Seconds until the earliest queued job or run wake-up that is not due yet; None if
    there is none."""
    seconds: float | None = await connection.fetchval(_NEXT_DUE)
    return seconds


# A row both deleted and updated by one statement is updated only (the DELETE is then
# silently lost): a finished job's heartbeat is never refreshed. Lock order
# (docs/architecture.md, "Lock order"): the finished jobs' rows are locked first, by
# id, in a MATERIALIZED subselect, and the DELETE touches only rows it holds (no
# transition of ours still holds them: a job is finished once its transition
# committed). The heartbeat never waits: a running job's row another transaction holds
# (its run's transition, or a hold deleting it, which may be waiting for a concurrency
# shard whose free waits for a job row this statement would hold) is skipped, its
# heartbeat refreshed at the next round (one of four before it goes stale).
_KEEP = f"""
WITH locked AS MATERIALIZED (
    SELECT id FROM {QUEUE_TABLE} WHERE id = ANY($2::bigint[]) ORDER BY id FOR UPDATE
), finished AS (
    DELETE FROM {QUEUE_TABLE} WHERE id IN (SELECT id FROM locked)
), beating AS MATERIALIZED (
    SELECT id FROM {QUEUE_TABLE}
    WHERE id = ANY($1::bigint[]) AND NOT id = ANY($2::bigint[]) AND status = 'picked'
    FOR UPDATE SKIP LOCKED
)
UPDATE {QUEUE_TABLE} SET heartbeat = now() WHERE id IN (SELECT id FROM beating)
"""


# The same for one finished job and no heartbeat (most calls at a low rate: a job ended
# and no heartbeat is due). `_KEEP` is planned again at every execution (its generic plan
# of id arrays expects 10 ids each), about 0.19 ms of the server's time a call; with the
# id a scalar, the generic plan is the custom one and is kept. One row: no lock order.
_DELETE_ONE = f"DELETE FROM {QUEUE_TABLE} WHERE id = $1"


async def keep(
    connection: asyncpg.Connection, running: Sequence[int], finished: Sequence[int]
) -> None:
    """Refresh the heartbeats of jobs a worker runs itself; delete those it finished."""
    if not running and len(finished) == 1:
        await connection.execute(_DELETE_ONE, finished[0])
        return
    await connection.execute(_KEEP, list(running), list(finished))


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """The queue at one moment: jobs per kind and state (`due`: waiting to be taken now,
    `delayed`: not due yet, `running`: taken), and how long the oldest due job has waited.
    Run wake-ups (`wakeups`, kept out of the queue) count as `wake_run` jobs."""

    jobs: dict[tuple[str, str], int]
    oldest_due_seconds: float


async def depth(connection: asyncpg.Connection) -> QueueDepth:
    """Count the queue's jobs and run wake-ups (scans of both tables; for a metrics
    scrape, not a hot path)."""
    rows = await connection.fetch(
        f"""
        SELECT entrypoint,
               CASE WHEN status = 'picked' THEN 'running'
                    WHEN execute_after <= now() THEN 'due'
                    ELSE 'delayed' END AS state,
               count(*) AS jobs,
               extract(epoch FROM now() - min(execute_after)) AS oldest
        FROM {QUEUE_TABLE}
        GROUP BY 1, 2
        UNION ALL
        SELECT 'wake_run', CASE WHEN due_at <= now() THEN 'due' ELSE 'delayed' END,
               count(*), extract(epoch FROM now() - min(due_at))
        FROM reverb.run_wakeups
        GROUP BY 1, 2
        """
    )
    jobs: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row["entrypoint"], row["state"])
        jobs[key] = jobs.get(key, 0) + row["jobs"]
    oldest = max((float(row["oldest"]) for row in rows if row["state"] == "due"), default=0.0)
    return QueueDepth(jobs, max(oldest, 0.0))
