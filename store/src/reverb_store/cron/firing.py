"""The scheduler: fire the schedules that are due, then schedule the next `cron_tick`.

Exactly one run per tick, across any number of workers, crashes and leader changes:
a schedule's row is locked while it fires (`FOR UPDATE SKIP LOCKED`: workers share
the due rows, never wait on each other), its next tick is written in the transaction
that starts the tick's run, and the tick's event has a deterministic id
(`reverb-cron:<function>:<tick>`): a tick fired twice (a backfill, a takeover) stores
no second event and starts no second run (one run per function and event).

`cron_tick` jobs are hints that schedules may be due (the rows are the truth). After
firing, the job schedules the next one at the earliest `fire_at` of all schedules,
unless a queued one is due by then (under an advisory lock, so workers keep one
chain). Registration queues one when it adds a schedule, and a buffered tick's
previous run queues one when it ends (migration 0007). A worker that dies holding the
job leaves it picked until its heartbeat is stale, as any job; the ticks that fell due
meanwhile are missed and caught up by each schedule's `catch_up`.

`now` is the caller's clock (tests drive it).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import asyncpg
import orjson
import structlog

from reverb.schedules import CronSchedule
from reverb_store import jobs
from reverb_store.cron.policies import Plan, ScheduleState, plan
from reverb_store.execution.cancellation import CANCELLABLE, cancel_run, cancelled_error
from reverb_store.execution.fanout import RunStart, start_runs
from reverb_store.execution.gates import NO_GATES, Gates
from reverb_store.flow.options import parse as parse_flow
from reverb_store.ids import AppId, EventId, FunctionId, RunId

_log = structlog.get_logger("reverb.cron")

CRON_EVENT = "reverb/cron"
# Schedules fired per transaction.
BATCH = 500
# When due schedules are all held by another worker: look again after this long.
RECHECK = timedelta(milliseconds=250)

_FINAL = ("completed", "failed", "cancelled")

_DUE = f"""
SELECT s.id, s.function_id, f.app_id, f.retries, f.flow::text AS flow, s.cron, s.timezone,
       s.overlap, s.catch_up, s.catch_up_window, s.jitter, s.next_at, s.buffered_at,
       s.last_run_id,
       coalesce(r.status NOT IN {_FINAL}, false) AS previous_running
FROM reverb.cron_schedules s
JOIN reverb.functions f ON f.id = s.function_id
LEFT JOIN reverb.runs r ON r.id = s.last_run_id
WHERE s.fire_at <= $1
ORDER BY s.id
LIMIT $2
FOR UPDATE OF s SKIP LOCKED
"""

# received_at is when the batch's events are written (not its transaction's start): the
# tick's lateness, which the bench measures.
_INSERT_EVENTS = """
INSERT INTO reverb.events (id, name, data, ts, received_at)
SELECT *, clock_timestamp()
FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::timestamptz[])
ON CONFLICT (id) DO NOTHING
RETURNING id
"""

_UPDATE = """
UPDATE reverb.cron_schedules s
SET next_at = t.next_at, fire_at = t.fire_at, buffered_at = t.buffered_at,
    last_at = coalesce(t.last_at, s.last_at), last_run_id = coalesce(t.last_run_id, s.last_run_id),
    missed = s.missed + t.missed, skipped = s.skipped + t.skipped, updated_at = now()
FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[],
            $5::timestamptz[], $6::text[], $7::bigint[], $8::bigint[])
    AS t (id, next_at, fire_at, buffered_at, last_at, last_run_id, missed, skipped)
WHERE s.id = t.id
"""


def tick_text(tick: datetime) -> str:
    """A tick as ISO-8601 UTC, e.g. "2026-12-02T09:00:00Z" (its event id's suffix);
    milliseconds only when it has them (a tick triggered through the API)."""
    spec = "milliseconds" if tick.microsecond else "seconds"
    return tick.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def event_id(function_id: str, tick: datetime) -> EventId:
    return EventId(f"reverb-cron:{function_id}:{tick_text(tick)}")


def event_data(schedule: CronSchedule, tick: datetime) -> str:
    document = {"cron": schedule.expression, "timezone": schedule.timezone}
    return orjson.dumps({**document, "scheduled_at": tick_text(tick)}).decode()


@dataclass(frozen=True, slots=True)
class Lost:
    """Ticks of one schedule that started no run in one firing: missed (no worker fired
    them in time) or skipped (overlap), and why (`policies.MISSED_REASONS`,
    `policies.SKIPPED_REASONS`)."""

    function_id: str
    kind: Literal["missed", "skipped"]
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class Fired:
    """What one `fire_due` did."""

    schedules: int = 0
    runs: int = 0
    missed: int = 0
    skipped: int = 0
    # Previous runs cancelled for the new tick's (overlap `cancel_previous`).
    cancelled: int = 0
    # The missed and skipped ticks by schedule and reason (what the worker counts).
    lost: tuple[Lost, ...] = ()


# The error of a run its schedule's next tick replaced (overlap `cancel_previous`).
REPLACED = cancelled_error("cancelled by its cron schedule's next tick (overlap cancel_previous)")


async def fire_due(
    connection: asyncpg.Connection,
    now: datetime,
    gates: Gates = NO_GATES,
    batch: int = BATCH,
    wakeups: jobs.Wakeups | None = None,
) -> Fired:
    """Fire every schedule due at `now` that no other worker holds, `batch` per transaction.

    Ticks of functions with arrival options (debounce, idempotency, singleton, batch) go
    through the arrivals as events do (`start_runs`), which needs `wakeups`."""
    total = Fired()
    while True:
        async with connection.transaction():
            rows = await connection.fetch(_DUE, now, batch)
            if rows:
                done = await _fire(connection, rows, now, gates, wakeups)
                total = Fired(
                    total.schedules + done.schedules,
                    total.runs + done.runs,
                    total.missed + done.missed,
                    total.skipped + done.skipped,
                    total.cancelled + done.cancelled,
                    total.lost + done.lost,
                )
        if len(rows) < batch:
            return total


async def _fire(
    connection: asyncpg.Connection,
    rows: Sequence[asyncpg.Record],
    now: datetime,
    gates: Gates,
    wakeups: jobs.Wakeups | None,
) -> Fired:
    plans = [(row, plan(_state(row), now)) for row in rows]
    ids, names, data, stamps, starts = [], [], [], [], []
    for row, outcome in plans:
        schedule = CronSchedule(row["cron"], row["timezone"])
        for tick in outcome.fires:
            ids.append(event_id(row["function_id"], tick))
            names.append(CRON_EVENT)
            data.append(event_data(schedule, tick))
            stamps.append(tick)
            function = FunctionId(row["function_id"])
            starts.append(
                RunStart(
                    function,
                    AppId(row["app_id"]),
                    ids[-1],
                    row["retries"],
                    parse_flow(row["flow"]),
                )
            )
    cancelled = await _cancel_previous(connection, plans, gates)
    if ids:
        await connection.fetch(_INSERT_EVENTS, ids, names, data, stamps)
    started = await start_runs(connection, starts, gates, wakeups)
    created = {run.event_id: run.run_id for run in started}
    updates: list[list[object]] = [[] for _ in range(8)]
    lost: list[Lost] = []
    for row, outcome in plans:
        last_at, last_run = _last_started(row["function_id"], outcome, created)
        for column, value in zip(
            updates,
            (
                row["id"],
                outcome.next_at,
                outcome.fire_at,
                outcome.buffered_at,
                last_at,
                last_run,
                outcome.missed_count,
                len(outcome.skipped),
            ),
            strict=True,
        ):
            column.append(value)
        lost.extend(_lost(row["function_id"], outcome))
    await connection.execute(_UPDATE, *updates)
    for row, outcome in plans:  # once the firing is written (the transaction may still fail)
        _report(row["function_id"], outcome)
    return Fired(
        len(rows),
        len(created),
        sum(outcome.missed_count for _, outcome in plans),
        sum(len(outcome.skipped) for _, outcome in plans),
        cancelled,
        tuple(lost),
    )


async def _cancel_previous(
    connection: asyncpg.Connection,
    plans: Sequence[tuple[asyncpg.Record, Plan]],
    gates: Gates,
) -> int:
    """Cancel the previous run of each schedule whose overlap is `cancel_previous` (in
    this transaction, before the new tick's run starts; a running one stops at its next
    step boundary). Runs in ascending id order (docs/architecture.md, "Lock order")."""
    previous = sorted(
        (row["last_run_id"], row["function_id"])
        for row, outcome in plans
        if outcome.cancel_previous and row["last_run_id"] is not None
    )
    cancelled = 0
    for run_id, function_id in previous:
        status = await cancel_run(connection, RunId(run_id), error=REPLACED, gates=gates)
        if status in CANCELLABLE:  # it was live, and is cancelled now
            cancelled += 1
            _log.info(
                "cron run cancelled: the next tick replaces it",
                function_id=function_id,
                run_id=run_id,
                was=status,
            )
    return cancelled


def _state(row: asyncpg.Record) -> ScheduleState:
    return ScheduleState(
        function_id=row["function_id"],
        schedule=CronSchedule(row["cron"], row["timezone"]),
        overlap=row["overlap"],
        catch_up=row["catch_up"],
        catch_up_window=row["catch_up_window"],
        jitter=row["jitter"],
        next_at=row["next_at"],
        buffered_at=row["buffered_at"],
        previous_running=row["previous_running"],
    )


def _last_started(
    function_id: str, outcome: Plan, created: Mapping[EventId, RunId]
) -> tuple[datetime | None, RunId | None]:
    """The newest tick of the plan that started a run, and that run."""
    for tick in reversed(outcome.fires):
        run_id = created.get(event_id(function_id, tick))
        if run_id is not None:
            return tick, run_id
    return None, None


def _lost(function_id: str, outcome: Plan) -> list[Lost]:
    lost = []
    if outcome.missed_count:
        lost.append(Lost(function_id, "missed", outcome.missed_reason, outcome.missed_count))
    if outcome.skipped:
        lost.append(Lost(function_id, "skipped", outcome.skipped_reason, len(outcome.skipped)))
    return lost


def _report(function_id: str, outcome: Plan) -> None:
    """Log the plan's missed ticks (one line: a week of them may be millions) and each
    skipped tick, with the schedule's function, the ticks and why."""
    if outcome.missed_count:
        first, last = outcome.first_missed, outcome.last_missed
        _log.warning(
            "cron ticks missed",
            function_id=function_id,
            reason=outcome.missed_reason,
            missed=outcome.missed_count,
            first=None if first is None else tick_text(first),
            latest=None if last is None else tick_text(last),
        )
    for tick in outcome.skipped:
        _log.info(
            "cron tick skipped",
            function_id=function_id,
            tick=tick_text(tick),
            reason=outcome.skipped_reason,
        )


# One chain of cron_tick jobs: workers planning at once take turns.
_LOCK_CHAIN = "SELECT pg_advisory_xact_lock(hashtextextended('reverb.cron_tick', 0))"

_QUEUED_BY = f"""
SELECT EXISTS (
    SELECT FROM {jobs.QUEUE_TABLE}
    WHERE entrypoint = '{jobs.CRON_TICK.name}' AND status = 'queued'
      AND execute_after <= now() + $1::interval)
"""


async def schedule_next(
    connection: asyncpg.Connection, now: datetime, wakeups: jobs.Wakeups, fired: Fired
) -> timedelta | None:
    """Queue the `cron_tick` job of the earliest schedule not fired yet, unless one is
    queued by then; the delay, or None when nothing needed queueing."""
    async with connection.transaction():
        earliest: datetime | None = await connection.fetchval(
            "SELECT min(fire_at) FROM reverb.cron_schedules"
        )
        if earliest is None:
            return None
        delay = earliest - now
        if delay <= timedelta(0) and not fired.schedules:
            delay = RECHECK  # due, but held by another worker's firing
        delay = max(delay, timedelta(0))
        await connection.execute(_LOCK_CHAIN)
        if await connection.fetchval(_QUEUED_BY, delay):
            return None
        await jobs.schedule(connection, [jobs.CronTick()], [delay], wakeups)
        return delay
