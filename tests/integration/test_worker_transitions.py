"""The run transitions the worker commits, against real PostgreSQL: claims, due waits,
suspensions, child runs waking their parent, and group-committed step checkpoints."""

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson

from reverb_queue_worker.runs.checkpoints import CheckpointWriter
from reverb_store import execution
from reverb_store.control import AppDefinition, FunctionDefinition, HostLease, register_app
from reverb_store.execution import ClaimedRun, ErrorRecord, StepOutput, StepTiming, steps
from reverb_store.ids import JobId, RunId, StepId, new_id
from tests.integration.wakeups import Heard

HOUR = timedelta(hours=1)


async def new_run(
    connection: asyncpg.Connection, status: str = "queued", parent: str | None = None
) -> RunId:
    run_id = RunId(new_id())
    # The run's function is registered (a claim fails runs of removed functions).
    app = AppDefinition(
        id="a", functions=(FunctionDefinition(id="f", name="f", retries=2, triggers=()),)
    )
    await register_app(connection, app, HostLease("127.0.0.1:1", timedelta(seconds=30)))
    # A run past `queued` has been invoked (its first invocation is what wrote steps).
    await connection.execute(
        "INSERT INTO reverb.runs (id, function_id, app_id, status, max_attempts,"
        " parent_run_id, parent_step_id, invocations) VALUES ($1, 'f', 'a', $2, 3, $3, $4, $5)",
        run_id,
        status,
        parent,
        "call" if parent else None,
        0 if status == "queued" else 1,
    )
    return run_id


async def add_step(
    connection: asyncpg.Connection,
    run_id: str,
    step_id: str,
    *,
    kind: str = "run",
    status: str = "completed",
    wake_in: timedelta | None = None,
    output: str | None = None,
) -> None:
    wake_at = datetime.now(UTC) + wake_in if wake_in is not None else None
    await connection.execute(
        "INSERT INTO reverb.steps (run_id, id, name, kind, status, wake_at, output)"
        " VALUES ($1, $2, $2, $3, $4, $5, $6::jsonb)",
        run_id,
        step_id,
        kind,
        status,
        wake_at,
        output,
    )


async def advance_jobs(connection: asyncpg.Connection) -> list[asyncpg.Record]:
    """The run's jobs: `advance_run` when due at once, `wake_run` when delayed."""
    return await connection.fetch(
        "SELECT entrypoint, payload, execute_after - now() AS delay FROM pgqueuer"
        " WHERE entrypoint IN ('advance_run', 'wake_run') ORDER BY id"
    )


def timing(step_id: str) -> StepTiming:
    return StepTiming(StepId(step_id), step_id, None, None)


async def status_of(connection: asyncpg.Connection, run_id: str) -> str:
    status: str = await connection.fetchval("SELECT status FROM reverb.runs WHERE id = $1", run_id)
    return status


async def test_a_run_is_claimed_by_one_job_and_taken_over_only_by_the_same_job(
    connection: asyncpg.Connection,
) -> None:
    run_id = await new_run(connection)

    first = await execution.claim_run(connection, run_id, job_id=JobId(7))
    assert isinstance(first, ClaimedRun) and first.invocations == 1
    assert await execution.claim_run(connection, run_id, job_id=JobId(8)) is None
    again = await execution.claim_run(connection, run_id, job_id=JobId(7))
    assert isinstance(again, ClaimedRun) and again.invocations == 2

    assert await execution.complete_run(connection, run_id, JobId(8), '"no"') is False
    assert await execution.complete_run(connection, run_id, JobId(7), '"yes"') is True
    assert await execution.claim_run(connection, run_id, job_id=JobId(7)) is None


async def test_claims_made_at_one_moment_share_one_statement(
    connection: asyncpg.Connection, writer: CheckpointWriter
) -> None:
    """The claims batcher: each job gets its own run (or None when it cannot claim it),
    and the claims queued together take one statement."""
    runs = [await new_run(connection) for _ in range(20)]
    taken = await new_run(connection)
    assert await execution.claim_run(connection, taken, job_id=JobId(99)) is not None
    claims = await asyncio.gather(
        *(writer.claim(run_id, JobId(number)) for number, run_id in enumerate(runs, 1)),
        writer.claim(taken, JobId(100)),
    )

    assert [claim and (claim.run_id, claim.invocations) for claim in claims[:-1]] == [
        (run_id, 1) for run_id in runs
    ]
    assert claims[-1] is None  # another job drives it
    running = await connection.fetch(
        "SELECT id, job_id FROM reverb.runs WHERE status = 'running' AND id <> $1 ORDER BY id",
        taken,
    )
    assert [tuple(row) for row in running] == sorted(
        (run_id, number) for number, run_id in enumerate(runs, 1)
    )
    # All 21 were queued before the batcher ran: one statement (two if it woke early).
    assert writer.claim_transactions <= 2


async def test_a_batched_claim_leaves_gated_runs_to_the_gates_and_loads_a_resumed_memo(
    connection: asyncpg.Connection,
) -> None:
    """`claim_runs(ungated=True)` claims no gated run; a resumed run it claims has no memo
    until `with_memo`, which resolves what became due first."""
    fresh = await new_run(connection)
    gated = await new_run(connection)
    resumed = await new_run(connection, "sleeping")
    await connection.execute("UPDATE reverb.runs SET gated = true WHERE id = $1", gated)
    await add_step(connection, resumed, "first", output='"one"')
    await add_step(connection, resumed, "nap", kind="sleep", status="sleeping", wake_in=-HOUR)

    claimed = await execution.claim_runs(
        connection,
        [(fresh, JobId(1)), (gated, JobId(2)), (resumed, JobId(3))],
        ungated=True,
    )

    first, not_gated, later = claimed
    assert first is not None and first.run_id == fresh and not execution.needs_memo(first)
    assert not_gated is None and await status_of(connection, gated) == "queued"
    assert later is not None and later.invocations == 2 and execution.needs_memo(later)
    assert later.memo == ()
    loaded = await execution.with_memo(connection, later)
    assert [(m.step_id, m.output) for m in loaded.memo] == [("first", '"one"'), ("nap", "null")]
    # Two jobs asking for one run in one batch: exactly one of them claims it.
    twice = await new_run(connection)
    both = await execution.claim_runs(
        connection, [(twice, JobId(4)), (twice, JobId(5))], ungated=False
    )
    [winner] = [claim for claim in both if claim is not None]
    holder = await connection.fetchval("SELECT job_id FROM reverb.runs WHERE id = $1", twice)
    assert holder == (4 if both[0] is not None else 5) and winner.invocations == 1
    # Without `ungated`, the gated run is claimed like any other.
    [any_run] = await execution.claim_runs(connection, [(gated, JobId(2))], ungated=False)
    assert any_run is not None and any_run.gated


async def test_a_claim_resolves_what_became_due_and_memoizes_in_commit_order(
    connection: asyncpg.Connection,
) -> None:
    run_id = await new_run(connection, "sleeping")
    await add_step(connection, run_id, "first", output='"one"')
    await add_step(
        connection, run_id, "nap", kind="sleep", status="sleeping", wake_in=-timedelta(1)
    )
    await add_step(
        connection, run_id, "later", kind="sleep", status="sleeping", wake_in=timedelta(hours=1)
    )
    await add_step(
        connection, run_id, "call", kind="invoke", status="waiting", wake_in=-timedelta(seconds=1)
    )

    claim = await execution.claim_run(connection, run_id, job_id=JobId(1))

    assert isinstance(claim, ClaimedRun)
    assert [(m.step_id, m.output, m.error and m.error.type, m.pending) for m in claim.memo] == [
        ("first", '"one"', None, False),
        ("nap", "null", None, False),
        ("later", None, None, True),
        ("call", None, "InvokeTimeout", False),
    ]


async def test_a_resume_that_retries_a_step_starts_with_the_step_attempt(
    connection: asyncpg.Connection,
) -> None:
    run_id = await new_run(connection, "sleeping")
    await connection.execute(
        "INSERT INTO reverb.steps (run_id, id, name, kind, status, attempts, wake_at)"
        " VALUES ($1, 'flaky', 'flaky', 'run', 'retrying', 2, now())",
        run_id,
    )
    claim = await execution.claim_run(connection, run_id, job_id=JobId(1))
    assert isinstance(claim, ClaimedRun) and claim.start_attempt == 2


async def test_a_suspended_run_sleeps_until_its_earliest_wake_up(
    connection: asyncpg.Connection,
) -> None:
    run_id = await new_run(connection)
    await execution.claim_run(connection, run_id, job_id=JobId(1))
    await add_step(
        connection, run_id, "nap", kind="sleep", status="sleeping", wake_in=timedelta(hours=1)
    )
    await add_step(
        connection, run_id, "call", kind="invoke", status="waiting", wake_in=timedelta(days=1)
    )

    heard = Heard()
    assert await execution.suspend_run(connection, run_id, JobId(1), [], heard) == "sleeping"

    assert await status_of(connection, run_id) == "sleeping"
    # Its wake-up is a row of run_wakeups, not a delayed job in pgqueuer's queue (whose
    # dequeue would read it while nothing is due).
    assert await advance_jobs(connection) == []
    wakeup = await connection.fetchrow(
        "SELECT due_at - now() AS delay FROM reverb.run_wakeups WHERE run_id = $1", run_id
    )
    assert wakeup is not None
    assert timedelta(minutes=59) < wakeup["delay"] <= timedelta(hours=1)
    # The caller hears of the wake-up it must arm a timer for.
    (delay,) = heard.delays
    assert timedelta(minutes=59) < delay <= timedelta(hours=1)


async def test_a_run_waiting_only_on_a_child_is_waiting(connection: asyncpg.Connection) -> None:
    run_id = await new_run(connection)
    await execution.claim_run(connection, run_id, job_id=JobId(1))
    await add_step(
        connection, run_id, "call", kind="invoke", status="waiting", wake_in=timedelta(days=1)
    )

    assert await execution.suspend_run(connection, run_id, JobId(1), [], Heard()) == "waiting"
    assert await status_of(connection, run_id) == "waiting"


async def test_a_child_that_ends_before_its_parent_suspends_resumes_it_at_once(
    connection: asyncpg.Connection,
) -> None:
    parent = await new_run(connection)
    await execution.claim_run(connection, parent, job_id=JobId(1))
    await add_step(
        connection, parent, "call", kind="invoke", status="waiting", wake_in=timedelta(days=1)
    )
    child = await new_run(connection, parent=parent)
    await execution.claim_run(connection, child, job_id=JobId(2))

    # The child completes while the parent's invocation is still running...
    assert await execution.complete_run(connection, child, JobId(2), '{"done": true}')
    assert await advance_jobs(connection) == []
    # ...so the parent's suspension sees the resolved step and queues it right away.
    heard = Heard()
    assert await execution.suspend_run(connection, parent, JobId(1), [], heard) == "resumed"
    assert heard.delays == []  # due at once: the queue notifies it

    assert await status_of(connection, parent) == "queued"
    (job,) = await advance_jobs(connection)
    assert (job["entrypoint"], job["delay"] <= timedelta(0)) == ("advance_run", True)
    claim = await execution.claim_run(connection, parent, job_id=JobId(3))
    assert isinstance(claim, ClaimedRun)
    assert [(m.step_id, m.output) for m in claim.memo] == [("call", '{"done": true}')]


async def test_a_child_failure_fails_the_waiting_parent_step_and_wakes_the_parent(
    connection: asyncpg.Connection,
) -> None:
    parent = await new_run(connection)
    await execution.claim_run(connection, parent, job_id=JobId(1))
    await add_step(
        connection, parent, "call", kind="invoke", status="waiting", wake_in=timedelta(days=1)
    )
    assert await execution.suspend_run(connection, parent, JobId(1), [], Heard()) == "waiting"
    child = await new_run(connection, parent=parent)
    await execution.claim_run(connection, child, job_id=JobId(2))

    assert await execution.fail_run(
        connection, child, JobId(2), ErrorRecord("ValueError", "bad input")
    )

    assert await status_of(connection, parent) == "queued"
    # Resumed now; the timeout's wake-up stays in run_wakeups (a hint, a no-op when due).
    assert [job["entrypoint"] for job in await advance_jobs(connection)] == ["advance_run"]
    assert await connection.fetchval("SELECT count(*) FROM reverb.run_wakeups") == 1
    step = await execution.step_state(connection, parent, StepId("call"))
    assert (step.status, step.error) == ("failed", ErrorRecord("ValueError", "bad input"))


async def test_a_failing_step_retries_while_attempts_remain_then_fails(
    connection: asyncpg.Connection,
) -> None:
    run_id = await new_run(connection)
    error = ErrorRecord("ConnectionError", "down")
    delays: list[int] = []

    def delay(attempt: int) -> timedelta:
        delays.append(attempt)
        return timedelta(seconds=30)

    states = [
        await execution.record_failure(
            connection,
            run_id,
            timing("call"),
            error,
            retriable=True,
            max_attempts=3,
            retry_delay=delay,
        )
        for _ in range(3)
    ]

    assert [state.status for state in states] == ["retrying", "retrying", "failed"]
    assert delays == [0, 1]
    row = await connection.fetchrow("SELECT attempts, error FROM reverb.steps WHERE id = 'call'")
    assert row is not None and row["attempts"] == 3
    assert orjson.loads(row["error"])["type"] == "ConnectionError"


async def test_concurrent_checkpoints_share_transactions(
    connection: asyncpg.Connection, writer: CheckpointWriter
) -> None:
    runs = [await new_run(connection) for _ in range(20)]
    outputs = [
        StepOutput(run_id, timing(f"step-{n}"), orjson.dumps([run_id, n]).decode())
        for run_id in runs
        for n in range(5)
    ]

    commits = await asyncio.gather(*(writer.commit(output) for output in outputs))

    assert all(commit.ours and commit.state.status == "completed" for commit in commits)
    assert await connection.fetchval("SELECT count(*) FROM reverb.steps") == 100
    assert writer.transactions < 100


async def test_the_first_committed_output_wins(
    connection: asyncpg.Connection, writer: CheckpointWriter
) -> None:
    run_id = await new_run(connection)
    first = await writer.commit(StepOutput(run_id, timing("pick"), '"first"'))
    again, same_batch = await asyncio.gather(
        writer.commit(StepOutput(run_id, timing("pick"), '"second"')),
        writer.commit(StepOutput(run_id, timing("pick"), '"third"')),
    )

    assert (first.ours, first.state.output) == (True, '"first"')
    assert (again.ours, again.state.output) == (False, '"first"')
    assert (same_batch.ours, same_batch.state.output) == (False, '"first"')


async def test_a_step_waiting_for_a_retry_completes_with_its_attempts_counted(
    connection: asyncpg.Connection, writer: CheckpointWriter
) -> None:
    run_id = await new_run(connection)
    await execution.record_failure(
        connection,
        run_id,
        timing("call"),
        ErrorRecord("E", "x"),
        retriable=True,
        max_attempts=3,
        retry_delay=lambda _: timedelta(0),
    )

    commit = await writer.commit(StepOutput(run_id, timing("call"), '"ok"'))

    assert commit.ours
    row = await connection.fetchrow("SELECT status, attempts, error FROM reverb.steps")
    assert row is not None and (row["status"], row["attempts"], row["error"]) == (
        "completed",
        2,
        None,
    )


async def test_an_unstorable_output_fails_alone(
    connection: asyncpg.Connection, writer: CheckpointWriter
) -> None:
    run_id = await new_run(connection)
    good, bad = await asyncio.gather(
        writer.commit(StepOutput(run_id, timing("good"), '"fine"')),
        writer.commit(StepOutput(run_id, timing("bad"), '"nul \\u0000"')),
        return_exceptions=True,
    )

    assert not isinstance(good, BaseException) and good.ours
    assert isinstance(bad, asyncpg.DataError)
    assert await connection.fetchval("SELECT array_agg(id) FROM reverb.steps") == ["good"]


async def test_resolving_and_loading_in_one_statement_matches_the_separate_queries(
    connection: asyncpg.Connection,
) -> None:
    async def fixture() -> RunId:
        run_id = await new_run(connection, "sleeping")
        await add_step(connection, run_id, "first", output='"one"')
        await add_step(connection, run_id, "nap", kind="sleep", status="sleeping", wake_in=-HOUR)
        await add_step(connection, run_id, "later", kind="sleep", status="sleeping", wake_in=HOUR)
        await add_step(connection, run_id, "call", kind="invoke", status="waiting", wake_in=-HOUR)
        await add_step(connection, run_id, "flaky", status="retrying", wake_in=HOUR)
        await add_step(connection, run_id, "due", status="retrying", wake_in=-HOUR)
        await connection.execute("UPDATE reverb.steps SET attempts = 2 WHERE id = 'due'")
        return run_id

    separate, combined = await fixture(), await fixture()
    await execution.resolve_due(connection, separate)
    expected = (
        await execution.load_memo(connection, separate),
        await steps.retrying_attempts(connection, separate),
    )

    loaded = await steps.resolve_and_load(connection, combined)
    memo, retrying = loaded.memo, loaded.retrying_attempts

    assert (memo, retrying) == expected
    assert [entry.step_id for entry in memo] == ["first", "nap", "later", "call", "flaky"]
    assert retrying == 2
    # The step run again now, with its failures so far; the waits this claim resolved.
    assert loaded.step_attempts == {"due": 2}
    assert [(wait.step_id, wait.kind) for wait in loaded.resolved] == [
        ("nap", "sleep"),
        ("call", "invoke"),
    ]
    assert loaded.resolved[0].error is None
    assert loaded.resolved[1].error is not None and loaded.resolved[1].error.type == "InvokeTimeout"
    assert await connection.fetchval(
        "SELECT array_agg(status ORDER BY seq) FROM reverb.steps WHERE run_id = $1", combined
    ) == ["completed", "completed", "sleeping", "failed", "retrying", "retrying"]
