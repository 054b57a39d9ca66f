"""`GET /events/{id}` lists the runs an event did not start (`skipped`), as recorded by the
store function flow control and pausing call."""

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from reverb_ingress_gateway import Gateway
from reverb_store import NewEvent, insert_events
from reverb_store.execution import SkippedRun, record_skips
from reverb_store.ids import EventId, FunctionId


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        yield client


async def _event(connection: asyncpg.Connection) -> EventId:
    async with connection.transaction():
        (event_id,) = await insert_events(connection, [NewEvent("order.paid", '{"id": 1}')])
    return EventId(event_id)


async def test_an_event_lists_its_skipped_runs(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    event_id = await _event(connection)
    assert (await client.get(f"/events/{event_id}")).json()["skipped"] == []

    async with connection.transaction():
        await record_skips(
            connection,
            [
                SkippedRun(event_id, FunctionId("ship"), "paused"),
                SkippedRun(event_id, FunctionId("bill"), "rate_limited"),
            ],
        )
    # Recorded again (a retried fan-out), or for another reason: the first one stays.
    await record_skips(connection, [SkippedRun(event_id, FunctionId("ship"), "throttled")])

    body = (await client.get(f"/events/{event_id}")).json()
    assert body["skipped"] == [
        {"function_id": "bill", "reason": "rate_limited"},
        {"function_id": "ship", "reason": "paused"},
    ]
    assert body["runs"] == []


async def test_a_skip_needs_a_reason(connection: asyncpg.Connection) -> None:
    event_id = await _event(connection)
    with pytest.raises(ValueError, match="reason"):
        await record_skips(connection, [SkippedRun(event_id, FunctionId("ship"), "")])
    await record_skips(connection, [])
