"""POST /functions/{id}/pause and /resume, and GET /functions showing it, over a real socket."""

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


@pytest.fixture
async def function(connection: asyncpg.Connection) -> str:
    await connection.execute(
        "INSERT INTO reverb.apps (id, definition_hash, definition) VALUES ('shop', 'h', '{}')"
    )
    await connection.execute(
        "INSERT INTO reverb.functions (id, app_id, name) VALUES ('ship', 'shop', 'ship')"
    )
    await connection.execute(
        "INSERT INTO reverb.triggers (function_id, event_name) VALUES ('ship', 'order.paid')"
    )
    return "ship"


async def _listed(client: httpx.AsyncClient, function_id: str) -> dict[str, object]:
    functions = (await client.get("/functions")).json()["functions"]
    found: dict[str, object] = next(item for item in functions if item["id"] == function_id)
    return found


async def test_pause_and_resume_show_on_the_function(
    client: httpx.AsyncClient, function: str
) -> None:
    assert (await _listed(client, function))["paused"] is False

    paused = await client.post(f"/functions/{function}/pause")

    assert paused.status_code == 200, paused.text
    body = paused.json()
    assert (body["id"], body["paused"]) == (function, True)
    assert body["paused_at"] is not None
    assert await _listed(client, function) == body
    again = await client.post(f"/functions/{function}/pause")
    assert again.json()["paused_at"] == body["paused_at"], "a paused function stays as paused"

    resumed = await client.post(f"/functions/{function}/resume")

    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["paused"] is False
    assert resumed.json()["paused_at"] is None
    assert (resumed.json()["resumed_runs"], resumed.json()["replayed_runs"]) == (0, 0)
    assert (await _listed(client, function))["paused"] is False


async def test_resume_with_replay_skipped_starts_the_skipped_runs(
    client: httpx.AsyncClient, connection: asyncpg.Connection, function: str
) -> None:
    await client.post(f"/functions/{function}/pause")
    async with connection.transaction():
        (event_id,) = await insert_events(connection, [NewEvent("order.paid", "{}")])
        await record_skips(
            connection, [SkippedRun(EventId(event_id), FunctionId(function), "paused")]
        )
    skipped = (await client.get(f"/events/{event_id}")).json()["skipped"]
    assert skipped == [{"function_id": function, "reason": "paused"}]

    resumed = await client.post(f"/functions/{function}/resume", json={"replay_skipped": True})

    assert resumed.json()["replayed_runs"] == 1
    event = (await client.get(f"/events/{event_id}")).json()
    assert event["skipped"] == []
    assert [(run["function_id"], run["status"]) for run in event["runs"]] == [(function, "queued")]


async def test_an_unknown_function_is_404(client: httpx.AsyncClient) -> None:
    for action in ("pause", "resume"):
        response = await client.post(f"/functions/nope/{action}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
