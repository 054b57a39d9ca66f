"""Step checkpoints: outputs (batched), failures with retries, sleeps, and reading them back."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from reverb.engine_errors import INVOKE_TIMEOUT, STEP_ERROR
from reverb_store.execution.records import (
    ErrorRecord,
    MemoEntry,
    OutputCommit,
    ResolvedWait,
    StepKind,
    StepOutput,
    StepState,
    StepStatus,
    StepTiming,
    StopReason,
)
from reverb_store.ids import RunId, StepId

_FINAL = ("completed", "failed")

_INSERT_OUTPUTS = """
INSERT INTO reverb.steps AS s
    (run_id, id, name, kind, status, attempts, output, started_at, ended_at)
SELECT t.run_id, t.id, t.name, 'run', 'completed', 1, t.output,
       coalesce(t.started_at, now()), coalesce(t.ended_at, now())
FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::timestamptz[], $6::timestamptz[])
     AS t(run_id, id, name, output, started_at, ended_at)
ON CONFLICT (run_id, id) DO UPDATE
SET status = 'completed', attempts = s.attempts + 1, output = EXCLUDED.output, error = NULL,
    wake_at = NULL, ended_at = EXCLUDED.ended_at
WHERE s.status = 'retrying'
RETURNING s.run_id, s.id
"""

# The step boundary (`cancellation`, `pausing`): the batch's runs that must stop, in the
# commit's own statement and snapshot. Each probe runs only if its table has a row at all
# (an uncorrelated EXISTS is evaluated once, as a one-time filter): `stopping_runs` is
# empty nearly always, and so is the set of paused functions, so the common case costs
# two empty scans per batch and reads no run (a probe by `= ANY` would descend an index
# once per run of the batch).
_COMMIT_OUTPUTS = f"""
WITH inserted AS ({_INSERT_OUTPUTS.strip()})
SELECT run_id, id, NULL AS stop FROM inserted
UNION ALL
SELECT run_id, NULL, 'cancelled' FROM reverb.stopping_runs
WHERE EXISTS (SELECT FROM reverb.stopping_runs) AND run_id = ANY($1::text[])
UNION ALL
SELECT r.id, NULL, 'paused' FROM reverb.runs r
WHERE EXISTS (SELECT FROM reverb.functions WHERE paused_at IS NOT NULL)
  AND r.id = ANY($1::text[])
  AND r.function_id IN (SELECT id FROM reverb.functions WHERE paused_at IS NOT NULL)
"""


_SELECT_STATES = """
SELECT s.run_id, s.id, s.status, s.output::text AS output, s.error::text AS error
FROM reverb.steps s
JOIN unnest($1::text[], $2::text[]) AS t(run_id, id) ON s.run_id = t.run_id AND s.id = t.id
"""


def _state(row: asyncpg.Record) -> StepState:
    status: StepStatus = row["status"]
    error = ErrorRecord.from_json(row["error"]) if row["error"] is not None else None
    return StepState(status, row["output"], error)


async def commit_outputs(
    connection: asyncpg.Connection, outputs: Sequence[StepOutput]
) -> list[OutputCommit]:
    """Checkpoint `step.run` outputs of any runs in one transaction; one result per input.

    A step already committed keeps its result (exactly-once outputs): the caller
    gets the committed state back with `ours=False`. A step waiting for a retry
    is completed with its attempts counted. A run that must stop at this boundary
    (cancelled while driven, or its function paused) has `stop` set on its results.
    """
    first: dict[tuple[str, str], StepOutput] = {}
    for item in outputs:
        first.setdefault((item.run_id, item.timing.step_id), item)
    unique = list(first.values())
    # One statement, so one implicit transaction and one round trip: no BEGIN and COMMIT.
    rows = await connection.fetch(
        _COMMIT_OUTPUTS,
        [item.run_id for item in unique],
        [item.timing.step_id for item in unique],
        [item.timing.name for item in unique],
        [item.output for item in unique],
        [item.timing.started_at for item in unique],
        [item.timing.ended_at for item in unique],
    )
    ours = {(row["run_id"], row["id"]) for row in rows if row["stop"] is None}
    # A cancelled run stops whether or not its function is paused.
    stops: dict[str, StopReason] = {}
    for row in rows:
        if row["stop"] is not None and stops.get(row["run_id"]) != "cancelled":
            stops[row["run_id"]] = row["stop"]
    states: dict[tuple[str, str], StepState] = {}
    if len(ours) < len(first):
        # Steps another invocation committed first: their committed state wins.
        others = [key for key in first if key not in ours]
        rows = await connection.fetch(
            _SELECT_STATES, [key[0] for key in others], [key[1] for key in others]
        )
        states = {(row["run_id"], row["id"]): _state(row) for row in rows}
    results = []
    for item in outputs:
        key = (item.run_id, item.timing.step_id)
        stop = stops.get(item.run_id)
        if key in ours and first[key] is item:
            results.append(OutputCommit(StepState("completed", item.output), True, stop))
        else:
            state = states.get(key) or StepState("completed", first[key].output)
            results.append(OutputCommit(state, False, stop))
    return results


_LOCK_STEP = """
SELECT status, attempts, output::text AS output, error::text AS error
FROM reverb.steps WHERE run_id = $1 AND id = $2 FOR UPDATE
"""

_UPSERT_FAILURE = """
INSERT INTO reverb.steps AS s
    (run_id, id, name, kind, status, attempts, error, wake_at, started_at, ended_at)
VALUES ($1, $2, $3, $10, $4, $5, $6::jsonb, now() + $7::interval,
        coalesce($8, now()), coalesce($9, now()))
ON CONFLICT (run_id, id) DO UPDATE
SET status = EXCLUDED.status, attempts = EXCLUDED.attempts, error = EXCLUDED.error,
    wake_at = EXCLUDED.wake_at, ended_at = EXCLUDED.ended_at
WHERE s.status NOT IN ('completed', 'failed')
RETURNING s.status
"""


async def record_failure(
    connection: asyncpg.Connection,
    run_id: RunId,
    timing: StepTiming,
    error: ErrorRecord,
    *,
    retriable: bool,
    max_attempts: int,
    retry_delay: Callable[[int], timedelta],
    kind: StepKind = "run",
) -> StepState:
    """Record a failed attempt of a step: `retrying` while attempts remain, else `failed`.

    `retry_delay(n)` gives the wait before the next attempt after the (n+1)-th
    failure (n is 0-based, as backoffs are). A step that is already final keeps
    its committed state, which is returned.
    """
    async with connection.transaction():
        existing = await connection.fetchrow(_LOCK_STEP, run_id, timing.step_id)
        if existing is not None and existing["status"] in _FINAL:
            return _state(existing)
        attempts = (existing["attempts"] if existing is not None else 0) + 1
        retrying = retriable and attempts < max_attempts
        status: StepStatus = "retrying" if retrying else "failed"
        delay = retry_delay(attempts - 1) if retrying else None
        updated = await connection.fetchrow(
            _UPSERT_FAILURE,
            run_id,
            timing.step_id,
            timing.name,
            status,
            attempts,
            error.to_json(),
            delay,
            timing.started_at,
            timing.ended_at,
            kind,
        )
        if updated is None:
            return await step_state(connection, run_id, timing.step_id)
        return StepState(status, None, error)


_INSERT_SLEEP = """
INSERT INTO reverb.steps (run_id, id, name, kind, status, wake_at, started_at)
VALUES ($1, $2, $3, 'sleep', 'sleeping', $4, coalesce($5, now()))
ON CONFLICT (run_id, id) DO NOTHING
RETURNING id
"""


async def record_sleep(
    connection: asyncpg.Connection, run_id: RunId, timing: StepTiming, wake_at: datetime
) -> StepState:
    """Record a sleep until `wake_at`; a sleep already recorded keeps its original wake-up."""
    inserted = await connection.fetchval(
        _INSERT_SLEEP, run_id, timing.step_id, timing.name, wake_at, timing.started_at
    )
    if inserted is None:
        return await step_state(connection, run_id, timing.step_id)
    return StepState("sleeping")


async def step_state(connection: asyncpg.Connection, run_id: RunId, step_id: StepId) -> StepState:
    row = await connection.fetchrow(
        "SELECT status, output::text AS output, error::text AS error"
        " FROM reverb.steps WHERE run_id = $1 AND id = $2",
        run_id,
        step_id,
    )
    if row is None:
        raise LookupError(f"step {step_id!r} of run {run_id!r} is not stored")
    return _state(row)


# Steps whose time came and that complete with `null`: sleeps, and waits for events
# past their timeout (whose rows in reverb.waits go with them).
_SLEPT = """
slept AS (
    UPDATE reverb.steps
    SET status = 'completed', output = 'null'::jsonb, wake_at = NULL, ended_at = now()
    WHERE run_id = $1 AND wake_at <= now()
      AND (status = 'sleeping' OR (status = 'waiting' AND kind = 'wait_for_event'))
    RETURNING id
), unwaited AS (
    DELETE FROM reverb.waits WHERE run_id = $1 AND step_id IN (SELECT id FROM slept)
)"""

# One statement (one round trip): sleeps that are due and waits past their timeout
# complete, invokes past their timeout fail. They touch disjoint rows.
_RESOLVE_DUE = f"""
WITH {_SLEPT}
UPDATE reverb.steps SET status = 'failed', error = $2::jsonb, wake_at = NULL, ended_at = now()
WHERE run_id = $1 AND status = 'waiting' AND kind = 'invoke' AND wake_at <= now()
"""

_INVOKE_TIMEOUT = ErrorRecord(INVOKE_TIMEOUT.name, "the invoked function did not finish in time")
_INVOKE_TIMEOUT_JSON = _INVOKE_TIMEOUT.to_json()


async def resolve_due(connection: asyncpg.Connection, run_id: RunId) -> None:
    """Finish the waits whose time came: sleeps and waits for events complete, invokes past
    their timeout fail."""
    await connection.execute(_RESOLVE_DUE, run_id, _INVOKE_TIMEOUT_JSON)


_STEP_FAILED = ErrorRecord(STEP_ERROR.name, "the step failed")

# A retrying step whose time has come is left out: the host runs it again.
_MEMO = """
SELECT id, status, output::text AS output, error::text AS error
FROM reverb.steps
WHERE run_id = $1
  AND (status IN ('completed', 'failed', 'sleeping', 'waiting')
       OR (status = 'retrying' AND wake_at > now()))
ORDER BY seq
"""


async def load_memo(connection: asyncpg.Connection, run_id: RunId) -> tuple[MemoEntry, ...]:
    """The run's steps in commit order: final ones with their result, waiting ones pending."""
    rows = await connection.fetch(_MEMO, run_id)
    return tuple(_memo_entry(row["id"], row["status"], row["output"], row["error"]) for row in rows)


def _memo_entry(
    step_id: StepId, status: StepStatus, output: str | None, error: str | None
) -> MemoEntry:
    if status == "completed":
        return MemoEntry(step_id, output, None)
    if status == "failed":
        return MemoEntry(step_id, None, ErrorRecord.from_json(error) if error else _STEP_FAILED)
    return MemoEntry(step_id, None, None, pending=True)


# resolve_due, load_memo and retrying_attempts in one statement (one round trip). The
# SELECT sees the steps as they were before the statement's own updates, so the
# steps those updates resolve are shown resolved by the CASEs.
_RESOLVE_AND_LOAD = f"""
WITH {_SLEPT}, timed_out AS (
    UPDATE reverb.steps SET status = 'failed', error = $2::jsonb, wake_at = NULL, ended_at = now()
    WHERE run_id = $1 AND status = 'waiting' AND kind = 'invoke' AND wake_at <= now()
    RETURNING id
)
SELECT s.id, s.attempts, s.status = 'retrying' AND s.wake_at > now() AS retry_later,
       s.name, s.kind, s.started_at,
       s.id IN (SELECT id FROM slept) OR s.id IN (SELECT id FROM timed_out) AS resolved,
       CASE WHEN s.id IN (SELECT id FROM slept) THEN 'completed'
            WHEN s.id IN (SELECT id FROM timed_out) THEN 'failed'
            ELSE s.status END AS status,
       CASE WHEN s.id IN (SELECT id FROM slept) THEN 'null' ELSE s.output::text END AS output,
       CASE WHEN s.id IN (SELECT id FROM timed_out) THEN $2::jsonb::text ELSE s.error::text END
           AS error
FROM reverb.steps s
WHERE s.run_id = $1
ORDER BY s.seq
"""

_IN_MEMO = frozenset(("completed", "failed", "sleeping", "waiting"))


@dataclass(frozen=True, slots=True)
class LoadedSteps:
    """What a claim reads of a run's steps (`resolve_and_load`)."""

    memo: tuple[MemoEntry, ...]
    # The highest failure count among steps waiting for a retry, if any.
    retrying_attempts: int | None
    # The failures so far of each step whose retry is due (the invocation runs it again).
    step_attempts: dict[StepId, int]
    # The waits this claim resolved (sleeps ended, invokes timed out), for their spans.
    resolved: tuple[ResolvedWait, ...]


async def resolve_and_load(connection: asyncpg.Connection, run_id: RunId) -> LoadedSteps:
    """`resolve_due`, then `load_memo` and `retrying_attempts`, in one round trip."""
    rows = await connection.fetch(_RESOLVE_AND_LOAD, run_id, _INVOKE_TIMEOUT_JSON)
    memo = tuple(
        _memo_entry(row["id"], row["status"], row["output"], row["error"])
        for row in rows
        if row["status"] in _IN_MEMO or row["retry_later"]
    )
    retrying = [row["attempts"] for row in rows if row["status"] == "retrying"]
    return LoadedSteps(
        memo,
        max(retrying) if retrying else None,
        {
            row["id"]: row["attempts"]
            for row in rows
            if row["status"] == "retrying" and not row["retry_later"]
        },
        tuple(
            ResolvedWait(
                row["id"],
                row["name"],
                row["kind"],
                row["started_at"],
                ErrorRecord.from_json(row["error"]) if row["status"] == "failed" else None,
            )
            for row in rows
            if row["resolved"]
        ),
    )


async def retrying_attempts(connection: asyncpg.Connection, run_id: RunId) -> int | None:
    """The highest failure count among the run's steps waiting for a retry, if any."""
    value: int | None = await connection.fetchval(
        "SELECT max(attempts) FROM reverb.steps WHERE run_id = $1 AND status = 'retrying'", run_id
    )
    return value


_STOP_REASON = """
SELECT CASE WHEN EXISTS (SELECT FROM reverb.stopping_runs s WHERE s.run_id = r.id)
            THEN 'cancelled'
            WHEN EXISTS (SELECT FROM reverb.functions f
                         WHERE f.id = r.function_id AND f.paused_at IS NOT NULL) THEN 'paused'
       END
FROM reverb.runs r WHERE r.id = $1
"""


async def stop_reason(connection: asyncpg.Connection, run_id: RunId) -> StopReason | None:
    """Whether the run must stop at this step boundary (the check `commit_outputs` makes
    for its batch, for a step committed on its own)."""
    reason: StopReason | None = await connection.fetchval(_STOP_REASON, run_id)
    return reason
