"""Run completions group-committed by the worker's checkpoint writer, against real
PostgreSQL: parentless runs complete together, their jobs go with them, and anything
else is left to the single-run transition."""

import asyncio

import asyncpg
import orjson

from reverb_queue_worker.runs.checkpoints import CheckpointWriter
from reverb_store import execution, jobs
from reverb_store.execution.completions import RunCompletion
from reverb_store.ids import JobId, RunId
from tests.integration.test_worker_transitions import new_run


async def driven_run(
    connection: asyncpg.Connection, parent: str | None = None
) -> tuple[RunId, JobId]:
    """A running run and the advance_run job that drives it."""
    run_id = await new_run(connection, "running", parent)
    (job_id,) = await jobs.enqueue(connection, [jobs.AdvanceRun(run_id, None)])
    await connection.execute("UPDATE reverb.runs SET job_id = $2 WHERE id = $1", run_id, job_id)
    return run_id, JobId(job_id)


async def test_parentless_runs_complete_together_with_their_jobs(
    connection: asyncpg.Connection, writer: CheckpointWriter
) -> None:
    driven = [await driven_run(connection) for _ in range(10)]

    done = await asyncio.gather(
        *(
            writer.complete(RunCompletion(run_id, job_id, orjson.dumps({"n": n}).decode()))
            for n, (run_id, job_id) in enumerate(driven)
        )
    )

    assert done == [True] * 10
    rows = await connection.fetch(
        "SELECT id, status, output::text AS output, job_id FROM reverb.runs ORDER BY id"
    )
    assert {row["id"]: orjson.loads(row["output"])["n"] for row in rows} == {
        run_id: n for n, (run_id, _) in enumerate(driven)
    }
    assert {(row["status"], row["job_id"]) for row in rows} == {("completed", None)}
    assert await connection.fetchval("SELECT count(*) FROM pgqueuer") == 0


async def test_a_child_or_a_run_driven_by_another_job_is_left_to_complete_run(
    connection: asyncpg.Connection, writer: CheckpointWriter
) -> None:
    parent_id = await new_run(connection, "waiting")
    child_id, child_job = await driven_run(connection, parent=parent_id)
    taken_id, taken_job = await driven_run(connection)

    child, taken = await asyncio.gather(
        writer.complete(RunCompletion(child_id, child_job, '"to the parent"')),
        writer.complete(RunCompletion(taken_id, JobId(taken_job + 1000), '"not mine"')),
    )

    assert (child, taken) == (False, False)
    assert await connection.fetchval(
        "SELECT array_agg(status ORDER BY id) FROM reverb.runs WHERE id = ANY($1::text[])",
        [child_id, taken_id],
    ) == ["running", "running"]
    assert await execution.complete_run(connection, child_id, child_job, '"to the parent"')


async def test_an_unstorable_result_fails_alone(
    connection: asyncpg.Connection, writer: CheckpointWriter
) -> None:
    (good_id, good_job), (bad_id, bad_job) = [await driven_run(connection) for _ in range(2)]

    good, bad = await asyncio.gather(
        writer.complete(RunCompletion(good_id, good_job, '"fine"')),
        writer.complete(RunCompletion(bad_id, bad_job, '"nul \\u0000"')),
        return_exceptions=True,
    )

    assert good is True
    assert isinstance(bad, asyncpg.DataError)
    assert (
        await connection.fetchval("SELECT status FROM reverb.runs WHERE id = $1", bad_id)
        == "running"
    )
