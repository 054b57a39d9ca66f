"""A worker's own takes from the queue, against real PostgreSQL: which due jobs come
first, how many, and when the next one is due."""

import asyncio
from datetime import timedelta
from uuid import uuid4

import asyncpg

from reverb_store import jobs
from reverb_store.jobs import AdvanceRun, ProcessEvent
from tests.integration.wakeups import Heard


async def enqueue(
    connection: asyncpg.Connection, job: ProcessEvent | AdvanceRun, delay: timedelta
) -> int:
    (job_id,) = await jobs.schedule(connection, [job], [delay], Heard())
    return job_id


async def make_due(connection: asyncpg.Connection, job_id: int) -> None:
    await connection.execute(
        "UPDATE pgqueuer SET execute_after = now() - interval '1 second' WHERE id = $1", job_id
    )


async def test_due_wake_ups_are_taken_before_work_queued_earlier(
    connection: asyncpg.Connection,
) -> None:
    new_run = await enqueue(connection, AdvanceRun("new"), timedelta(0))
    fan_out = await enqueue(connection, ProcessEvent(("event",)), timedelta(0))
    wake_up = await enqueue(connection, AdvanceRun("sleeper"), timedelta(seconds=30))
    await make_due(connection, wake_up)
    worker = uuid4()

    first = await jobs.take_due(connection, worker, 1)
    rest = await jobs.take_due(connection, worker, 10)

    assert [(job.job_id, job.kind) for job in first] == [(wake_up, "wake_run")]
    assert AdvanceRun.decode(first[0].payload) == AdvanceRun("sleeper")
    # Then the others, oldest first, whatever their entrypoint.
    assert [job.job_id for job in rest] == [new_run, fan_out]
    picked = await connection.fetch(
        "SELECT status, queue_manager_id FROM pgqueuer WHERE id = ANY($1::bigint[])",
        [wake_up, new_run, fan_out],
    )
    assert {(row["status"], row["queue_manager_id"]) for row in picked} == {("picked", worker)}
    assert await jobs.take_due(connection, worker, 10) == []


async def test_jobs_not_due_yet_stay_queued_and_give_the_next_due_time(
    connection: asyncpg.Connection,
) -> None:
    assert await jobs.next_due(connection) is None
    await enqueue(connection, AdvanceRun("later"), timedelta(minutes=10))
    await enqueue(connection, AdvanceRun("sooner"), timedelta(minutes=1))
    await enqueue(connection, ProcessEvent(("retried",)), timedelta(minutes=5))

    assert await jobs.take_due(connection, uuid4(), 10) == []
    next_due = await jobs.next_due(connection)
    assert next_due is not None
    assert 50 < next_due <= 60


# Holding this advisory lock pauses every UPDATE of the queue at its end (the trigger
# below): the take, between its own statement and the read of the next due time.
_PAUSE = 8_0001

_PAUSE_UPDATES = f"""
CREATE FUNCTION pause_queue_updates() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_advisory_xact_lock({_PAUSE}); RETURN NULL; END $$;
CREATE TRIGGER pause_queue_updates AFTER UPDATE ON pgqueuer
FOR EACH STATEMENT EXECUTE FUNCTION pause_queue_updates();
"""


async def test_a_job_falling_due_during_a_take_is_taken_or_next_due(
    connection: asyncpg.Connection, database_url: str
) -> None:
    # The worker reads the next due time after its take; a job that falls due between
    # the two must be in one of them, or no timer is armed for it (a lost wake-up).
    job_id = await enqueue(connection, AdvanceRun("sleeper"), timedelta(hours=1))
    await connection.execute(_PAUSE_UPDATES)
    other = await asyncpg.connect(database_url)
    try:
        await other.execute("SELECT pg_advisory_lock($1)", _PAUSE)
        take = asyncio.create_task(jobs.take_due_and_next(connection, uuid4(), 10))
        pid = connection.get_server_pid()
        while not take.done() and not await other.fetchval(
            "SELECT cardinality(pg_blocking_pids($1)) > 0", pid
        ):
            pass
        # Due now: after the take read the queue, before the next due time is read.
        await other.execute(
            "UPDATE pgqueuer SET execute_after = clock_timestamp() WHERE id = $1", job_id
        )
        await other.execute("SELECT pg_advisory_unlock($1)", _PAUSE)
        taken, next_due = await take
    finally:
        await other.close()

    assert [job.job_id for job in taken] == [] and next_due is not None
    assert 0 <= next_due < 60


async def test_delayed_runs_are_wake_ups_and_due_ones_are_not(
    connection: asyncpg.Connection,
) -> None:
    await enqueue(connection, AdvanceRun("now"), timedelta(0))
    await enqueue(connection, AdvanceRun("later"), timedelta(seconds=5))
    await enqueue(connection, ProcessEvent(("retried",)), timedelta(seconds=5))

    rows = await connection.fetch("SELECT entrypoint, priority FROM pgqueuer ORDER BY id")

    # pgqueuer's own dequeue orders by priority: it also takes due wake-ups first.
    assert [(row["entrypoint"], row["priority"]) for row in rows] == [
        ("advance_run", 0),
        ("wake_run", 1),
        ("process_event", 0),
    ]


async def test_a_finished_job_is_deleted_even_when_also_listed_as_running(
    connection: asyncpg.Connection,
) -> None:
    # A job that ends right as heartbeats are due is in both lists of one `keep`.
    finished = await enqueue(connection, AdvanceRun("done"), timedelta(0))
    running = await enqueue(connection, AdvanceRun("busy"), timedelta(0))
    assert len(await jobs.take_due(connection, uuid4(), 10)) == 2
    await connection.execute("UPDATE pgqueuer SET heartbeat = now() - interval '1 minute'")

    await jobs.keep(connection, [finished, running], [finished])

    rows = await connection.fetch(
        "SELECT id, heartbeat > now() - interval '1 minute' AS beaten FROM pgqueuer"
    )
    assert [(row["id"], row["beaten"]) for row in rows] == [(running, True)]


async def test_a_lone_finished_job_is_deleted_and_the_others_are_left_alone(
    connection: asyncpg.Connection,
) -> None:
    finished = await enqueue(connection, AdvanceRun("done"), timedelta(0))
    running = await enqueue(connection, AdvanceRun("busy"), timedelta(0))
    assert len(await jobs.take_due(connection, uuid4(), 10)) == 2
    await connection.execute("UPDATE pgqueuer SET heartbeat = now() - interval '1 minute'")

    await jobs.keep(connection, [], [finished])

    rows = await connection.fetch(
        "SELECT id, heartbeat > now() - interval '1 minute' AS beaten FROM pgqueuer"
    )
    assert [(row["id"], row["beaten"]) for row in rows] == [(running, False)]


async def test_only_delayed_jobs_are_reported_to_their_waker(
    connection: asyncpg.Connection,
) -> None:
    heard = Heard()

    await jobs.schedule(
        connection,
        [AdvanceRun("now"), AdvanceRun("later"), ProcessEvent(("again",))],
        [timedelta(0), timedelta(seconds=5), timedelta(seconds=2)],
        heard,
    )

    assert heard.delays == [timedelta(seconds=5), timedelta(seconds=2)]
