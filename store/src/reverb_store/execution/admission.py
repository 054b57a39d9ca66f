"""Admission: the one way a run starts, resumes or retries, and where run gates decide.

Every run begins executing by a claim (`claim_run`): a new run's first
invocation, a resume from sleeping or waiting, a retry queued after a failure,
a takeover of a crashed job's run. (A run the fan-out creates claimed for its
own worker is the one exception, and it is taken only for functions no gate
applies to: see below.) Run gates (concurrency, throttling, pause, ...) decide
there, in the claim's transaction.

A gate (`Gate`) is asked three things:
- `applies(function)`, in memory, when a run is created (fan-out, `step.invoke`):
  whether the function's runs must pass it. The answer is stored with the run
  (`runs.gated`), so a claim knows without a query; only the gates that apply
  to a run's function decide on it and are told about it.
- `decide(connection, candidate)`, inside the claim's transaction with the run's
  row locked: `Admit`, `Hold(reason, until)` or `Skip(reason)`. The first gate
  that does not admit decides.
  - Hold: the run stays (or becomes) `queued` and its job ends. It is woken by
    the transition that frees capacity (below), or, with `until`, by a delayed
    job at that time. Nothing polls a held run.
  - Skip: the run ends `cancelled` (error RunSkipped, the reason as message);
    a parent waiting on it sees the error.
- `freed(connection, run)`, inside the transaction of every transition that
  stops a gated run executing (complete, fail, retry, suspend, release): the
  gate wakes what the freed capacity admits, with `wake` (an `advance_run` for
  a held run, committed with the transition).

The no-gate fast path costs nothing: a run no gate applies to is claimed by the
same one statement as before (it only checks `NOT gated`), the fan-out stays
one statement, and transitions read `gated` from the row they update anyway.
A worker with no gate registered claims every run that way. Every worker of a
deployment must register the same gates.
"""

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg

from reverb.engine_errors import RUN_SKIPPED
from reverb_store import jobs
from reverb_store.execution.gates import NO_GATES, Candidate, Gates, Hold, Refusal
from reverb_store.execution.parents import resume_parent
from reverb_store.execution.records import ClaimedRun, ErrorRecord, EventRecord
from reverb_store.execution.steps import resolve_and_load
from reverb_store.flow.options import parse
from reverb_store.ids import JobId, RunId

_CLAIMABLE = "(status IN ('queued', 'sleeping', 'waiting') OR (status = 'running' AND job_id = $2))"

# The events are looked up by `= ANY(event_ids)`: an index scan whatever the table's
# size (joining an unnest, the planner chose a scan of every event while the table
# was small, which made claims slower as events accumulated). `paused` is one
# primary-key probe of `functions`: NULL once a redeploy removed the run's function (not
# registered), true while the function is paused (`pausing.park_run`).
# `{gate}` is empty, or
# `AND NOT gated` when the worker has gates: a gated run is then left to them.
_CLAIM = f"""
WITH claimed AS (
    UPDATE reverb.runs
    SET status = 'running', job_id = $2, invocations = invocations + 1,
        started_at = coalesce(started_at, now()), updated_at = now(){{admitted}}
    WHERE id = $1 AND {_CLAIMABLE} {{gate}}
    RETURNING function_id, app_id, attempt, max_attempts, invocations, event_ids, traceparent,
              gated, replay_from_step IS NOT NULL AS forked
)
SELECT c.function_id, c.app_id, c.attempt, c.max_attempts, c.invocations, c.traceparent, c.gated,
       c.forked,
       e.id AS event_id, e.name, e.data::text AS data, e.ts,
       (SELECT f.paused_at IS NOT NULL FROM reverb.functions f WHERE f.id = c.function_id)
           AS paused
FROM claimed c
LEFT JOIN reverb.events e ON e.id = ANY(c.event_ids)
ORDER BY array_position(c.event_ids, e.id)
"""
_CLAIM_ANY = _CLAIM.format(gate="", admitted="")
_CLAIM_UNGATED = _CLAIM.format(gate="AND NOT gated", admitted="")
# A run the gates admitted no longer waits on anything.
_CLAIM_ADMITTED = _CLAIM.format(gate="", admitted=", waiting_kind = NULL, waiting_until = NULL")

# Many runs claimed in one statement (`claim_runs`), each for its own job: the same
# claim as `_CLAIM`, rows keyed by run id. Lock order (docs/architecture.md, "Lock
# order"): the runs are locked by id in a MATERIALIZED subselect first, and the UPDATE
# touches only rows it holds.
_CLAIM_MANY = """
WITH runs_locked AS MATERIALIZED (
    SELECT id FROM reverb.runs WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE
), claimed AS (
    UPDATE reverb.runs r
    SET status = 'running', job_id = t.job_id, invocations = r.invocations + 1,
        started_at = coalesce(r.started_at, now()), updated_at = now()
    FROM unnest($1::text[], $2::bigint[]) AS t(run_id, job_id)
    WHERE r.id = t.run_id AND r.id IN (SELECT id FROM runs_locked)
      AND (r.status IN ('queued', 'sleeping', 'waiting')
           OR (r.status = 'running' AND r.job_id = t.job_id)) {gate}
    RETURNING r.id, t.job_id, r.function_id, r.app_id, r.attempt, r.max_attempts,
              r.invocations, r.event_ids, r.traceparent, r.gated,
              r.replay_from_step IS NOT NULL AS forked
)
SELECT c.id AS run_id, c.job_id, c.function_id, c.app_id, c.attempt, c.max_attempts, c.invocations,
       c.traceparent, c.gated, c.forked,
       e.id AS event_id, e.name, e.data::text AS data, e.ts,
       (SELECT f.paused_at IS NOT NULL FROM reverb.functions f WHERE f.id = c.function_id)
           AS paused
FROM claimed c
LEFT JOIN reverb.events e ON e.id = ANY(c.event_ids)
ORDER BY c.id, array_position(c.event_ids, e.id)
"""
_CLAIM_MANY_ANY = _CLAIM_MANY.format(gate="")
_CLAIM_MANY_UNGATED = _CLAIM_MANY.format(gate="AND NOT r.gated")

# A gated run this job may claim, locked while the gates decide, with its function's
# flow-control options and what it waited on, if it was held.
_LOCK_CANDIDATE = f"""
SELECT r.function_id, r.app_id, r.status, r.attempt, r.invocations, r.traceparent,
       r.waiting_kind, (SELECT f.flow::text FROM reverb.functions f WHERE f.id = r.function_id)
       AS flow
FROM reverb.runs r
WHERE r.id = $1 AND r.gated AND {_CLAIMABLE}
FOR UPDATE
"""


async def claim_run(
    connection: asyncpg.Connection,
    run_id: RunId,
    job_id: JobId,
    gates: Gates = NO_GATES,
    wakeups: jobs.Wakeups | None = None,
    *,
    gated: bool = False,
) -> ClaimedRun | Refusal | None:
    """Take the run for this job and read what its invocation starts from.

    With `gates`, `wakeups` is required: it hears of the delayed job that wakes a run
    held until a time (ValueError without it, on every gated claim, never silently).
    `gated`: the run is known to be gated (a held run a free handed capacity to), so the
    ungated claim statement is not tried first.

    None if the run is not claimable (another job drives it, or it ended); a
    Refusal if a gate held or skipped it (this job's row is deleted: it ends).
    Then sleeps that are due complete and invokes past their timeout fail, so the
    memo includes them. No transaction spans these statements: should the worker
    die after the claim, the job that takes the run over (the same job) claims it
    again and resolves what is due then.
    """
    if not gates:
        rows = await connection.fetch(_CLAIM_ANY, run_id, job_id)
    else:
        if wakeups is None:
            raise ValueError("a claim with run gates needs the job's wakeups")
        rows = [] if gated else await connection.fetch(_CLAIM_UNGATED, run_id, job_id)
        if not rows:
            admitted = await _admit(connection, run_id, job_id, gates, wakeups)
            if not isinstance(admitted, list):
                return admitted
            rows = admitted
    if not rows:
        return None
    claimed = _claimed(run_id, rows)
    return await with_memo(connection, claimed) if needs_memo(claimed) else claimed


async def claim_runs(
    connection: asyncpg.Connection,
    requests: Sequence[tuple[RunId, JobId]],
    *,
    ungated: bool,
) -> list[ClaimedRun | None]:
    """Claim many runs, each for its own job, in one statement: the claim of `claim_run`
    without gates (`ungated`: of the runs no gate applies to only, as a worker with gates
    claims first). The claimed runs, aligned with `requests`; None for a run not claimed
    here (not claimable, or, `ungated`, gated: the gates' path decides on it).

    The memo of a run claimed to resume (`needs_memo`) is not loaded yet: `with_memo`
    does it, on any connection, before its invocation starts.
    """
    if not requests:
        return []
    if len(requests) == 1:
        # One run: the single claim, which needs no locking subselect.
        run_id, job_id = requests[0]
        single = await connection.fetch(_CLAIM_UNGATED if ungated else _CLAIM_ANY, run_id, job_id)
        return [_claimed(run_id, single) if single else None]
    statement = _CLAIM_MANY_UNGATED if ungated else _CLAIM_MANY_ANY
    rows = await connection.fetch(
        statement, [run_id for run_id, _ in requests], [job_id for _, job_id in requests]
    )
    # Keyed by run and job: two jobs asking for one run at once get one row, for the job
    # the UPDATE chose; the other job is not told it claimed it.
    by_claim: dict[tuple[str, int], list[asyncpg.Record]] = {}
    for row in rows:
        by_claim.setdefault((row["run_id"], row["job_id"]), []).append(row)
    claimed: list[ClaimedRun | None] = []
    for run_id, job_id in requests:
        found = by_claim.pop((run_id, job_id), None)
        claimed.append(_claimed(run_id, found) if found else None)
    return claimed


async def with_memo(connection: asyncpg.Connection, claimed: ClaimedRun) -> ClaimedRun:
    """The claimed run with what its invocation resumes from: sleeps that are due
    complete, invokes past their timeout fail, then the memo is read."""
    loaded = await resolve_and_load(connection, claimed.run_id)
    return replace(
        claimed,
        memo=loaded.memo,
        retrying_step_attempts=loaded.retrying_attempts,
        step_attempts=loaded.step_attempts,
        resolved_waits=loaded.resolved,
    )


def needs_memo(claimed: ClaimedRun) -> bool:
    """Whether a claimed run resumes, so `with_memo` must run before its invocation."""
    # A run's first invocation has no steps yet (an invocation the host never got is
    # given back by `release_run`), but for a replay forked from a step; a run whose
    # function is gone or paused is not invoked.
    return (claimed.invocations > 1 or claimed.forked) and claimed.registered and not claimed.paused


def _claimed(run_id: RunId, rows: Sequence[asyncpg.Record]) -> ClaimedRun:
    """A claim's rows (one per event, in order) as the claimed run, its memo not loaded."""
    first = rows[0]
    return ClaimedRun(
        run_id=run_id,
        function_id=first["function_id"],
        app_id=first["app_id"],
        attempt=first["attempt"],
        max_attempts=first["max_attempts"],
        invocations=first["invocations"],
        traceparent=first["traceparent"],
        events=tuple(
            EventRecord(row["event_id"], row["name"], row["data"], row["ts"])
            for row in rows
            if row["event_id"] is not None
        ),
        memo=(),
        retrying_step_attempts=None,
        # NULL when the function is gone; true while it is paused (the driver parks the run).
        registered=first["paused"] is not None,
        paused=first["paused"] is True,
        gated=first["gated"],
        forked=first["forked"],
    )


async def _admit(
    connection: asyncpg.Connection,
    run_id: RunId,
    job_id: JobId,
    gates: Gates,
    wakeups: jobs.Wakeups,
) -> list[asyncpg.Record] | Refusal | None:
    """The gated path: lock the run, let the gates decide, claim it or carry out the refusal."""
    async with connection.transaction():
        row = await connection.fetchrow(_LOCK_CANDIDATE, run_id, job_id)
        if row is None:
            return None
        candidate = Candidate(
            run_id,
            row["function_id"],
            row["app_id"],
            row["status"],
            row["attempt"],
            row["invocations"],
            parse(row["flow"]),
        )
        refusal = await gates.decide(connection, candidate)
        if refusal is None:
            return await connection.fetch(_CLAIM_ADMITTED, run_id, job_id)
        await _refuse(connection, run_id, job_id, row["traceparent"], refusal, wakeups)
        return refusal


async def _refuse(
    connection: asyncpg.Connection,
    run_id: RunId,
    job_id: JobId,
    traceparent: str | None,
    refusal: Refusal,
    wakeups: jobs.Wakeups,
) -> None:
    """Carry out a hold or a skip (in the claim's transaction): the job ends either way."""
    verdict = refusal.verdict
    if isinstance(verdict, Hold):
        await connection.execute(
            f"WITH ended AS (DELETE FROM {jobs.QUEUE_TABLE} WHERE id = $2)"
            " UPDATE reverb.runs SET status = 'queued', job_id = NULL, updated_at = now(),"
            " waiting_kind = $3, waiting_until = $4 WHERE id = $1",
            run_id,
            job_id,
            verdict.reason,
            verdict.until,
        )
        if verdict.until is not None:
            delay = verdict.until - datetime.now(UTC)
            await jobs.schedule(
                connection, [jobs.AdvanceRun(run_id, traceparent)], [delay], wakeups
            )
        return
    error = ErrorRecord(RUN_SKIPPED.name, f"skipped by the {refusal.gate} gate: {verdict.reason}")
    row = await connection.fetchrow(
        f"WITH ended AS (DELETE FROM {jobs.QUEUE_TABLE} WHERE id = $2)"
        " UPDATE reverb.runs SET status = 'cancelled', error = $3::jsonb, job_id = NULL,"
        " ended_at = now(), updated_at = now() WHERE id = $1"
        " RETURNING parent_run_id, parent_step_id",
        run_id,
        job_id,
        error.to_json(),
    )
    if row is not None and row["parent_run_id"] is not None:
        await resume_parent(connection, row["parent_run_id"], row["parent_step_id"], error=error)


async def prepare_claim(connection: asyncpg.Connection) -> None:
    """Run the claim's statements once for no run (see `prepare_fan_out`)."""
    await connection.fetch(_CLAIM_ANY, "", 0)
    await connection.fetch(_CLAIM_UNGATED, "", 0)
    await connection.fetch(_CLAIM_ADMITTED, "", 0)
    await connection.fetch(_CLAIM_MANY_ANY, [], [])
    await connection.fetch(_CLAIM_MANY_UNGATED, [], [])
