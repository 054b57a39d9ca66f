"""What the control plane reads: events, runs with their steps, and registered functions.

JSON columns come back as JSON text (asyncpg's default for jsonb), so callers
can pass them on without parsing. Lists are keyset-paginated: events by
(received_at, id) descending, runs by id descending (UUIDv7: creation order).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import orjson

from reverb.engine_errors import UNTYPED
from reverb_store.cron.schedules import ScheduleRecord, list_schedules
from reverb_store.execution.cancel_on import CancelCondition
from reverb_store.execution.cancel_on import parse as parse_cancel_on
from reverb_store.execution.records import RunStatus, StepKind, StepStatus
from reverb_store.flow.options import NO_FLOW, FlowOptions
from reverb_store.flow.options import parse as parse_flow
from reverb_store.ids import AppId, EventId, FunctionId, RunId, StepId


@dataclass(frozen=True, slots=True)
class ErrorDetails:
    type: str
    message: str
    stack: str = ""


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: EventId
    name: str
    # JSON text of an object.
    data: str
    ts: datetime
    received_at: datetime


@dataclass(frozen=True, slots=True)
class EventCursor:
    """Where the previous page of events ended."""

    received_at: datetime
    id: str


@dataclass(frozen=True, slots=True)
class WaitingOn:
    """Why a queued run waits: the kind of hold ("concurrency", "throttle", "paused", ...)
    and when it ends by itself, if it does."""

    kind: str
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class CancelledBy:
    """The event that cancelled a run (`reverb.event_cancellations`), and the index of
    the cancel_on entry it met; `event_name` is "" if the event is no longer stored."""

    event_id: EventId
    event_name: str
    cancel_on: int


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: RunId
    function_id: FunctionId
    app_id: AppId
    status: RunStatus
    event_ids: tuple[EventId, ...]
    attempt: int
    invocations: int
    # JSON text, or None when the run has not completed.
    output: str | None
    error: ErrorDetails | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    parent_run_id: RunId | None
    # The run's trace: its traceparent's trace id, else the run id's 32 hex digits (the
    # worker's spans of a run no request started form a trace of that id); "" if neither.
    trace_id: str
    # The run this one replays, and the step it was replayed from (None: the start).
    replay_of: RunId | None = None
    replay_from_step: StepId | None = None
    # Set while a run gate holds the queued run.
    waiting_on: WaitingOn | None = None
    # Set for a run an event cancelled through its function's cancel_on.
    cancelled_by: CancelledBy | None = None


@dataclass(frozen=True, slots=True)
class StepRecord:
    id: StepId
    name: str
    kind: StepKind
    status: StepStatus
    attempts: int
    output: str | None
    error: ErrorDetails | None
    wake_at: datetime | None
    child_run_id: RunId | None
    started_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class RunFilter:
    function_id: FunctionId | None = None
    statuses: tuple[RunStatus, ...] = ()
    event_id: EventId | None = None


@dataclass(frozen=True, slots=True)
class TriggerRecord:
    """An event trigger (`event`) or a cron trigger (`schedule`, with its state)."""

    event: str | None = None
    schedule: ScheduleRecord | None = None


@dataclass(frozen=True, slots=True)
class FunctionRecord:
    id: FunctionId
    app_id: AppId
    name: str
    retries: int
    triggers: tuple[TriggerRecord, ...]
    on_failure: str | None = None
    start_timeout: timedelta | None = None
    finish_timeout: timedelta | None = None
    # Set while the function is paused (`execution.pausing`).
    paused_at: datetime | None = None
    flow: FlowOptions = NO_FLOW
    cancel_on: tuple[CancelCondition, ...] = ()


_EVENT_COLUMNS = "id, name, data, ts, received_at"
_RUN_COLUMNS = (
    "id, function_id, app_id, status, event_ids, attempt, invocations, output, error,"
    " created_at, started_at, ended_at, parent_run_id,"
    " coalesce(split_part(traceparent, '-', 2), CASE WHEN id ~ '^[0-9a-f]{8}(-[0-9a-f]{4}){3}"
    "-[0-9a-f]{12}$' THEN replace(id, '-', '') ELSE '' END) AS trace_id,"
    " replay_of, replay_from_step, waiting_kind,"
    # A debounced or batched run waits until its window's or batch's end, which events
    # move on after the hold was recorded (`execution.arrivals`): read where it is kept.
    " CASE waiting_kind"
    " WHEN 'debounce' THEN (SELECT d.due_at FROM reverb.debounces d WHERE d.run_id = runs.id)"
    " WHEN 'batch' THEN (SELECT CASE WHEN b.open THEN b.due_at END FROM reverb.batches b"
    " WHERE b.run_id = runs.id)"
    " ELSE waiting_until END AS waiting_until,"
    # Only a cancelled run looks up its canceller (one primary-key probe).
    " CASE WHEN status = 'cancelled' THEN (SELECT jsonb_build_object('event_id', c.event_id,"
    " 'event_name', coalesce(e.name, ''), 'cancel_on', c.position)::text"
    " FROM reverb.event_cancellations c LEFT JOIN reverb.events e ON e.id = c.event_id"
    " WHERE c.run_id = runs.id) END AS cancelled_by"
)


def _where(conditions: list[str]) -> str:
    """A WHERE clause joining fixed SQL fragments; the values stay parameters."""
    return " WHERE " + " AND ".join(conditions) if conditions else ""


def _error(value: str | None, *, with_stack: bool) -> ErrorDetails | None:
    if value is None:
        return None
    body = orjson.loads(value)
    if not isinstance(body, dict):
        return ErrorDetails(type=UNTYPED.name, message=str(body))
    return ErrorDetails(
        type=str(body.get("type") or UNTYPED.name),
        message=str(body.get("message") or ""),
        stack=str(body.get("stack") or "") if with_stack else "",
    )


def _event(row: asyncpg.Record) -> EventRecord:
    return EventRecord(row["id"], row["name"], row["data"], row["ts"], row["received_at"])


def _run(row: asyncpg.Record, *, with_stack: bool) -> RunRecord:
    return RunRecord(
        id=row["id"],
        function_id=row["function_id"],
        app_id=row["app_id"],
        status=row["status"],
        event_ids=tuple(row["event_ids"]),
        attempt=row["attempt"],
        invocations=row["invocations"],
        output=row["output"],
        error=_error(row["error"], with_stack=with_stack),
        created_at=row["created_at"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        parent_run_id=row["parent_run_id"],
        trace_id=row["trace_id"],
        replay_of=row["replay_of"],
        replay_from_step=row["replay_from_step"],
        waiting_on=WaitingOn(row["waiting_kind"], row["waiting_until"])
        if row["waiting_kind"] is not None and row["status"] == "queued"
        else None,
        cancelled_by=_cancelled_by(row["cancelled_by"]),
    )


def _cancelled_by(value: str | None) -> CancelledBy | None:
    if value is None:
        return None
    body = orjson.loads(value)
    return CancelledBy(EventId(body["event_id"]), body["event_name"], body["cancel_on"])


async def get_event(connection: asyncpg.Connection, event_id: str) -> EventRecord | None:
    row = await connection.fetchrow(
        f"SELECT {_EVENT_COLUMNS} FROM reverb.events WHERE id = $1", event_id
    )
    return _event(row) if row is not None else None


async def list_events(
    connection: asyncpg.Connection,
    *,
    name: str | None,
    limit: int,
    after: EventCursor | None = None,
) -> list[EventRecord]:
    """The newest events first, at most `limit`, strictly after the cursor."""
    conditions: list[str] = []
    arguments: list[object] = []
    if name is not None:
        arguments.append(name)
        conditions.append(f"name = ${len(arguments)}")
    if after is not None:
        arguments += [after.received_at, after.id]
        conditions.append(f"(received_at, id) < (${len(arguments) - 1}, ${len(arguments)})")
    arguments.append(limit)
    rows = await connection.fetch(
        f"SELECT {_EVENT_COLUMNS} FROM reverb.events{_where(conditions)}"
        f" ORDER BY received_at DESC, id DESC LIMIT ${len(arguments)}",
        *arguments,
    )
    return [_event(row) for row in rows]


async def get_run(connection: asyncpg.Connection, run_id: str) -> RunRecord | None:
    """A run with its error's stack (the caller asked for this run)."""
    row = await connection.fetchrow(f"SELECT {_RUN_COLUMNS} FROM reverb.runs WHERE id = $1", run_id)
    return _run(row, with_stack=True) if row is not None else None


async def list_runs(
    connection: asyncpg.Connection,
    run_filter: RunFilter,
    *,
    limit: int,
    before_id: str | None = None,
) -> list[RunRecord]:
    """The newest runs first, at most `limit`, with ids below `before_id`; no stacks."""
    conditions: list[str] = []
    arguments: list[object] = []
    if run_filter.function_id is not None:
        arguments.append(run_filter.function_id)
        conditions.append(f"function_id = ${len(arguments)}")
    if run_filter.statuses:
        arguments.append(list(run_filter.statuses))
        conditions.append(f"status = ANY(${len(arguments)}::text[])")
    if run_filter.event_id is not None:
        arguments.append([run_filter.event_id])
        conditions.append(f"event_ids @> ${len(arguments)}::text[]")
    if before_id is not None:
        arguments.append(before_id)
        conditions.append(f"id < ${len(arguments)}")
    arguments.append(limit)
    rows = await connection.fetch(
        f"SELECT {_RUN_COLUMNS} FROM reverb.runs{_where(conditions)}"
        f" ORDER BY id DESC LIMIT ${len(arguments)}",
        *arguments,
    )
    return [_run(row, with_stack=False) for row in rows]


async def runs_of_event(connection: asyncpg.Connection, event_id: EventId) -> list[RunRecord]:
    """The runs an event triggered, oldest first."""
    return list(reversed(await list_runs(connection, RunFilter(event_id=event_id), limit=1000)))


async def list_steps(connection: asyncpg.Connection, run_id: str) -> list[StepRecord]:
    """A run's steps in the order they started (commit order among equals)."""
    rows = await connection.fetch(
        "SELECT id, name, kind, status, attempts, output, error, wake_at, child_run_id,"
        " started_at, ended_at FROM reverb.steps WHERE run_id = $1"
        " ORDER BY started_at NULLS LAST, seq",
        run_id,
    )
    return [
        StepRecord(
            id=row["id"],
            name=row["name"],
            kind=row["kind"],
            status=row["status"],
            attempts=row["attempts"],
            output=row["output"],
            error=_error(row["error"], with_stack=True),
            wake_at=row["wake_at"],
            child_run_id=row["child_run_id"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
        )
        for row in rows
    ]


_FUNCTIONS = """
SELECT f.id, f.app_id, f.name, f.retries, f.on_failure, f.start_timeout, f.finish_timeout,
    f.paused_at,
    f.flow::text AS flow, f.cancel_on::text AS cancel_on,
    coalesce(array_agg(t.event_name) FILTER (WHERE t.event_name IS NOT NULL), '{}') AS events
FROM reverb.functions f LEFT JOIN reverb.triggers t ON t.function_id = f.id
{where}
GROUP BY f.id ORDER BY f.app_id, f.id
"""


async def list_functions(connection: asyncpg.Connection) -> list[FunctionRecord]:
    """Every registered function with its triggers (events, then cron schedules with
    their next and last ticks), by app then id."""
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        rows = await connection.fetch(_FUNCTIONS.replace("{where}", ""))
        return _functions(rows, await list_schedules(connection))


async def get_function(connection: asyncpg.Connection, function_id: str) -> FunctionRecord | None:
    """The function with its triggers; None if it is not registered."""
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        rows = await connection.fetch(_FUNCTIONS.replace("{where}", "WHERE f.id = $1"), function_id)
        if not rows:
            return None
        return _functions(rows, await list_schedules(connection, function_id))[0]


def _functions(
    rows: Sequence[asyncpg.Record], schedules: Sequence[ScheduleRecord]
) -> list[FunctionRecord]:
    by_function: dict[str, list[TriggerRecord]] = {}
    for schedule in schedules:
        by_function.setdefault(schedule.definition.function_id, []).append(
            TriggerRecord(schedule=schedule)
        )
    return [
        FunctionRecord(
            id=row["id"],
            app_id=row["app_id"],
            name=row["name"],
            retries=row["retries"],
            triggers=(
                *(TriggerRecord(event=event) for event in row["events"]),
                *by_function.get(row["id"], ()),
            ),
            on_failure=row["on_failure"],
            start_timeout=row["start_timeout"],
            finish_timeout=row["finish_timeout"],
            paused_at=row["paused_at"],
            flow=parse_flow(row["flow"]),
            cancel_on=parse_cancel_on(row["cancel_on"]),
        )
        for row in rows
    ]
