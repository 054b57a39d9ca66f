"""Group commit: concurrent POST /events share transactions, yet each request keeps its own
answer, its own fan-out job and trace, and only a faulty request fails.

To make requests pile up for real, the test holds a lock on reverb.events while
they arrive: the gateway's committers block on it, the other requests queue,
and releasing the lock lets the queue commit in shared transactions.
"""

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from reverb_ingress_gateway import Gateway
from reverb_store.jobs import ProcessEvent
from tests.integration.listeners import listen


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.http_port}", limits=limits
    ) as client:
        yield client


@pytest.fixture(autouse=True)
async def listening(connection: asyncpg.Connection) -> None:
    """A function listens to the names these tests send (others get no fan-out job)."""
    await listen(connection, "paid", *(f"e{index}" for index in range(30)))


async def _with_events_locked(
    connection: asyncpg.Connection, requests: list[asyncio.Task[httpx.Response]]
) -> list[httpx.Response]:
    """Hold reverb.events locked until committers wait on it, then let everything through."""
    async with connection.transaction():
        await connection.execute("LOCK TABLE reverb.events IN EXCLUSIVE MODE")
        # PostgreSQL signals nothing when a backend starts waiting for a lock: poll for it.
        async with asyncio.timeout(20):
            while not await connection.fetchval(  # noqa: ASYNC110
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ):
                await asyncio.sleep(0.01)
    return list(await asyncio.gather(*requests))


async def test_concurrent_requests_each_get_their_ids_job_and_trace(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    def traceparent(index: int) -> str:
        return f"00-{index + 1:032x}-{index + 1:016x}-01"

    requests = [
        asyncio.create_task(
            client.post(
                "/events",
                json=[{"name": f"e{index}", "id": f"r{index}-{n}"} for n in range(3)],
                headers={"traceparent": traceparent(index)},
            )
        )
        for index in range(30)
    ]
    responses = await _with_events_locked(connection, requests)
    for index, response in enumerate(responses):
        assert response.status_code == 202
        assert response.json() == {"ids": [f"r{index}-{n}" for n in range(3)]}
    rows = await connection.fetch("SELECT payload FROM pgqueuer WHERE entrypoint = 'process_event'")
    jobs = [ProcessEvent.decode(row["payload"]) for row in rows]
    assert len(jobs) == 30
    for job in jobs:
        index = int(job.event_ids[0].split("-")[0][1:])
        assert job.event_ids == tuple(f"r{index}-{n}" for n in range(3))
        assert job.traceparent is not None
        assert job.traceparent.split("-")[1] == f"{index + 1:032x}"
    assert await connection.fetchval("SELECT count(*) FROM reverb.events") == 90


async def test_an_id_sent_by_concurrent_requests_is_accepted_once(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    requests = [
        asyncio.create_task(client.post("/events", json={"name": "paid", "id": "invoice-9"}))
        for _ in range(12)
    ]
    responses = await _with_events_locked(connection, requests)
    assert {response.json()["ids"][0] for response in responses} == {"invoice-9"}
    assert await connection.fetchval("SELECT count(*) FROM reverb.events") == 1
    rows = await connection.fetch("SELECT payload FROM pgqueuer")
    assert [ProcessEvent.decode(row["payload"]).event_ids for row in rows] == [("invoice-9",)]


async def test_a_request_the_database_refuses_fails_alone(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    # A rule the gateway does not know: PostgreSQL refuses events named "poison" with a
    # data error (SQLSTATE 22023), as it would refuse data it cannot store.
    await connection.execute(
        """
        CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.name = 'poison' THEN
                RAISE EXCEPTION 'poisoned event' USING ERRCODE = '22023';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_poison BEFORE INSERT ON reverb.events
            FOR EACH ROW EXECUTE FUNCTION refuse_poison();
        """
    )
    names = [f"fine-{index}" for index in range(15)]
    names.insert(10, "poison")
    requests = [
        asyncio.create_task(client.post("/events", json={"name": name, "id": name}))
        for name in names
    ]
    responses = await _with_events_locked(connection, requests)
    statuses = {name: response.status_code for name, response in zip(names, responses, strict=True)}
    assert statuses.pop("poison") == 400
    assert set(statuses.values()) == {202}
    assert responses[10].json()["error"]["code"] == "invalid_event"
    stored = await connection.fetch("SELECT id FROM reverb.events ORDER BY id")
    assert sorted(row["id"] for row in stored) == sorted(statuses)
