"""Replays: a run of the same function again, on the same events, from the start or a step.

A replay is a new run (`runs.replay_of` names the run it replays) created `queued`
with its `advance_run` job in one transaction, so it starts like any run: by a
claim, where the worker's run gates decide. It is created `gated`, since the
gateway does not know the worker's gates: a worker with none claims it in one
statement anyway, and gates that do not apply to its function pass it.

- Only a run that ended (completed, failed, cancelled) is replayed: one still in
  flight would race its replay over the same side effects (`RunInFlight`).
- `from_step` forks the run: the steps committed before that step (in commit order,
  `steps.seq`), completed or failed, are copied into the replay with their outputs
  and errors, so its host replays them from the memo and runs from that step on.
  Steps that had not ended (a sleep or a wait cut short by a cancel) run again.
- `data` replaces the triggering event's data: the replay gets a new stored event
  with the same name, the new data and a new id (inserted without a fan-out, so it
  triggers nothing else), in place of the first event. The original event is never
  changed: other runs and later replays still see what was sent.
- Several runs at once (`replay_runs`): a function's ended runs created in a time
  range, each from the start on its own events, in one transaction.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from reverb_store import jobs
from reverb_store.execution.records import RunStatus
from reverb_store.ids import AppId, FunctionId, RunId, StepId, new_id

ENDED: tuple[RunStatus, ...] = ("completed", "failed", "cancelled")


class ReplayRefused(Exception):
    """A replay that cannot be made; the message says why."""


class RunNotFound(ReplayRefused):
    pass


class RunInFlight(ReplayRefused):
    """The run has not ended."""


class UnknownStep(ReplayRefused):
    """`from_step` names no step of the run."""


class NothingToEdit(ReplayRefused):
    """`data` was given for a run without a triggering event (a cron run)."""


class FunctionUnregistered(ReplayRefused):
    """The run's function is no longer registered (a redeploy removed it)."""


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    run_id: RunId
    # Run from this step (its id with its occurrence suffix); None: from the start.
    from_step: StepId | None = None
    # New data for the triggering event (JSON text of an object); None: the same.
    data: str | None = None


_SOURCE = """
SELECT r.function_id, r.status, r.event_ids, f.app_id, f.retries
FROM reverb.runs r LEFT JOIN reverb.functions f ON f.id = r.function_id
WHERE r.id = $1
"""

_EDITED_EVENT = """
INSERT INTO reverb.events (id, name, data, ts)
SELECT $1, name, $3::jsonb, now() FROM reverb.events WHERE id = $2
RETURNING id
"""

# The replays (of the runs $1, ids $2), then their `advance_run` jobs. `$8` is the edited
# triggering event of a single replay, in place of the run's first event.
_INSERT_RUNS = f"""
WITH created AS (
    INSERT INTO reverb.runs (id, function_id, app_id, status, event_ids, max_attempts,
                             traceparent, gated, replay_of, replay_from_step)
    SELECT t.id, r.function_id, $3, 'queued',
           CASE WHEN $8::text IS NULL THEN r.event_ids ELSE ARRAY[$8] || r.event_ids[2:] END,
           $4, $5, true, r.id, $6
    FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(replay_of, id, position)
    JOIN reverb.runs r ON r.id = t.replay_of
    WHERE r.function_id = $7
    ORDER BY t.position
    RETURNING id
)
INSERT INTO {jobs.QUEUE_TABLE} (priority, entrypoint, payload, status, execute_after)
SELECT {jobs.ADVANCE_RUN.sql_columns(run_id="id", traceparent="$5::text")}, 'queued', now()
FROM created
"""

# The steps committed before the one replayed from, in their commit order (so the
# copies' `seq` keeps it).
_COPY_STEPS = """
INSERT INTO reverb.steps (run_id, id, name, kind, status, attempts, output, error,
                          child_run_id, started_at, ended_at)
SELECT $1, id, name, kind, status, attempts, output, error, child_run_id, started_at, ended_at
FROM reverb.steps
WHERE run_id = $2 AND seq < $3 AND status IN ('completed', 'failed')
ORDER BY seq
"""


async def replay_run(
    connection: asyncpg.Connection, request: ReplayRequest, traceparent: str | None
) -> RunId:
    """Create the replay of one ended run; return its id. Raises a ReplayRefused."""
    async with connection.transaction():
        source = await connection.fetchrow(_SOURCE, request.run_id)
        if source is None:
            raise RunNotFound(f"no run with id {request.run_id!r}")
        _check_replayable(request.run_id, source)
        seq = None
        if request.from_step is not None:
            seq = await _step_seq(connection, request.run_id, request.from_step)
        edited = None
        if request.data is not None:
            if not source["event_ids"]:
                raise NothingToEdit(
                    f"run {request.run_id!r} has no triggering event whose data could be"
                    " replaced (a cron run): replay it without data"
                )
            edited = await connection.fetchval(
                _EDITED_EVENT, new_id(), source["event_ids"][0], request.data
            )
        replay_id = RunId(new_id())
        await _create(
            connection,
            _Target(source["function_id"], source["app_id"], source["retries"]),
            [request.run_id],
            [replay_id],
            traceparent,
            from_step=request.from_step,
            edited_event=edited,
        )
        if seq is not None:
            await connection.execute(_COPY_STEPS, replay_id, request.run_id, seq)
        return replay_id


_SELECTED = """
SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM reverb.runs
WHERE function_id = $1 AND status = ANY($2::text[])
  AND ($3::timestamptz IS NULL OR created_at >= $3)
  AND ($4::timestamptz IS NULL OR created_at < $4)
"""


async def replay_runs(
    connection: asyncpg.Connection,
    function_id: FunctionId,
    statuses: Sequence[RunStatus],
    created_from: datetime | None,
    created_to: datetime | None,
    traceparent: str | None,
) -> list[RunId]:
    """Replay, from the start, every run of `function_id` in `statuses` (ended ones) created
    in [`created_from`, `created_to`); the replays' ids, oldest first. One transaction."""
    in_flight = sorted(set(statuses) - set(ENDED))
    if in_flight:
        raise RunInFlight(f"runs that have not ended ({', '.join(in_flight)}) cannot be replayed")
    async with connection.transaction():
        function = await connection.fetchrow(
            "SELECT app_id, retries FROM reverb.functions WHERE id = $1", function_id
        )
        if function is None:
            raise FunctionUnregistered(f"no function {function_id!r} is registered")
        replayed = await connection.fetchval(
            _SELECTED, function_id, list(statuses), created_from, created_to
        )
        replay_ids = [RunId(new_id()) for _ in replayed]
        target = _Target(function_id, function["app_id"], function["retries"])
        await _create(connection, target, replayed, replay_ids, traceparent)
        return replay_ids


def _check_replayable(run_id: RunId, source: asyncpg.Record) -> None:
    if source["status"] not in ENDED:
        raise RunInFlight(
            f"run {run_id!r} is {source['status']}: only a run that ended"
            " (completed, failed or cancelled) can be replayed; cancel it first"
        )
    if source["app_id"] is None:
        raise FunctionUnregistered(
            f"run {run_id!r}'s function {source['function_id']!r} is no longer registered"
        )


async def _step_seq(connection: asyncpg.Connection, run_id: RunId, step_id: StepId) -> int:
    seq: int | None = await connection.fetchval(
        "SELECT seq FROM reverb.steps WHERE run_id = $1 AND id = $2", run_id, step_id
    )
    if seq is not None:
        return seq
    known = await connection.fetchval(
        "SELECT string_agg(id, ', ' ORDER BY seq) FROM reverb.steps WHERE run_id = $1", run_id
    )
    listed = f"its steps are {known}" if known else "it has no steps"
    raise UnknownStep(f"run {run_id!r} has no step {step_id!r} ({listed})")


@dataclass(frozen=True, slots=True)
class _Target:
    """The function replayed, as registered now."""

    function_id: FunctionId
    app_id: AppId
    retries: int


async def _create(
    connection: asyncpg.Connection,
    target: _Target,
    replayed: Sequence[RunId],
    replay_ids: Sequence[RunId],
    traceparent: str | None,
    *,
    from_step: StepId | None = None,
    edited_event: str | None = None,
) -> None:
    """The replays and their `advance_run` jobs: one statement."""
    if replayed:
        await connection.execute(
            _INSERT_RUNS,
            list(replayed),
            list(replay_ids),
            target.app_id,
            target.retries + 1,
            traceparent,
            from_step,
            target.function_id,
            edited_event,
        )
