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

# Each (event, match path of its name) value's lock, shared and in order (see the module).
_LOCK_EVENT_KEYS = """
SELECT pg_advisory_xact_lock_shared(key) FROM (
    SELECT DISTINCT reverb.wait_lock_key(e.name, k.match_path,
        CASE WHEN cardinality(k.match_path) = 0 THEN 'null'::jsonb
             ELSE e.data #> k.match_path END) AS key
    FROM unnest($1::text[]) AS t(id)
    JOIN reverb.events e ON e.id = t.id
    JOIN reverb.wait_keys k ON k.event_name = e.name
    WHERE cardinality(k.match_path) = 0 OR e.data #> k.match_path IS NOT NULL
    ORDER BY key
) AS keys
"""

# The open waits each event matches by key, events in acceptance order. Data is read only
# for waits with a condition. Each event's keys (one per match path used with its name)
# are computed first (MATERIALIZED), so that every probe of `waits_key` is by all three
# columns: joined in one level, the planner may probe by the event name alone and filter
# the path and value afterwards, which reads every open wait of the name (measured: 550 ms
# with 10,000 waiting on one name, 0.4 ms probed by key; docs/architecture.md).
_CANDIDATES = """
WITH keyed AS MATERIALIZED (
    SELECT t.position, e.id, e.name, e.data, e.ts, e.received_at, k.match_path,
           CASE WHEN cardinality(k.match_path) = 0 THEN 'null'::jsonb
                ELSE e.data #> k.match_path END AS match_value
    FROM unnest($1::text[]) WITH ORDINALITY AS t(id, position)
    JOIN reverb.events e ON e.id = t.id
    JOIN reverb.wait_keys k ON k.event_name = e.name
)
SELECT w.run_id, w.step_id, w.position, w.condition, r.status AS run_status,
       r.function_id, e.id AS event_id, e.name,
       CASE WHEN w.condition IS NOT NULL THEN e.data::text END AS data, e.ts,
       te.id AS trigger_id, te.name AS trigger_name, te.data::text AS trigger_data,
       te.ts AS trigger_ts, coalesce(e.received_at >= w.expires_at, false) AS lapsed
FROM keyed e
JOIN reverb.waits w
  ON w.event_name = e.name AND w.match_path = e.match_path AND w.match_value = e.match_value
LEFT JOIN reverb.runs r ON r.id = w.run_id
LEFT JOIN reverb.events te ON w.condition IS NOT NULL AND te.id = r.event_ids[1]
WHERE (w.not_before IS NULL OR e.received_at >= w.not_before)
  -- A run's own triggering event never cancels it (a cancel_on of the trigger's name).
  AND (w.step_id <> '' OR NOT coalesce(e.id = ANY(r.event_ids), false))
ORDER BY e.position, w.run_id, w.step_id, w.position
"""

_LOCK_RUNS = """
SELECT id FROM reverb.runs WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE
"""

# Every row of each chosen step goes (a wait_for_any's losers with its winner); the step
# completes with its event if it still waits. A NULL event only removes the rows.
_RESOLVE = f"""
WITH chosen AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[])
        AS c(run_id, step_id, position, event_id)
), removed AS (
    DELETE FROM reverb.waits w USING chosen c WHERE w.run_id = c.run_id AND w.step_id = c.step_id
), resolved AS (
    UPDATE reverb.steps s SET status = 'completed', wake_at = NULL, ended_at = now(),
        output = {OUTPUT.format(index="c.position")}
    FROM chosen c JOIN reverb.events e ON e.id = c.event_id
    WHERE s.run_id = c.run_id AND s.id = c.step_id AND s.status = 'waiting'
    RETURNING s.run_id
), woken AS (
    UPDATE reverb.runs r SET status = 'queued', updated_at = now()
    WHERE r.id IN (SELECT run_id FROM resolved) AND r.status IN ('sleeping', 'waiting')
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
