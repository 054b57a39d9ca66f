"""A worker's one wake-up timer, against real PostgreSQL: the delayed jobs a job schedules
run when due, with no poll and no notification, on asyncio's loop and on uvloop (the
loop the services run on). No queue manager runs, so nothing polls, and nothing
listens to the queue's notifications: only the worker's timer can find them."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from uuid import uuid4

import asyncpg
import pytest

from reverb_queue_worker.database import acquire, open_pool
from reverb_queue_worker.jobs.active import ActiveJob
from reverb_queue_worker.jobs.own_jobs import OwnJobs
from reverb_store import jobs
from reverb_store.ids import JobId, RunId
from reverb_store.jobs import AdvanceRun
from tests.loops import LOOPS


class Ran:
    """When each run's job ran (seconds after the start), and a wait for `count` of them."""

    def __init__(self, count: int) -> None:
        self.began = time.monotonic()
        self.at: dict[str, float] = {}
        self._count = count
        self._all = asyncio.Event()

    def record(self, run_id: str) -> None:
        self.at[run_id] = time.monotonic() - self.began
        if len(self.at) == self._count:
            self._all.set()

    async def all(self) -> None:
        await asyncio.wait_for(self._all.wait(), timeout=10)


@asynccontextmanager
async def own_jobs_recording(
    database_url: str, ran: Ran, delay: timedelta | None = None
) -> AsyncIterator[tuple[OwnJobs, asyncpg.Pool]]:
    """Own jobs whose handler records each run; with a `delay`, a job of a run not named
    `later-…` schedules `later-<run>` that much later."""
    pool = await open_pool(database_url, 2)
    own_jobs = OwnJobs(pool, concurrency=4, heartbeat_seconds=3600)

    async def handler(job: ActiveJob, payload: bytes) -> None:
        run_id = AdvanceRun.decode(payload).run_id
        ran.record(run_id)
        if delay is not None and not run_id.startswith("later"):
            async with acquire(pool) as connection:
                await jobs.schedule(connection, [AdvanceRun(f"later-{run_id}")], [delay], job)

    own_jobs.start(handler)
    own_jobs.attach(uuid4(), lambda: 0)
    try:
        yield own_jobs, pool
    finally:
        await own_jobs.stop(1)
        await pool.close()


async def test_the_wake_ups_a_job_schedules_run_when_due_without_a_poll(
    database_url: str,
) -> None:
    ran = Ran(4)
    async with own_jobs_recording(database_url, ran, timedelta(milliseconds=300)) as (
        own_jobs,
        pool,
    ):
        async with acquire(pool) as connection:
            await jobs.enqueue(connection, [AdvanceRun("a"), AdvanceRun("b")])
        own_jobs.backlog()
        await ran.all()

    assert sorted(ran.at) == ["a", "b", "later-a", "later-b"]
    assert ran.at["later-a"] - ran.at["a"] >= 0.3
    assert ran.at["later-b"] - ran.at["b"] >= 0.3


async def dequeued_wake_ups_due_at_once(database_url: str) -> list[str]:
    """Two jobs (as pgqueuer dispatches them) each schedule a wake-up due in 100 µs, and end
    in the same turn of the loop: the second is armed while the first is pending."""
    ran = Ran(2)
    async with own_jobs_recording(database_url, ran) as (own_jobs, pool):
        dequeued = [ActiveJob(JobId(index), "advance_run") for index in (1, 2)]
        async with acquire(pool) as connection:
            for index, job in enumerate(dequeued):
                later = [AdvanceRun(f"later-{index}")]
                await jobs.schedule(connection, later, [timedelta(microseconds=100)], job)
        for job in dequeued:
            own_jobs.ended(job)
        await ran.all()
    return sorted(ran.at)


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_wake_ups_armed_together_run(database_url: str, loop_name: str) -> None:
    # On both loops, whichever the suite runs on. uvloop's call_at with a delay under
    # about a millisecond returns a plain Handle, which has no `when()`: the timer's due
    # time is kept beside it.
    loop = LOOPS[loop_name]()
    try:
        ran = loop.run_until_complete(dequeued_wake_ups_due_at_once(database_url))
    finally:
        loop.close()
    assert ran == ["later-0", "later-1"]


class NoTimer:
    """The `Wakeups` of a worker that died before its wake-up fell due: it arms nothing."""

    def wake_in(self, delay: timedelta) -> None:
        pass


async def test_a_run_wake_up_runs_as_a_picked_wake_run_job_when_due_without_a_poll(
    database_url: str,
) -> None:
    # A suspended run's wake-up is a row of run_wakeups (kept out of pgqueuer's queue):
    # the job that stored it arms the timer, which turns it into a job of this worker.
    ran = Ran(2)
    async with own_jobs_recording(database_url, ran) as (own_jobs, pool):
        job = ActiveJob(JobId(1), "advance_run")
        async with acquire(pool) as connection:
            for run_id in ("sleeper", "waiter"):
                await jobs.wake_later(
                    connection, RunId(run_id), None, timedelta(milliseconds=300), job
                )
            assert (
                await connection.fetchval(
                    "SELECT count(*) FROM pgqueuer WHERE entrypoint = 'wake_run'"
                )
                == 0
            )
        own_jobs.ended(job)
        await ran.all()
        async with acquire(pool) as connection:
            assert await connection.fetchval("SELECT count(*) FROM reverb.run_wakeups") == 0
    assert sorted(ran.at) == ["sleeper", "waiter"]
    assert min(ran.at.values()) >= 0.3


async def test_a_wake_up_no_timer_here_armed_is_found_within_a_poll_interval(
    database_url: str,
) -> None:
    ran = Ran(1)
    pool = await open_pool(database_url, 2)
    own_jobs = OwnJobs(pool, concurrency=4, heartbeat_seconds=3600, poll_seconds=0.5)

    async def handler(job: ActiveJob, payload: bytes) -> None:
        ran.record(AdvanceRun.decode(payload).run_id)

    own_jobs.start(handler)
    own_jobs.attach(uuid4(), lambda: 0)
    try:
        own_jobs.backlog()  # the worker starts: nothing is due, nothing scheduled
        async with acquire(pool) as connection:
            await jobs.wake_later(
                connection, RunId("orphan"), None, timedelta(milliseconds=100), NoTimer()
            )
        await ran.all()
    finally:
        await own_jobs.stop(1)
        await pool.close()
    assert ran.at["orphan"] < 2


async def test_promoting_takes_only_the_room_given_and_leaves_the_rest_due(
    connection: asyncpg.Connection,
) -> None:
    for index in range(3):
        await jobs.wake_later(
            connection, RunId(f"run-{index}"), None, -timedelta(seconds=3 - index), NoTimer()
        )
    await jobs.wake_later(connection, RunId("later"), None, timedelta(hours=1), NoTimer())
    worker = uuid4()

    taken, next_due = await jobs.take_due_and_next(connection, worker, 2)

    # Oldest due first, each a wake_run job picked by the worker taking them.
    assert [AdvanceRun.decode(job.payload).run_id for job in taken] == ["run-0", "run-1"]
    assert {job.kind for job in taken} == {"wake_run"}
    picked = await connection.fetch(
        "SELECT status, queue_manager_id FROM pgqueuer WHERE id = ANY($1::bigint[])",
        [job.job_id for job in taken],
    )
    assert {(row["status"], row["queue_manager_id"]) for row in picked} == {("picked", worker)}
    left = await connection.fetch("SELECT run_id FROM reverb.run_wakeups ORDER BY run_id")
    assert [row["run_id"] for row in left] == ["later", "run-2"]
    assert next_due is not None and 3590 < next_due <= 3600


async def test_a_later_suspension_replaces_the_runs_wake_up(
    connection: asyncpg.Connection,
) -> None:
    await jobs.wake_later(connection, RunId("run"), None, timedelta(hours=1), NoTimer())
    await jobs.wake_later(connection, RunId("run"), "00-tp", timedelta(minutes=1), NoTimer())
    (row,) = await connection.fetch(
        "SELECT traceparent, due_at - now() AS delay FROM reverb.run_wakeups"
    )
    assert row["traceparent"] == "00-tp"
    assert timedelta(seconds=55) < row["delay"] <= timedelta(minutes=1)
