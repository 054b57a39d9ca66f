"""Events are accepted durably: rows and their fan-out job commit together, once per id."""

import asyncpg

from reverb_store import NewEvent, insert_events
from reverb_store.jobs import ProcessEvent
from tests.integration.listeners import listen


async def test_events_and_fan_out_job_commit_together(connection: asyncpg.Connection) -> None:
    await listen(connection, "a", "b")
    async with connection.transaction():
        ids = await insert_events(connection, [NewEvent("a", '{"x": 1}'), NewEvent("b", "{}")])
    jobs = await connection.fetch("SELECT payload FROM pgqueuer WHERE entrypoint = 'process_event'")
    assert [ProcessEvent.decode(job["payload"]).event_ids for job in jobs] == [tuple(ids)]


async def test_rolled_back_acceptance_leaves_nothing(connection: asyncpg.Connection) -> None:
    await listen(connection, "a")
    transaction = connection.transaction()
    await transaction.start()
    await insert_events(connection, [NewEvent("a", "{}")])
    await transaction.rollback()
    assert await connection.fetchval("SELECT count(*) FROM reverb.events") == 0
    assert await connection.fetchval("SELECT count(*) FROM pgqueuer") == 0


async def test_only_events_a_function_listens_to_get_a_fan_out_job(
    connection: asyncpg.Connection,
) -> None:
    await listen(connection, "heard")
    async with connection.transaction():
        heard, unheard = await insert_events(
            connection, [NewEvent("heard", "{}"), NewEvent("unheard", "{}")]
        )
    jobs = await connection.fetch("SELECT payload FROM pgqueuer")
    assert [ProcessEvent.decode(job["payload"]).event_ids for job in jobs] == [(heard,)]
    assert await connection.fetchval("SELECT count(*) FROM reverb.events") == 2


async def test_a_repeated_id_is_accepted_once(connection: asyncpg.Connection) -> None:
    await listen(connection, "a")
    for _ in range(2):
        async with connection.transaction():
            assert await insert_events(connection, [NewEvent("a", "{}", id="order-1")]) == [
                "order-1"
            ]
    assert await connection.fetchval("SELECT count(*) FROM reverb.events") == 1
    assert await connection.fetchval("SELECT count(*) FROM pgqueuer") == 1
