"""The pgqueuer jobs Reverb enqueues: entrypoint names and their payloads.

The gateway and the worker agree on these; nothing else crosses the queue.
Jobs are hints that work is due: the state they act on lives in Reverb's own
tables, so a job that finds nothing to do simply ends.

A worker may also run jobs itself, without pgqueuer's dequeue: jobs it inserts
already picked (the runs a fan-out creates), and due jobs it takes the moment it
has room or a wake-up it scheduled comes due (`take_due`). It keeps their
heartbeats fresh; if it dies, pgqueuer hands them to another worker exactly as
it does a dequeued job.
"""

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import asyncpg
import orjson
from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.queries import Queries

PROCESS_EVENT = "process_event"
ADVANCE_RUN = "advance_run"
# An advance_run due at a time (a sleep's end, a retry's backoff): workers take due
# wake-ups before other work (and pgqueuer's dequeue too: they have priority 1), so
# that a run wakes when it said it would.
WAKE_RUN = "wake_run"
ENTRYPOINTS = (PROCESS_EVENT, ADVANCE_RUN, WAKE_RUN)

# pgqueuer's queue table (no prefix) and its notification channel; migration 0002
# notifies the channel only for inserted jobs that are due at once.
QUEUE_TABLE = "pgqueuer"
CHANNEL = "ch_pgqueuer"


@dataclass(frozen=True, slots=True)
class ProcessEvent:
    """Fan the events out to the runs they trigger."""

    event_ids: tuple[str, ...]
    traceparent: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps({"event_ids": self.event_ids, "traceparent": self.traceparent})

    @classmethod
    def decode(cls, payload: bytes) -> "ProcessEvent":
        body = orjson.loads(payload)
        return cls(tuple(body["event_ids"]), body.get("traceparent"))


@dataclass(frozen=True, slots=True)
class AdvanceRun:
    """Drive one run as far as it can go."""

    run_id: str
    traceparent: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps({"run_id": self.run_id, "traceparent": self.traceparent})

    @classmethod
    def decode(cls, payload: bytes) -> "AdvanceRun":
        body = orjson.loads(payload)
        return cls(body["run_id"], body.get("traceparent"))


def process_event_payload(event_ids: str, traceparent: str) -> str:
    """SQL for a ProcessEvent payload (bytea), from SQL expressions of its fields."""
    return (
        f"convert_to(json_build_object('event_ids', {event_ids}, 'traceparent', {traceparent})"
        "::text, 'UTF8')"
    )


def advance_run_payload(run_id: str, traceparent: str) -> str:
    """SQL for an AdvanceRun payload (bytea), from SQL expressions of its fields."""
    return (
        f"convert_to(json_build_object('run_id', {run_id}, 'traceparent', {traceparent})"
        "::text, 'UTF8')"
    )


_scheduled: ContextVar[list[timedelta] | None] = ContextVar("reverb_scheduled", default=None)


@contextlib.contextmanager
def collect_scheduled() -> Iterator[list[timedelta]]:
    """Collect the delays of the jobs enqueued delayed by the current task (and tasks it
    starts) meanwhile.

    A worker uses it around a job's handler, to take the wake-ups it scheduled
    when they come due (the queue does not notify delayed jobs).
    """
    collected: list[timedelta] = []
    token = _scheduled.set(collected)
    try:
        yield collected
    finally:
        _scheduled.reset(token)


def _report(delays: Sequence[timedelta | None]) -> None:
    collected = _scheduled.get()
    if collected is not None:
        collected.extend(delay for delay in delays if delay is not None and delay > timedelta(0))


async def enqueue(
    connection: asyncpg.Connection,
    jobs: Sequence[ProcessEvent | AdvanceRun],
    delays: Sequence[timedelta | None] | None = None,
) -> list[int]:
    """Enqueue jobs on `connection`, so they commit with the caller's transaction."""
    if not jobs:
        return []
    if delays is None:
        delays = [None] * len(jobs)
    entrypoints = [_entrypoint(job, delay) for job, delay in zip(jobs, delays, strict=True)]
    ids = await Queries(AsyncpgDriver(connection)).enqueue(
        entrypoints,
        [job.encode() for job in jobs],
        [1 if entrypoint == WAKE_RUN else 0 for entrypoint in entrypoints],
        list(delays),
    )
    job_ids = [int(job_id) for job_id in ids]
    _report(delays)
    return job_ids


def _entrypoint(job: ProcessEvent | AdvanceRun, delay: timedelta | None) -> str:
    if isinstance(job, ProcessEvent):
        return PROCESS_EVENT
    return WAKE_RUN if delay is not None and delay > timedelta(0) else ADVANCE_RUN


def _due(entrypoint: str, rank: int) -> str:
    # The oldest due jobs of one entrypoint: a range of its (entrypoint, execute_after)
    # index, however many delayed jobs wait behind them.
    return f"""(SELECT id, {rank} AS rank, execute_after FROM {QUEUE_TABLE}
      WHERE entrypoint = '{entrypoint}' AND status = 'queued' AND execute_after <= now()
      ORDER BY execute_after LIMIT $2)"""


# Due wake-ups first, then fan-outs and new runs, oldest due first. Candidates are read
# without locks; the ones still queued are locked (skipping any another worker holds).
_TAKE_DUE = f"""
WITH candidates AS (
    {_due(WAKE_RUN, 0)}
    UNION ALL {_due(ADVANCE_RUN, 1)}
    UNION ALL {_due(PROCESS_EVENT, 1)}
), chosen AS (
    SELECT id FROM {QUEUE_TABLE}
    WHERE id IN (SELECT id FROM candidates ORDER BY rank, execute_after LIMIT $2)
      AND status = 'queued'
    FOR UPDATE SKIP LOCKED
)
UPDATE {QUEUE_TABLE} q
SET status = 'picked', queue_manager_id = $1, heartbeat = now(), updated = now()
FROM chosen WHERE q.id = chosen.id
RETURNING q.id, q.entrypoint, q.payload
"""


@dataclass(frozen=True, slots=True)
class TakenJob:
    job_id: int
    entrypoint: str
    payload: bytes


async def take_due(
    connection: asyncpg.Connection, queue_manager_id: UUID, limit: int
) -> list[TakenJob]:
    """Pick up to `limit` due jobs for a worker's own use (see `_TAKE_DUE` for the order).

    Fewer than `limit` when fewer are due (or other workers hold them).
    """
    rows = await connection.fetch(_TAKE_DUE, queue_manager_id, limit)
    return [TakenJob(row["id"], row["entrypoint"], bytes(row["payload"])) for row in rows]


_NEXT_DUE = (
    "SELECT extract(epoch FROM least("
    + ", ".join(
        f"(SELECT min(execute_after) FROM {QUEUE_TABLE} WHERE entrypoint = '{entrypoint}'"
        " AND status = 'queued' AND execute_after > now())"
        for entrypoint in ENTRYPOINTS
    )
    + ") - now())::float8"
)


async def next_due(connection: asyncpg.Connection) -> float | None:
    """Seconds until the earliest queued job that is not due yet; None if there is none."""
    seconds: float | None = await connection.fetchval(_NEXT_DUE)
    return seconds


# A row both deleted and updated by one statement is updated only (the DELETE is then
# silently lost): a finished job's heartbeat is never refreshed.
_KEEP = f"""
WITH finished AS (DELETE FROM {QUEUE_TABLE} WHERE id = ANY($2::bigint[]))
UPDATE {QUEUE_TABLE} SET heartbeat = now()
WHERE id = ANY($1::bigint[]) AND NOT id = ANY($2::bigint[]) AND status = 'picked'
"""


async def keep(
    connection: asyncpg.Connection, running: Sequence[int], finished: Sequence[int]
) -> None:
    """Refresh the heartbeats of jobs a worker runs itself; delete those it finished."""
    await connection.execute(_KEEP, list(running), list(finished))
