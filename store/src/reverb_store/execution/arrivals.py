"""Arrivals: what the fan-out does with an event of a function with debounce, idempotency,
singleton or batch (`FlowOptions.arrives`).

Each (function, event) pair is handled in a transaction of its own, in event order:
1. idempotency: the event takes the function's key for 24 hours, or is skipped
   (`idempotent`) when another event holds it (an event the key cannot be computed for
   is not deduplicated);
2. debounce: the event joins the key's open window (the window's end moves; the newer
   of the two events, by `ts` then id, is the window's event, the other is skipped
   `debounced`), or opens a window with a new run, held by the debounce gate until the
   window ends;
3. batch: the event joins the key's open batch (a batch that is full is closed and its run
   woken now), or opens a batch with a new run, held by the batch gate until its timeout;
4. otherwise a run is created as any other (through the ordinary fan-out statement if
   the function is not a singleton).
A singleton function's new run is recorded with its key (`reverb.singletons`); in
`cancel` mode the key's other runs not ended are cancelled (`cancellation.cancel_run`)
once that is committed, and the singleton gate holds the new run until they stopped.

Keys are the JSON of the expression's value (`flow.keys.value`); a key that cannot be
computed for an event (a missing field) is `null` for debounce, batch and singleton
(such events share a key). Every pair is handled at most once, even when a fan-out job is
retried: an idempotency key remembers its event, and an event already in a window, a
batch, a run of the function or its skips is left alone.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
import structlog

from reverb_store import jobs
from reverb_store.execution.cancellation import cancel_run, cancelled_error
from reverb_store.execution.gates import Gates
from reverb_store.execution.skips import SkippedRun, record_skips
from reverb_store.flow.keys import event_activation, lock_singleton_key, value
from reverb_store.flow.options import FlowOptions, parse
from reverb_store.ids import EventId, FunctionId, RunId, new_id

_log = structlog.get_logger("reverb.arrivals")

# The reasons events are skipped for (`GET /events/{id}` lists them).
IDEMPOTENT = "idempotent"
DEBOUNCED = "debounced"

# What a debounced or batched run waits on (`waiting_on`): the names of the gates that
# hold it (`flow.debounce`, `flow.batch`).
DEBOUNCE = "debounce"
BATCH = "batch"

IDEMPOTENCY_PERIOD = timedelta(hours=24)
# The key of an event its expression cannot be computed for (a missing field).
NULL_KEY = "null"
# The error of a run a newer one of its singleton key cancelled (`cancel` mode).
SUPERSEDED = "cancelled by a newer run of its singleton key"


@dataclass(frozen=True, slots=True)
class Arrived:
    """A run the arrivals created for an event."""

    run_id: RunId
    function_id: FunctionId
    event_id: EventId


@dataclass(slots=True)
class Arrivals:
    """What `arrive` did: the runs it created, and the matches left to the ordinary
    fan-out (functions with only an idempotency key, whose event took it)."""

    created: list[Arrived] = field(default_factory=list)
    plain: list[asyncpg.Record] = field(default_factory=list)


# Whether the pair was handled before: the event is in a run of the function, in one of
# its windows or batches, or among its skips.
_SEEN = """
SELECT EXISTS (SELECT FROM reverb.runs WHERE event_ids @> ARRAY[$2::text] AND function_id = $1)
    OR EXISTS (SELECT FROM reverb.debounces WHERE function_id = $1 AND event_id = $2)
    OR EXISTS (SELECT FROM reverb.batches WHERE event_ids @> ARRAY[$2::text] AND function_id = $1)
    OR EXISTS (SELECT FROM reverb.event_skips WHERE event_id = $2 AND function_id = $1)
"""

# The key's holder: this event (again, a retried fan-out) or another one within 24 hours.
_TAKE_KEY = """
INSERT INTO reverb.idempotency_keys AS k (function_id, key, event_id) VALUES ($1, $2, $3)
ON CONFLICT (function_id, key) DO UPDATE
    SET event_id = CASE WHEN k.taken_at < now() - $4::interval THEN excluded.event_id
                        ELSE k.event_id END,
        taken_at = CASE WHEN k.taken_at < now() - $4::interval THEN now() ELSE k.taken_at END
RETURNING event_id
"""

# A gated run, queued, no job yet (the caller enqueues its wake-up). A debounced or
# batched run waits on its window or batch from the start (`waiting_on`).
_CREATE_RUN = """
INSERT INTO reverb.runs (id, function_id, app_id, status, event_ids, max_attempts,
                         traceparent, gated, waiting_kind)
VALUES ($1, $2, $3, 'queued', ARRAY[$4::text], $5, $6, true, $7)
"""

_OPEN_WINDOW = """
INSERT INTO reverb.debounces (function_id, key, run_id, event_id, event_ts, due_at)
VALUES ($1, $2, $3, $4, $7, now() + least($5::interval, coalesce($6::interval, $5::interval)))
ON CONFLICT (function_id, key) DO NOTHING
RETURNING run_id
"""

# The window's end moves on (capped by the timeout from its start); its event becomes
# this one unless this one is older (fan-outs of a key's events may run out of order):
# the older of the two is the one superseded.
_EXTEND_WINDOW = """
WITH window_ AS (
    SELECT run_id, event_id, (event_ts, event_id) < ($6::timestamptz, $3::text) AS newer
    FROM reverb.debounces WHERE function_id = $1 AND key = $2
    FOR UPDATE
)
UPDATE reverb.debounces d
SET event_id = CASE WHEN w.newer THEN $3 ELSE d.event_id END,
    event_ts = CASE WHEN w.newer THEN $6 ELSE d.event_ts END,
    due_at = CASE WHEN $5::interval IS NULL THEN now() + $4::interval
                  ELSE least(now() + $4::interval, d.started_at + $5::interval) END
FROM window_ w
WHERE d.function_id = $1 AND d.key = $2
RETURNING CASE WHEN w.newer THEN w.event_id ELSE $3 END AS superseded, d.run_id
"""

_OPEN_BATCH = """
INSERT INTO reverb.batches (run_id, function_id, key, event_ids, due_at, open)
VALUES ($1, $2, $3, ARRAY[$4::text], now() + $5::interval, $6)
ON CONFLICT (function_id, key) WHERE open DO NOTHING
RETURNING run_id
"""

_JOIN_BATCH = """
WITH batch AS (
    SELECT run_id FROM reverb.batches WHERE function_id = $1 AND key = $2 AND open
    FOR UPDATE
)
UPDATE reverb.batches b
SET event_ids = b.event_ids || $3::text, open = cardinality(b.event_ids) + 1 < $4
FROM batch
WHERE b.run_id = batch.run_id
RETURNING b.run_id, b.open
"""

_RECORD_SINGLETON = "INSERT INTO reverb.singletons (run_id, function_id, key) VALUES ($1, $2, $3)"

# The key's other runs not ended, to cancel in `cancel` mode.
_OTHERS_OF_KEY = """
SELECT s.run_id FROM reverb.singletons s JOIN reverb.runs r ON r.id = s.run_id
WHERE s.function_id = $1 AND s.key = $2 AND s.run_id <> $3
  AND r.status NOT IN ('completed', 'failed', 'cancelled')
ORDER BY s.run_id
"""


async def arrive(
    connection: asyncpg.Connection,
    matches: Sequence[asyncpg.Record],
    traceparent: str | None,
    wakeups: jobs.Wakeups,
    gates: Gates,
) -> Arrivals:
    """Handle the matches (the fan-out's read: event and function columns, with `flow`)
    of functions whose options arrive (see the module). `wakeups` hears of the wake-ups
    of held runs (a window's or a batch's end); `gates` are told of the runs a singleton
    in `cancel` mode cancels."""
    result = Arrivals()
    for match in matches:
        to_cancel: list[RunId] = []
        async with connection.transaction():
            await _arrive(
                connection, match, parse(match["flow"]), traceparent, wakeups, result, to_cancel
            )
        await cancel_superseded(connection, to_cancel, gates)
    return result


async def _arrive(
    connection: asyncpg.Connection,
    match: asyncpg.Record,
    options: FlowOptions,
    traceparent: str | None,
    wakeups: jobs.Wakeups,
    result: Arrivals,
    to_cancel: list[RunId],
) -> None:
    function_id: FunctionId = match["function_id"]
    event_id: EventId = match["event_id"]
    activation = event_activation(event_id, match["name"], match["data"], match["ts"])
    if await _duplicate(connection, match, options, activation):
        await record_skips(connection, [SkippedRun(event_id, function_id, IDEMPOTENT)])
        return
    if options.singleton is None and options.debounce is None and options.batch is None:
        result.plain.append(match)
        return
    if await connection.fetchval(_SEEN, function_id, event_id):
        return
    keys = _keys(match, options, activation)
    run_id: RunId | None
    delay = timedelta(0)
    if options.debounce is not None:
        run_id, delay = await _debounce(connection, match, options, keys, traceparent)
    elif options.batch is not None:
        run_id, delay = await _batch(connection, match, options, keys, traceparent)
    else:
        run_id = RunId(new_id())
        await _create_run(connection, run_id, match, traceparent)
    if run_id is None:
        return
    if options.singleton is not None:
        key = keys.get("singleton.key", "")
        to_cancel.extend(await _record_singleton(connection, run_id, function_id, key, options))
    wake = jobs.AdvanceRun(run_id, traceparent)
    if delay > timedelta(0):
        await jobs.schedule(connection, [wake], [delay], wakeups)
    else:
        await jobs.enqueue(connection, [wake])
    result.created.append(Arrived(run_id, function_id, event_id))


async def _duplicate(
    connection: asyncpg.Connection,
    match: asyncpg.Record,
    options: FlowOptions,
    activation: dict[str, object],
) -> bool:
    """Whether another event holds the event's idempotency key (this one takes it if
    not). An event the key cannot be computed for cannot be told a duplicate: it runs."""
    return await _key_held(connection, match["function_id"], match["event_id"], options, activation)


async def _key_held(
    connection: asyncpg.Connection,
    function_id: FunctionId,
    event_id: EventId,
    options: FlowOptions,
    activation: dict[str, object],
) -> bool:
    """Whether another event holds the event's idempotency key (see `_duplicate`)."""
    if options.idempotency is None:
        return False
    key = value(options.idempotency, f"function {function_id!r}: idempotency", activation)
    if key is None:
        return False
    holder = await connection.fetchval(_TAKE_KEY, function_id, key, event_id, IDEMPOTENCY_PERIOD)
    return bool(holder != event_id)


async def _record_singleton(
    connection: asyncpg.Connection,
    run_id: RunId,
    function_id: FunctionId,
    key: str,
    options: FlowOptions,
) -> list[RunId]:
    """Record the singleton function's new run with its key; in `cancel` mode, the key's
    other runs not ended (to cancel once the caller's transaction committed)."""
    await lock_singleton_key(connection, function_id, key)
    await connection.execute(_RECORD_SINGLETON, run_id, function_id, key)
    if options.singleton is None or options.singleton.mode != "cancel":
        return []
    others = await connection.fetch(_OTHERS_OF_KEY, function_id, key, run_id)
    return [row["run_id"] for row in others]


async def invoked_duplicate(
    connection: asyncpg.Connection,
    function_id: FunctionId,
    event_id: EventId,
    options: FlowOptions,
    activation: dict[str, object],
) -> bool:
    """`step.invoke`: whether another event holds the child's idempotency key (the invoked
    event takes it if not); a duplicate is recorded skipped (`idempotent`)."""
    if not await _key_held(connection, function_id, event_id, options, activation):
        return False
    await record_skips(connection, [SkippedRun(event_id, function_id, IDEMPOTENT)])
    return True


async def invoked_singleton(
    connection: asyncpg.Connection,
    run_id: RunId,
    function_id: FunctionId,
    options: FlowOptions,
    activation: dict[str, object],
) -> list[RunId]:
    """`step.invoke` of a singleton function: the child is recorded with its key, so the
    singleton gate decides on it at its claim as on an event's run; in `cancel` mode the
    key's other runs not ended, for `cancel_superseded` once the caller committed."""
    if options.singleton is None:
        return []
    key = ""  # a key without an expression: the function's one key (as `_keys` has it)
    if options.singleton.key is not None:
        what = f"function {function_id!r}: singleton.key"
        key = value(options.singleton.key, what, activation) or NULL_KEY
    return await _record_singleton(connection, run_id, function_id, key, options)


async def cancel_superseded(
    connection: asyncpg.Connection, run_ids: Sequence[RunId], gates: Gates
) -> None:
    """Cancel the runs a newer run of their singleton key supersedes (`cancel` mode)."""
    error = cancelled_error(SUPERSEDED)
    for run_id in run_ids:
        await cancel_run(connection, run_id, error=error, gates=gates)


def _keys(
    match: asyncpg.Record, options: FlowOptions, activation: dict[str, object]
) -> dict[str, str]:
    """The event's debounce, batch and singleton keys (`null` for one that has no value)."""
    keys: dict[str, str] = {}
    for name, source in options.arrival_keys().items():
        if name == "idempotency":
            continue
        key = value(source, f"function {match['function_id']!r}: {name}", activation)
        if key is None:
            _log.info("a key has no value for an event", event_id=match["event_id"], option=name)
        keys[name] = NULL_KEY if key is None else key
    return keys


async def _debounce(
    connection: asyncpg.Connection,
    match: asyncpg.Record,
    options: FlowOptions,
    keys: dict[str, str],
    traceparent: str | None,
) -> tuple[RunId | None, timedelta]:
    """Join the key's window (None: no new run) or open one: (its run, its wait)."""
    assert options.debounce is not None
    debounce = options.debounce
    function_id, event_id = match["function_id"], match["event_id"]
    key = keys.get("debounce.key", "")
    while True:
        joined = await connection.fetchrow(
            _EXTEND_WINDOW,
            function_id,
            key,
            event_id,
            debounce.period,
            debounce.timeout,
            match["ts"],
        )
        if joined is not None:
            skip = SkippedRun(joined["superseded"], function_id, DEBOUNCED)
            await record_skips(connection, [skip])
            return None, timedelta(0)
        run_id = RunId(new_id())
        opened = await connection.fetchval(
            _OPEN_WINDOW,
            function_id,
            key,
            run_id,
            event_id,
            debounce.period,
            debounce.timeout,
            match["ts"],
        )
        if opened is not None:
            await _create_run(connection, run_id, match, traceparent, DEBOUNCE)
            wait = debounce.period
            if debounce.timeout is not None:
                wait = min(wait, debounce.timeout)
            return run_id, wait
        # Another fan-out opened the window meanwhile: join it.


async def _batch(
    connection: asyncpg.Connection,
    match: asyncpg.Record,
    options: FlowOptions,
    keys: dict[str, str],
    traceparent: str | None,
) -> tuple[RunId | None, timedelta]:
    """Join the key's open batch (None: no new run) or open one: (its run, its wait)."""
    assert options.batch is not None
    batch = options.batch
    function_id, event_id = match["function_id"], match["event_id"]
    key = keys.get("batch.key", "")
    while True:
        joined = await connection.fetchrow(_JOIN_BATCH, function_id, key, event_id, batch.max_size)
        if joined is not None:
            if not joined["open"]:
                # Full: its run starts now (its wake-up at the timeout finds it started).
                await jobs.enqueue(connection, [jobs.AdvanceRun(joined["run_id"], traceparent)])
            return None, timedelta(0)
        run_id = RunId(new_id())
        full = batch.max_size <= 1
        opened = await connection.fetchval(
            _OPEN_BATCH, run_id, function_id, key, event_id, batch.timeout, not full
        )
        if opened is not None:
            await _create_run(connection, run_id, match, traceparent, BATCH)
            return run_id, timedelta(0) if full else batch.timeout


async def _create_run(
    connection: asyncpg.Connection,
    run_id: RunId,
    match: asyncpg.Record,
    traceparent: str | None,
    waiting_on: str | None = None,
) -> None:
    await connection.execute(
        _CREATE_RUN,
        run_id,
        match["function_id"],
        match["app_id"],
        match["event_id"],
        match["retries"] + 1,
        traceparent,
        waiting_on,
    )
