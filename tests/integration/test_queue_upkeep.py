"""The queue's upkeep: the dead rows every finished job leaves in pgqueuer's table are
vacuumed away by one worker at a time, on REVERB_WORKER_QUEUE_VACUUM_INTERVAL, so the
dequeue does not read them (against real PostgreSQL; this server may run autovacuum off,
and autovacuum is never fast enough for a queue anyway)."""

from datetime import timedelta

import asyncpg

from reverb_queue_worker import start as start_worker
from reverb_store import jobs
from tests.e2e.processes import eventually
from tests.integration.test_worker_runs import worker_settings

JOBS = 500


async def _dead_rows(connection: asyncpg.Connection) -> int:
    """Rows as a busy queue leaves them: jobs picked, then deleted when done (of an
    entrypoint no worker serves, so none takes them meanwhile); the dead rows left."""
    await connection.execute(
        "INSERT INTO pgqueuer (priority, status, entrypoint, queue_manager_id)"
        " SELECT 0, 'picked', 'upkeep_test', gen_random_uuid() FROM generate_series(1, $1)",
        JOBS,
    )
    await connection.execute("DELETE FROM pgqueuer WHERE entrypoint = 'upkeep_test'")
    # Cumulative statistics reach shared memory at most once a second unless flushed.
    await connection.execute("SELECT pg_stat_force_next_flush()")
    return await _table_stats(connection, "n_dead_tup")


async def _table_stats(connection: asyncpg.Connection, column: str) -> int:
    value = await connection.fetchval(
        f"SELECT {column} FROM pg_stat_user_tables WHERE relname = 'pgqueuer'"
    )
    return int(value)


async def test_vacuum_queue_removes_the_dead_rows_of_finished_jobs(
    connection: asyncpg.Connection,
) -> None:
    assert await _dead_rows(connection) >= JOBS
    before = await _table_stats(connection, "vacuum_count")

    assert await jobs.vacuum_queue(connection) is True

    assert await _table_stats(connection, "vacuum_count") == before + 1
    assert await _table_stats(connection, "n_dead_tup") == 0
    assert await _table_stats(connection, "analyze_count") >= 1


async def test_only_one_connection_vacuums_at_a_time(
    connection: asyncpg.Connection, database_url: str
) -> None:
    await _dead_rows(connection)
    before = await _table_stats(connection, "vacuum_count")
    other = await asyncpg.connect(database_url)
    try:
        await other.fetchval("SELECT pg_advisory_lock(hashtextextended('reverb.queue_upkeep', 0))")
        assert await jobs.vacuum_queue(connection) is False
        assert await _table_stats(connection, "vacuum_count") == before
    finally:
        await other.close()
    # The lock went with its session: the next round vacuums.
    assert await jobs.vacuum_queue(connection) is True


async def test_a_worker_vacuums_the_queue_on_its_interval(
    connection: asyncpg.Connection, database_url: str
) -> None:
    settings = worker_settings(database_url).model_copy(
        update={"worker_queue_vacuum_interval": timedelta(milliseconds=200)}
    )
    worker = await start_worker(settings)
    try:
        assert worker.upkeep is not None
        await _dead_rows(connection)
        before = await _table_stats(connection, "vacuum_count")
        upkeep = worker.upkeep

        async def vacuumed() -> bool:
            return upkeep.rounds >= 1 and await _table_stats(connection, "vacuum_count") > before

        await eventually(vacuumed, within=20, what="the worker to vacuum the queue")
        assert await _table_stats(connection, "n_dead_tup") == 0
    finally:
        await worker.stop()


async def test_the_upkeep_is_off_at_zero(database_url: str) -> None:
    settings = worker_settings(database_url).model_copy(
        update={"worker_queue_vacuum_interval": timedelta(0)}
    )
    worker = await start_worker(settings)
    try:
        assert worker.upkeep is None
    finally:
        await worker.stop()
