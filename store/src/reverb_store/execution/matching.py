"""Matching accepted events against open waits: the `match_waits` job's transaction.

An event finds the waits it may meet by key (`reverb.waits`' index on event name, match
path, match value; one lookup per match path used with its name, `wait_keys`), then the
CEL conditions are evaluated on those candidates only. Step waits (`waits.record_wait`)
are resolved; cancellation waits (`cancel_on`) cancel their runs. See `waits` for why no
event is missed.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
import orjson

from reverb_store import jobs
from reverb_store.execution.cancel_on import CANCEL_STEP, Cancellation, cancel_matched
from reverb_store.execution.cancellation import CANCELLABLE
from reverb_store.execution.gates import NO_GATES, Gates
from reverb_store.execution.waits import LIVE, OUTPUT, VARIABLES, cel_event, holds
from reverb_store.expressions import Expression, ExpressionError, compile_expression
from reverb_store.ids import EventId, FunctionId, RunId

# --- matching accepted events against open waits (the `match_waits` job) ---------------

# Every statement of the job reaches each row by its key through a LATERAL subquery that
# cannot be flattened (OFFSET 0, FOR UPDATE), and updates or deletes it by its ctid: an
# index probe per row whatever the planner believes of the tables' sizes. A job's
# statements are prepared once per connection and PostgreSQL may keep a generic plan
# made while the tables were small (a fresh database, or statistics never refreshed: no
# autovacuum); joined plainly, such a plan hashes a sequential scan of `waits`, `events`,
# `steps` or `runs` for every event (measured with 10,000 waiting: 75 ms and 450 buffers
# per event for the candidates alone, against 0.4 ms and 9 buffers probed by key;
# docs/architecture.md, "Waiting for events").

# Each (event, match path of its name) value's lock, shared and in order (see the module).
_LOCK_EVENT_KEYS = """
SELECT pg_advisory_xact_lock_shared(key) FROM (
    SELECT DISTINCT reverb.wait_lock_key(e.name, k.match_path,
        CASE WHEN cardinality(k.match_path) = 0 THEN 'null'::jsonb
             ELSE e.data #> k.match_path END) AS key
    FROM unnest($1::text[]) AS t(id)
    CROSS JOIN LATERAL (SELECT name, data FROM reverb.events WHERE id = t.id OFFSET 0) e
    JOIN reverb.wait_keys k ON k.event_name = e.name
    WHERE cardinality(k.match_path) = 0 OR e.data #> k.match_path IS NOT NULL
    ORDER BY key
) AS keys
"""

# The open waits each event matches by key, events in acceptance order. Data is read only
# for waits with a condition. Each event's keys (one per match path used with its name)
# are computed first (MATERIALIZED), then `waits_key` is probed by all three columns.
_CANDIDATES = """
WITH keyed AS MATERIALIZED (
    SELECT t.position, e.id, e.name, e.data, e.ts, e.received_at, k.match_path,
           CASE WHEN cardinality(k.match_path) = 0 THEN 'null'::jsonb
                ELSE e.data #> k.match_path END AS match_value
    FROM unnest($1::text[]) WITH ORDINALITY AS t(id, position)
    CROSS JOIN LATERAL (
        SELECT id, name, data, ts, received_at FROM reverb.events WHERE id = t.id OFFSET 0
    ) e
    JOIN reverb.wait_keys k ON k.event_name = e.name
)
SELECT w.run_id, w.step_id, w.position, w.condition, r.status AS run_status,
       r.function_id, e.id AS event_id, e.name,
       CASE WHEN w.condition IS NOT NULL THEN e.data::text END AS data, e.ts,
       te.id AS trigger_id, te.name AS trigger_name, te.data::text AS trigger_data,
       te.ts AS trigger_ts, coalesce(e.received_at >= w.expires_at, false) AS lapsed
FROM keyed e
CROSS JOIN LATERAL (
    SELECT * FROM reverb.waits
    WHERE event_name = e.name AND match_path = e.match_path AND match_value = e.match_value
    OFFSET 0
) w
LEFT JOIN LATERAL (
    SELECT status, function_id, event_ids FROM reverb.runs WHERE id = w.run_id OFFSET 0
) r ON true
LEFT JOIN LATERAL (
    SELECT id, name, data, ts FROM reverb.events
    WHERE w.condition IS NOT NULL AND id = r.event_ids[1] OFFSET 0
) te ON true
WHERE (w.not_before IS NULL OR e.received_at >= w.not_before)
  AND (w.step_id <> '' OR NOT coalesce(e.id = ANY(r.event_ids), false))
ORDER BY e.position, w.run_id, w.step_id, w.position
"""

# In id order: the caller passes the ids sorted, and each is locked as the nested loop
# over the array reaches it.
_LOCK_RUNS = """
SELECT r.id FROM unnest($1::text[]) AS t(id)
CROSS JOIN LATERAL (SELECT id FROM reverb.runs WHERE id = t.id FOR UPDATE) r
"""

# Every row of each chosen step goes (a wait_for_any's losers with its winner); the step
# completes with its event if it still waits. A NULL event only removes the rows. The
# rows are found by key and changed by ctid (above); the runs are locked by this job
# (`_LOCK_RUNS`), and a step or wait row changes only under its run's lock, so no ctid
# read here moves before the statement changes it.
_RESOLVE = f"""
WITH chosen AS MATERIALIZED (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[])
        AS c(run_id, step_id, position, event_id)
), removed AS (
    DELETE FROM reverb.waits w
    USING chosen c CROSS JOIN LATERAL (
        SELECT ctid AS row FROM reverb.waits
        WHERE run_id = c.run_id AND step_id = c.step_id OFFSET 0
    ) x
    WHERE w.ctid = x.row
), resolved AS (
    UPDATE reverb.steps s SET status = 'completed', wake_at = NULL, ended_at = now(),
        output = {OUTPUT.format(index="e.position")}
    FROM (
        SELECT c.position, found.id, found.name, found.data, found.ts, step.row
        FROM chosen c
        CROSS JOIN LATERAL (
            SELECT ctid AS row FROM reverb.steps
            WHERE run_id = c.run_id AND id = c.step_id OFFSET 0
        ) step
        CROSS JOIN LATERAL (
            SELECT id, name, data, ts FROM reverb.events WHERE id = c.event_id OFFSET 0
        ) found
    ) e
    WHERE s.ctid = e.row AND s.status = 'waiting'
    RETURNING s.run_id
), woken AS (
    UPDATE reverb.runs r SET status = 'queued', updated_at = now()
    FROM resolved d CROSS JOIN LATERAL (
        SELECT ctid AS row FROM reverb.runs WHERE id = d.run_id OFFSET 0
    ) x
    WHERE r.ctid = x.row AND r.status IN ('sleeping', 'waiting')
    RETURNING r.id, r.traceparent
)
SELECT id, traceparent FROM woken
"""


@dataclass(frozen=True, slots=True)
class _Choice:
    run_id: str
    step_id: str
    position: int
    event_id: str | None


@dataclass(frozen=True, slots=True)
class Matched:
    """What a batch of events did: the runs woken (a wait resolved) and cancelled (a
    cancel_on met)."""

    woken: list[RunId] = field(default_factory=list)
    cancelled: list[RunId] = field(default_factory=list)


_REMOVE_LAPSED = """
DELETE FROM reverb.waits w
USING unnest($1::text[], $2::int[]) AS l(run_id, position)
WHERE w.run_id = l.run_id AND w.step_id = '' AND w.position = l.position
"""


async def match_waits(connection: asyncpg.Connection, event_ids: Sequence[str]) -> list[RunId]:
    """Resolve the open waits the events meet (`match_events`); returns the runs woken."""
    return (await match_events(connection, event_ids)).woken


async def match_events(
    connection: asyncpg.Connection, event_ids: Sequence[str], gates: Gates = NO_GATES
) -> Matched:
    """Resolve the open waits the events meet, in one transaction: each waiting step gets
    the first of the events (in order) that meets one of its conditions, its other rows
    go, and a run that was sleeping or waiting is queued with an `advance_run` job. A run
    whose cancellation wait (cancel_on) an event meets is cancelled instead, with
    `cancel_run` (`gates` are told of the gated runs it stops)."""
    async with connection.transaction():
        await connection.execute(_LOCK_EVENT_KEYS, list(event_ids))
        rows = await connection.fetch(_CANDIDATES, list(event_ids))
        if not rows:
            return Matched()
        choices, cancellations, lapsed = _choose(rows)
        await connection.fetch(
            _LOCK_RUNS, sorted({c.run_id for c in choices} | {c.run_id for c in cancellations})
        )
        cancelled = await cancel_matched(connection, cancellations, gates)
        if lapsed:
            await connection.execute(
                _REMOVE_LAPSED, [run for run, _ in lapsed], [position for _, position in lapsed]
            )
        # A run cancelled here resolves no wait (the cancel deleted its waits' rows).
        stopped = {c.run_id for c in cancellations}
        choices = [c for c in choices if c.run_id not in stopped]
        woken = []
        if choices:
            woken = await connection.fetch(
                _RESOLVE,
                [c.run_id for c in choices],
                [c.step_id for c in choices],
                [c.position for c in choices],
                [c.event_id for c in choices],
            )
        if woken:
            await jobs.enqueue(
                connection, [jobs.AdvanceRun(row["id"], row["traceparent"]) for row in woken]
            )
    return Matched([RunId(row["id"]) for row in woken], cancelled)


def _choose(
    rows: Sequence[asyncpg.Record],
) -> tuple[list[_Choice], list[Cancellation], list[tuple[str, int]]]:
    """The first matching event of each waiting step (rows are in event order); the
    waits of runs that ended are only removed. Cancellation waits (step id '') give the
    runs to cancel, each with the first event that met one, and the lapsed ones."""
    chosen: dict[tuple[str, str], _Choice] = {}
    cancels: dict[str, Cancellation] = {}
    lapsed: dict[tuple[str, int], None] = {}
    triggers: dict[str, dict[str, object] | None] = {}
    for row in rows:
        step = (row["run_id"], row["step_id"])
        cancel = row["step_id"] == CANCEL_STEP
        if step in chosen or (cancel and step[0] in cancels):
            continue
        live = CANCELLABLE if cancel else LIVE
        if row["run_status"] not in live:
            chosen[step] = _Choice(step[0], step[1], row["position"], None)
            continue
        if cancel and row["lapsed"]:
            lapsed[(step[0], row["position"])] = None
            continue
        if row["condition"] is not None:
            expression = _expression(row["condition"])
            if expression is None:
                continue
            run_id = row["run_id"]
            if run_id not in triggers:
                triggers[run_id] = _stored_trigger(row)
            data = orjson.loads(row["data"])
            candidate = cel_event(row["event_id"], row["name"], data, row["ts"])
            if not holds(expression, triggers[run_id], candidate):
                continue
        if cancel:
            cancels[step[0]] = Cancellation(
                RunId(step[0]),
                row["position"],
                EventId(row["event_id"]),
                row["name"],
                FunctionId(row["function_id"]),
            )
        else:
            chosen[step] = _Choice(step[0], step[1], row["position"], row["event_id"])
    return list(chosen.values()), list(cancels.values()), list(lapsed)


def _stored_trigger(row: asyncpg.Record) -> dict[str, object] | None:
    if row["trigger_id"] is None:
        return None
    data = orjson.loads(row["trigger_data"])
    return cel_event(row["trigger_id"], row["trigger_name"], data, row["trigger_ts"])


def _expression(source: str) -> Expression | None:
    """A stored condition compiled (cached); None if it no longer compiles."""
    try:
        return compile_expression(source, variables=VARIABLES, what="a stored wait")
    except ExpressionError:
        return None
