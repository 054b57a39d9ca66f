"""Fan-out: the runs an event triggers, created once per (function, event).

The worker fanning out may drive some of the new runs itself: those are created
already claimed (`running`, first invocation) with their `advance_run` job
inserted as picked by the worker's queue manager, in the same transaction. If
the worker dies, pgqueuer hands the job on once its heartbeat is stale, and the
job takes the run over (`runs.job_id` is that job), as with any dequeued job.
Runs of a function a run gate applies to are created `gated` and queued: their
start is a claim like any other, where the gates decide (`admission`). Events of
functions with debounce, idempotency, singleton or batch go through `arrivals` first;
the others never pay for them (one more column read with the matches).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from reverb_store import jobs
from reverb_store.execution.arrivals import arrive
from reverb_store.execution.gates import NO_GATES, FunctionRef, Gates
from reverb_store.execution.records import ClaimedRun, EventRecord
from reverb_store.execution.skips import PAUSED
from reverb_store.flow.options import NO_FLOW, FlowOptions, parse
from reverb_store.ids import AppId, EventId, FunctionId, JobId, RunId, new_id


@dataclass(frozen=True, slots=True)
class Driver:
    """A worker that drives new runs at once, in the name of its queue manager."""

    queue_manager_id: UUID
    # Told how many runs are about to be created, returns how many of them it drives
    # (it books room for them; they are the first ones).
    take: Callable[[int], int]


@dataclass(frozen=True, slots=True)
class TriggeredRun:
    run_id: RunId
    function_id: FunctionId
    event_id: EventId
    # Set when the run was created claimed for the driver: its job and its claim.
    job_id: JobId | None = None
    claim: ClaimedRun | None = None
    event_name: str = ""


_MATCHES = """
SELECT DISTINCT t.position, e.id AS event_id, e.name, e.data::text AS data, e.ts,
       f.id AS function_id, f.app_id, f.retries, f.flow::text AS flow
FROM unnest($1::text[]) WITH ORDINALITY AS t(id, position)
JOIN reverb.events e ON e.id = t.id
JOIN reverb.triggers tr ON tr.event_name = e.name
JOIN reverb.functions f ON f.id = tr.function_id
ORDER BY t.position, f.id
"""
# The same for one event (most fan-outs: a single POST /events). A prepared `_MATCHES` is
# planned again at every execution (the generic plan of an unnest of a parameter expects
# 10 ids and costs 8 times the custom plan of one), 0.18 ms of a fan-out's latency; with
# the id a scalar, the generic plan is the custom one and is kept.
_MATCH_ONE = """
SELECT DISTINCT 1::bigint AS position, e.id AS event_id, e.name, e.data::text AS data, e.ts,
       f.id AS function_id, f.app_id, f.retries, f.flow::text AS flow
FROM reverb.events e
JOIN reverb.triggers tr ON tr.event_name = e.name
JOIN reverb.functions f ON f.id = tr.function_id
WHERE e.id = $1
ORDER BY f.id
"""

# One statement: the runs (claimed ones `running` with their job's id), then one
# `advance_run` job per run created (picked for claimed runs, queued for the others).
# A paused function gets no run: the event is recorded as skipped (`pausing`), in the
# same statement and snapshot, so a pause is either seen whole or not at all. `paused` is
# read once per statement (few functions, and nearly never one paused). `EXISTS (SELECT
# FROM paused)` is a one-time filter: with no function paused the skips' join is never
# run (the planner put the NOT EXISTS first, and it read every run of the function).
_CREATE = f"""
WITH paused AS MATERIALIZED (
    SELECT id FROM reverb.functions WHERE paused_at IS NOT NULL
), input AS (
    SELECT t.*, CASE WHEN t.claimed THEN nextval(pg_get_serial_sequence($9, 'id')) END AS job_id
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::bool[],
                $10::bool[])
         AS t(id, function_id, app_id, event_id, max_attempts, claimed, gated)
    WHERE t.function_id NOT IN (SELECT id FROM paused)
), skipped AS (
    INSERT INTO reverb.event_skips (event_id, function_id, reason)
    SELECT t.event_id, t.function_id, '{PAUSED}'
    FROM unnest($4::text[], $2::text[]) AS t(event_id, function_id)
    WHERE EXISTS (SELECT FROM paused)
      AND t.function_id IN (SELECT id FROM paused)
      AND NOT EXISTS (SELECT FROM reverb.runs r
                      WHERE r.function_id = t.function_id AND r.event_ids[1] = t.event_id
                        AND r.parent_run_id IS NULL AND r.replay_of IS NULL
                        AND cardinality(r.event_ids) > 0)
    ON CONFLICT (event_id, function_id) DO NOTHING
), created AS (
    INSERT INTO reverb.runs (id, function_id, app_id, status, event_ids, max_attempts,
                             traceparent, job_id, invocations, started_at, gated)
    SELECT id, function_id, app_id, CASE WHEN claimed THEN 'running' ELSE 'queued' END,
           ARRAY[event_id], max_attempts, $7, job_id, CASE WHEN claimed THEN 1 ELSE 0 END,
           CASE WHEN claimed THEN now() END, gated
    FROM input
    ON CONFLICT (function_id, (event_ids[1]))
        WHERE parent_run_id IS NULL AND replay_of IS NULL AND cardinality(event_ids) > 0
    DO NOTHING
    RETURNING id, function_id, event_ids[1] AS event_id, job_id
), queued AS (
    INSERT INTO {jobs.QUEUE_TABLE}
        (id, priority, entrypoint, payload, status, queue_manager_id, execute_after, heartbeat)
    SELECT coalesce(job_id, nextval(pg_get_serial_sequence($9, 'id'))),
           {jobs.ADVANCE_RUN.sql_columns(run_id="id", traceparent="$7::text")},
           CASE WHEN job_id IS NULL THEN 'queued' ELSE 'picked' END::pgqueuer_status,
           CASE WHEN job_id IS NULL THEN NULL ELSE $8::uuid END, now(), now()
    FROM created
)
SELECT id, function_id, event_id, job_id FROM created
"""


async def create_runs(
    connection: asyncpg.Connection,
    event_ids: Sequence[EventId],
    traceparent: str | None,
    driver: Driver | None = None,
    gates: Gates = NO_GATES,
    wakeups: jobs.Wakeups | None = None,
) -> list[TriggeredRun]:
    """Create one run per function listening to each event, each with its `advance_run` job.

    One statement. A (function, event) pair that already has a run gets no
    new one, so a retried fan-out job adds nothing. With a `driver`, the runs it
    takes are created claimed for it, among those no gate applies to (see the
    module). Returns the runs created.

    Events of functions whose options arrive (debounce, idempotency, singleton, batch)
    go through `arrivals.arrive` first; `wakeups` hears of the wake-ups it schedules
    (ValueError without it when such a function listens).
    """
    # The runs and their jobs are one statement (so one transaction); the matches are read
    # before it, outside: a trigger registered in between only misses this fan-out.
    matches = (
        await connection.fetch(_MATCH_ONE, event_ids[0])
        if len(event_ids) == 1
        else await connection.fetch(_MATCHES, list(event_ids))
    )
    if not matches:
        return []
    arrived: list[TriggeredRun] = []
    arriving = [match for match in matches if _arrives(match)]
    if arriving:
        if wakeups is None:
            raise ValueError("a fan-out to functions with arrival options needs wakeups")
        arrivals = await arrive(connection, arriving, traceparent, wakeups, gates)
        arrived = [
            TriggeredRun(run.run_id, run.function_id, run.event_id) for run in arrivals.created
        ]
        matches = [match for match in matches if not _arrives(match)] + arrivals.plain
        if not matches:
            return arrived
    if gates:
        gated = [gates.applies(_function(match)) for match in matches]
    else:
        gated = [False] * len(matches)
    # The driver takes the first of the runs no gate applies to.
    room = driver.take(gated.count(False)) if driver is not None else 0
    claimed = []
    for is_gated in gated:
        claimed.append(room > 0 and not is_gated)
        room -= claimed[-1]
    run_ids = [new_id() for _ in matches]
    rows = await connection.fetch(
        _CREATE,
        run_ids,
        [match["function_id"] for match in matches],
        [match["app_id"] for match in matches],
        [match["event_id"] for match in matches],
        [match["retries"] + 1 for match in matches],
        claimed,
        traceparent,
        driver.queue_manager_id if driver is not None else None,
        jobs.QUEUE_TABLE,
        gated,
    )
    by_run = dict(zip(run_ids, matches, strict=True))
    return [_triggered(row, by_run[row["id"]], traceparent) for row in rows] + arrived


@dataclass(frozen=True, slots=True)
class RunStart:
    """A run of one function for one stored event, chosen by the caller (a cron tick)
    rather than by the event's name."""

    function_id: FunctionId
    app_id: AppId
    event_id: EventId
    retries: int
    # The function's flow-control options: the gates that apply to them gate the run.
    flow: FlowOptions = NO_FLOW


# The fan-out's match columns of chosen (event, function) pairs, for `arrive`.
_STARTS = """
SELECT e.id AS event_id, e.name, e.data::text AS data, e.ts,
       f.id AS function_id, f.app_id, f.retries, f.flow::text AS flow
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(event_id, function_id, position)
JOIN reverb.events e ON e.id = t.event_id
JOIN reverb.functions f ON f.id = t.function_id
ORDER BY t.position
"""


async def start_runs(
    connection: asyncpg.Connection,
    starts: Sequence[RunStart],
    gates: Gates = NO_GATES,
    wakeups: jobs.Wakeups | None = None,
) -> list[TriggeredRun]:
    """Create each run queued with its `advance_run` job (the fan-out's statement): a
    (function, event) pair that already has a run gets none. Returns the runs created.

    Starts of functions whose options arrive (debounce, idempotency, singleton, batch) go
    through `arrivals.arrive` first, as an event's fan-out does: a cron tick is an event
    like any other there. `wakeups` hears of the wake-ups it schedules (ValueError
    without it when there are such starts)."""
    if not starts:
        return []
    arrived: list[TriggeredRun] = []
    if any(start.flow.arrives() for start in starts):
        if wakeups is None:
            raise ValueError("starting runs of functions with arrival options needs wakeups")
        arriving = [start for start in starts if start.flow.arrives()]
        matches = await connection.fetch(
            _STARTS,
            [start.event_id for start in arriving],
            [start.function_id for start in arriving],
        )
        arrivals = await arrive(connection, matches, None, wakeups, gates)
        arrived = [
            TriggeredRun(run.run_id, run.function_id, run.event_id) for run in arrivals.created
        ]
        plain = {(match["function_id"], match["event_id"]) for match in arrivals.plain}
        starts = [
            start
            for start in starts
            if not start.flow.arrives() or (start.function_id, start.event_id) in plain
        ]
        if not starts:
            return arrived
    gated = [
        bool(gates) and gates.applies(FunctionRef(s.function_id, s.app_id, s.flow)) for s in starts
    ]
    rows = await connection.fetch(
        _CREATE,
        [new_id() for _ in starts],
        [start.function_id for start in starts],
        [start.app_id for start in starts],
        [start.event_id for start in starts],
        [start.retries + 1 for start in starts],
        [False] * len(starts),
        None,
        None,
        jobs.QUEUE_TABLE,
        gated,
    )
    return [TriggeredRun(row["id"], row["function_id"], row["event_id"]) for row in rows] + arrived


def _arrives(match: asyncpg.Record) -> bool:
    return match["flow"] is not None and parse(match["flow"]).arrives()


def _function(match: asyncpg.Record) -> FunctionRef:
    return FunctionRef(match["function_id"], match["app_id"], parse(match["flow"]))


def _triggered(row: asyncpg.Record, match: asyncpg.Record, traceparent: str | None) -> TriggeredRun:
    job_id: JobId | None = row["job_id"]
    claim = None
    if job_id is not None:
        event = EventRecord(match["event_id"], match["name"], match["data"], match["ts"])
        claim = ClaimedRun(
            run_id=row["id"],
            function_id=match["function_id"],
            app_id=match["app_id"],
            attempt=0,
            max_attempts=match["retries"] + 1,
            invocations=1,
            traceparent=traceparent,
            events=(event,),
            memo=(),
            retrying_step_attempts=None,
        )
    return TriggeredRun(
        row["id"], row["function_id"], row["event_id"], job_id, claim, match["name"]
    )


async def prepare_fan_out(connection: asyncpg.Connection) -> None:
    """Run the fan-out's statements once with nothing to do, so that a new connection's
    first fan-out does not pay for their planning and the queue triggers' compilation
    (tens of ms on a new PostgreSQL backend)."""
    await connection.fetch(_MATCHES, [])
    await connection.fetch(_MATCH_ONE, "")
    await connection.fetch(_CREATE, [], [], [], [], [], [], None, None, jobs.QUEUE_TABLE, [])
