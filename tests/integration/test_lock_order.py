"""Lock order, against real PostgreSQL: the batched run completion and the heartbeat
statement cannot deadlock, whatever order their inputs come in: the completion locks
its job rows in ascending id order, and the heartbeat waits for none (a row another
transaction holds is skipped until the next round).

Each round drives the two statements through the interleaving that deadlocked when
each locked in its input's order: the completion is given its jobs in descending
order, the heartbeat in ascending order, and two other transactions hold a row each
that paused them half-way (`pg_blocking_pids` tells when a statement waits; nothing
sleeps).
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Collection
from typing import TypeVar

import asyncpg
import pytest

from reverb_store import jobs
from reverb_store.execution.completions import RunCompletion, complete_runs
from reverb_store.ids import JobId, RunId
from tests.integration.test_worker_completions import driven_run

T = TypeVar("T")

ROUNDS = 10


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[list[asyncpg.Connection]]:
    """Five connections: the observer, the completion's, the heartbeat's, two holders."""
    connections = [await asyncpg.connect(database_url) for _ in range(5)]
    for connection in connections[1:3]:
        # A deadlock, if there is one, is found at once rather than after a second.
        await connection.execute("SET deadlock_timeout = '10ms'")
    yield connections
    for connection in connections:
        await connection.close()


async def waiting(
    observer: asyncpg.Connection,
    statement: asyncpg.Connection,
    task: "asyncio.Task[T]",
    *,
    not_on: Collection[int] = (),
) -> None:
    """Until `statement`'s backend waits for a lock held by a backend not in `not_on`
    (its wait on those ended), or its statement has ended."""
    pid = statement.get_server_pid()
    while not task.done():
        blockers = set(await observer.fetchval("SELECT pg_blocking_pids($1)", pid))
        if blockers - set(not_on):
            return


async def holding(connection: asyncpg.Connection, job_id: int) -> asyncpg.transaction.Transaction:
    """A transaction holding `job_id`'s row lock until it commits."""
    transaction = connection.transaction()
    await transaction.start()
    await connection.execute("SELECT 1 FROM pgqueuer WHERE id = $1 FOR UPDATE", job_id)
    return transaction


async def ended(task: Awaitable[T]) -> T | BaseException:
    try:
        return await task
    except asyncpg.PostgresError as error:
        return error


async def test_the_completion_batch_and_the_heartbeat_never_deadlock(
    sessions: list[asyncpg.Connection],
) -> None:
    observer, completing, beating, first_holder, second_holder = sessions
    for _ in range(ROUNDS):
        driven = sorted([await driven_run(observer) for _ in range(5)], key=lambda pair: pair[1])
        job_ids = [job_id for _, job_id in driven]
        await observer.execute(
            "UPDATE pgqueuer SET status = 'picked' WHERE id = ANY($1::bigint[])", job_ids
        )
        # The completion: jobs 4, 3, 0 in that order; the heartbeat: jobs 0, 1, 4. Held:
        # job 3 (pauses the completion after job 4) and job 1 (the heartbeat after job 0).
        completions = [RunCompletion(RunId(run), JobId(job), "null") for run, job in driven]
        batch = [completions[4], completions[3], completions[0]]
        running = [job_ids[0], job_ids[1], job_ids[4]]
        pause_completion = await holding(first_holder, job_ids[3])
        pause_heartbeat = await holding(second_holder, job_ids[1])

        completion = asyncio.create_task(ended(complete_runs(completing, batch)))
        await waiting(observer, completing, completion)
        heartbeat = asyncio.create_task(ended(jobs.keep(beating, running, [])))
        await waiting(observer, beating, heartbeat)
        await pause_completion.commit()
        await waiting(observer, completing, completion, not_on=[first_holder.get_server_pid()])
        await pause_heartbeat.commit()

        done, beaten = await completion, await heartbeat
        assert not isinstance(done, BaseException), done
        assert not isinstance(beaten, BaseException), beaten
        assert done == [True, True, True]
        remaining = await observer.fetch(
            "SELECT id FROM pgqueuer WHERE id = ANY($1::bigint[]) ORDER BY id", job_ids
        )
        assert [row["id"] for row in remaining] == job_ids[1:3]


async def test_the_heartbeat_skips_a_job_row_another_transaction_holds(
    sessions: list[asyncpg.Connection],
) -> None:
    """The heartbeat never waits: a job whose row a transition holds (which may itself
    wait for a concurrency shard whose free waits for a job row the heartbeat would hold)
    keeps its old heartbeat until the next round."""
    observer, beating, _, holder, _ = sessions
    driven = [await driven_run(observer) for _ in range(2)]
    held, free = (job_id for _, job_id in driven)
    await observer.execute(
        "UPDATE pgqueuer SET status = 'picked', heartbeat = now() - interval '1 hour'"
        " WHERE id = ANY($1::bigint[])",
        [held, free],
    )
    old = (
        "SELECT id FROM pgqueuer WHERE id = ANY($1::bigint[])"
        " AND heartbeat < now() - interval '1 minute' ORDER BY id"
    )
    holding_row = await holding(holder, held)
    # Were it to wait, it would wait until the holder commits, after this deadline.
    await asyncio.wait_for(jobs.keep(beating, [held, free], []), timeout=10)
    assert [row["id"] for row in await observer.fetch(old, [held, free])] == [held]
    await holding_row.commit()
    await jobs.keep(beating, [held, free], [])
    assert await observer.fetch(old, [held, free]) == []
