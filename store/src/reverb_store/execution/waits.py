"""Waits for events: `step.wait_for_event` and `wait_for_any`, stored and resolved.

A wait is one row of `reverb.waits` per condition (migration 0010), keyed by the event
name, the match path and the value the run's triggering event has there: an accepted
event finds the waits it may resolve with one index lookup per match path used with its
name (`wait_keys`), never a scan of every open wait. A CEL condition (`if_`) is then
evaluated on those candidates only.

Why no event is missed (docs/architecture.md, "Waiting for events"):
- Accepting an event of a name in `wait_keys` enqueues a `match_waits` job in the
  accepting statement. The first wait of a (name, path) adds its `wait_keys` row under
  an ACCESS EXCLUSIVE lock of that table; the accepting statement reads the table, so it
  takes its lock before its snapshot: it either sees the row, or committed before the
  wait did.
- The job (`match_waits`) runs after its events committed, so it sees every wait
  committed before them.
- A wait with a lookback searches the events already accepted in the same transaction
  that commits it, holding an exclusive advisory lock on its key; a job takes that lock
  shared before it reads the waits. So an event either committed before the look back
  (found by it), or its job waits for the wait's commit and then sees the wait.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg
import orjson

from reverb_store.execution.records import EventRecord, StepState, StepTiming
from reverb_store.execution.steps import step_state
from reverb_store.expressions import Expression, ExpressionError, compile_expression
from reverb_store.ids import FunctionId, RunId

# How long a wait lasts when the function gives no timeout.
DEFAULT_WAIT_TIMEOUT = timedelta(hours=1)

# The variables a wait's condition may read: the run's triggering event and the candidate.
VARIABLES = frozenset({"event", "async"})

# Runs whose waits are still worth resolving; the waits of other runs are deleted.
LIVE = frozenset({"queued", "running", "sleeping", "waiting"})


@dataclass(frozen=True, slots=True)
class WaitCondition:
    """An event a wait accepts: its name, a match path ("data.order_id", "" for none) and
    a CEL condition ("" for none)."""

    event: str
    match: str = ""
    condition: str = ""


@dataclass(frozen=True, slots=True)
class WaitRequest:
    """A reported wait: its conditions (one, or wait_for_any's), timeout and look back."""

    conditions: tuple[WaitCondition, ...]
    timeout: timedelta = DEFAULT_WAIT_TIMEOUT
    lookback: timedelta | None = None


class WaitRefused(ValueError):
    """A wait the engine cannot store: a condition that does not compile, a match path the
    run's event lacks. The message names the function and the step."""


@dataclass(slots=True)
class WaitKeys:
    """The (event name, match path) pairs known to be in `reverb.wait_keys`: rows are never
    removed, so a pair seen once needs no query again."""

    known: set[tuple[str, tuple[str, ...]]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Condition:
    position: int
    event: str
    path: tuple[str, ...]
    # JSON text of the trigger's value at `path` ('null' without a path).
    value: str
    expression: Expression | None


def cel_event(event_id: str, name: str, data: object, ts: datetime) -> dict[str, object]:
    """An event as a condition reads it: `id`, `name`, `data` and `ts` (Unix milliseconds)."""
    return {"id": event_id, "name": name, "data": data, "ts": int(ts.timestamp() * 1000)}


def prepare(
    conditions: Sequence[WaitCondition], trigger: EventRecord | None, what: str
) -> list[_Condition]:
    """Check the conditions and read their match values from the trigger (WaitRefused)."""
    if not conditions:
        raise WaitRefused(f"{what}: a wait needs at least one event")
    trigger_data: object = None
    prepared = []
    for position, condition in enumerate(conditions):
        where = what if len(conditions) == 1 else f"{what}, wait {position}"
        if not condition.event.strip():
            raise WaitRefused(f"{where}: the event name is empty")
        expression = None
        if condition.condition:
            try:
                expression = compile_expression(
                    condition.condition, variables=VARIABLES, what=f"{where}: if_"
                )
            except ExpressionError as error:
                raise WaitRefused(str(error)) from None
        path: tuple[str, ...] = ()
        value = "null"
        if condition.match:
            path = match_path(condition.match, where)
            if trigger is None:
                raise WaitRefused(f"{where}: match {condition.match!r} needs a triggering event")
            if trigger_data is None:
                trigger_data = orjson.loads(trigger.data)
            found = _at(trigger_data, path)
            if found is _MISSING:
                raise WaitRefused(
                    f"{where}: match {condition.match!r}: the run's event has no {condition.match}"
                )
            value = orjson.dumps(found).decode()
        prepared.append(_Condition(position, condition.event, path, value, expression))
    return prepared


def match_path(match: str, what: str) -> tuple[str, ...]:
    """The path in an event's data that `match` ("data.a.b") names: ("a", "b")."""
    parts = match.split(".")
    if len(parts) < 2 or parts[0] != "data" or not all(part.strip() for part in parts):
        raise WaitRefused(
            f"{what}: match {match!r} must name a field of the events' data, like 'data.order_id'"
        )
    return tuple(parts[1:])


@dataclass(frozen=True, slots=True)
class DeclaredWait:
    """A wait's literal expressions as written in a function's source (the SDK reads them
    at declaration): its step id when literal, its match path and condition ("" for none
    or not literal). Checked at registration, neither stored nor hashed."""

    step_id: str = ""
    match: str = ""
    condition: str = ""


def check_declared(function_id: str, declared: Sequence[DeclaredWait]) -> None:
    """WaitRefused, naming the function and the step, unless each declared match path names
    a field of the events' data and each condition compiles over `event` and `async`: the
    checks a wait gets when its step runs (`prepare`), made at registration for what is
    known then."""
    for wait in declared:
        what = f"function {function_id!r}" + (f", step {wait.step_id!r}" if wait.step_id else "")
        if wait.match:
            match_path(wait.match, what)
        if wait.condition:
            try:
                compile_expression(wait.condition, variables=VARIABLES, what=f"{what}: if_")
            except ExpressionError as error:
                raise WaitRefused(str(error)) from None


_MISSING = object()


def _at(data: object, path: tuple[str, ...]) -> object:
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return _MISSING
    return data


# The output of a resolved wait, from the event `e` and the condition's index.
OUTPUT = (
    "jsonb_build_object('index', {index}, 'event', jsonb_build_object("
    "'id', e.id, 'name', e.name, 'data', e.data, 'ts', to_jsonb(e.ts AT TIME ZONE 'UTC')))"
)

_INSERT_STEP = """
INSERT INTO reverb.steps (run_id, id, name, kind, status, wake_at, started_at)
VALUES ($1, $2, $3, 'wait_for_event', 'waiting', now() + $4::interval, coalesce($5, now()))
ON CONFLICT (run_id, id) DO NOTHING
RETURNING id
"""

_INSERT_WAITS = """
INSERT INTO reverb.waits
    (run_id, step_id, position, event_name, match_path, match_value, condition, not_before)
SELECT $1, $2, t.position, t.event_name, t.match_path::text[], t.match_value::jsonb,
       t.condition, now() - $3::interval
FROM unnest($4::int[], $5::text[], $6::text[], $7::text[], $8::text[])
     AS t(position, event_name, match_path, match_value, condition)
"""

_KEY_EXISTS = """
SELECT EXISTS (SELECT FROM reverb.wait_keys WHERE event_name = $1 AND match_path = $2::text[])
"""

_LOOK_BACK = """
SELECT e.id, e.name, e.data::text AS data, e.ts, e.received_at
FROM reverb.events e
WHERE e.name = $1 AND e.received_at >= now() - $2::interval
  AND (cardinality($3::text[]) = 0 OR e.data #> $3::text[] = $4::jsonb)
ORDER BY e.received_at, e.id
"""

_LOCK_WAIT_KEYS = """
SELECT pg_advisory_xact_lock(key) FROM (
    SELECT DISTINCT reverb.wait_lock_key(t.event_name, t.match_path::text[], t.match_value::jsonb)
        AS key
    FROM unnest($1::text[], $2::text[], $3::text[]) AS t(event_name, match_path, match_value)
    ORDER BY key
) AS keys
"""

_COMPLETE_STEP = f"""
UPDATE reverb.steps s SET status = 'completed', wake_at = NULL, ended_at = now(),
    output = {OUTPUT.format(index="$3::int")}
FROM reverb.events e
WHERE s.run_id = $1 AND s.id = $2 AND e.id = $4
"""


async def record_wait(
    connection: asyncpg.Connection,
    run_id: RunId,
    function_id: FunctionId,
    trigger: EventRecord | None,
    timing: StepTiming,
    request: WaitRequest,
    keys: WaitKeys,
) -> StepState:
    """Commit a wait step: resolved at once by the earliest event of its look back, else
    `waiting` with its rows in `reverb.waits` until an event or its timeout.

    A step already recorded keeps its state (a report replayed after a crash). Raises
    WaitRefused for a wait that cannot be stored (nothing is written then).
    """
    what = f"function {function_id!r}, step {timing.name!r}"
    conditions = prepare(request.conditions, trigger, what)
    new_keys = []
    for key in dict.fromkeys((c.event, c.path) for c in conditions):
        if key not in keys.known and not await connection.fetchval(_KEY_EXISTS, key[0], key[1]):
            new_keys.append(key)
    async with connection.transaction():
        if new_keys:
            # Taken first in the transaction (before any read of wait_keys): two waits
            # adding keys cannot deadlock upgrading a lock.
            await connection.execute("LOCK TABLE reverb.wait_keys IN ACCESS EXCLUSIVE MODE")
            await connection.executemany(
                "INSERT INTO reverb.wait_keys (event_name, match_path) VALUES ($1, $2::text[])"
                " ON CONFLICT DO NOTHING",
                new_keys,
            )
        inserted = await connection.fetchval(
            _INSERT_STEP, run_id, timing.step_id, timing.name, request.timeout, timing.started_at
        )
        if inserted is None:
            return await step_state(connection, run_id, timing.step_id)
        if request.lookback is not None:
            found = await _look_back(connection, conditions, trigger, request.lookback)
            if found is not None:
                position, event_id = found
                await connection.execute(_COMPLETE_STEP, run_id, timing.step_id, position, event_id)
                state = await step_state(connection, run_id, timing.step_id)
                keys.known.update(new_keys)
                return state
        await connection.execute(
            _INSERT_WAITS,
            run_id,
            timing.step_id,
            request.lookback,
            [c.position for c in conditions],
            [c.event for c in conditions],
            [_path_literal(c.path) for c in conditions],
            [c.value for c in conditions],
            [c.expression.source if c.expression is not None else None for c in conditions],
        )
    keys.known.update(new_keys)
    return StepState("waiting")


async def _look_back(
    connection: asyncpg.Connection,
    conditions: Sequence[_Condition],
    trigger: EventRecord | None,
    lookback: timedelta,
) -> tuple[int, str] | None:
    """The earliest event of the look back that meets a condition: (position, event id).

    The keys' advisory locks are taken first (exclusive, in order): a `match_waits` job
    of an event committing meanwhile waits for this transaction, then sees the wait.
    """
    await connection.execute(
        _LOCK_WAIT_KEYS,
        [c.event for c in conditions],
        [_path_literal(c.path) for c in conditions],
        [c.value for c in conditions],
    )
    best: tuple[datetime, int, str] | None = None
    trigger_event = _trigger_activation(trigger)
    for condition in conditions:
        path = list(condition.path)
        async for row in connection.cursor(
            _LOOK_BACK, condition.event, lookback, path, condition.value, prefetch=50
        ):
            if best is not None and row["received_at"] > best[0]:
                break
            if condition.expression is None or holds(
                condition.expression, trigger_event, _row_activation(row)
            ):
                candidate = (row["received_at"], condition.position, row["id"])
                best = candidate if best is None or candidate < best else best
                break
    return None if best is None else (best[1], best[2])


def _path_literal(path: tuple[str, ...]) -> str:
    """A text[] literal of `path` (cast in SQL): unnest cannot take an array of arrays."""
    quoted = ('"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"' for part in path)
    return "{" + ",".join(quoted) + "}"


def _trigger_activation(trigger: EventRecord | None) -> dict[str, object] | None:
    if trigger is None:
        return None
    return cel_event(trigger.id, trigger.name, orjson.loads(trigger.data), trigger.ts)


def _row_activation(row: asyncpg.Record) -> dict[str, object]:
    return cel_event(row["id"], row["name"], orjson.loads(row["data"]), row["ts"])


def holds(
    expression: Expression,
    trigger: dict[str, object] | None,
    candidate: dict[str, object],
) -> bool:
    """Whether the condition is true for `candidate`; a failed evaluation (a missing field,
    a type mismatch) is not a match."""
    try:
        return expression.evaluate({"event": trigger or {}, "async": candidate}) is True
    except ExpressionError:
        return False
