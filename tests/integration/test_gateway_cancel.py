"""POST /runs/{id}/cancel and POST /runs/cancel over a real socket."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from reverb_ingress_gateway import Gateway
from reverb_store import new_id


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        yield client


async def _run(
    connection: asyncpg.Connection,
    status: str,
    *,
    function_id: str = "charge",
    parent: str | None = None,
    created_at: datetime | None = None,
) -> str:
    run_id = new_id()
    await connection.execute(
        "INSERT INTO reverb.runs (id, function_id, app_id, status, max_attempts, parent_run_id,"
        " parent_step_id, created_at) VALUES ($1, $2, 'shop', $3, 5, $4, $5, $6)",
        run_id,
        function_id,
        status,
        parent,
        "call" if parent else None,
        created_at or datetime.now(UTC),
    )
    return run_id


async def test_cancel_answers_the_run_as_get_does(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    run_id = await _run(connection, "sleeping")
    await connection.execute(
        "INSERT INTO reverb.steps (run_id, id, name, kind, status, output)"
        " VALUES ($1, 'first', 'first', 'run', 'completed', '1')",
        run_id,
    )

    response = await client.post(f"/runs/{run_id}/cancel")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body == (await client.get(f"/runs/{run_id}")).json()
    assert body["status"] == "cancelled"
    assert body["error"]["type"] == "RunCancelled"
    assert body["ended_at"] is not None
    assert [step["id"] for step in body["steps"]] == ["first"]


async def test_cancel_is_idempotent_and_refuses_ended_runs(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    queued = await _run(connection, "queued")
    first = await client.post(f"/runs/{queued}/cancel")
    again = await client.post(f"/runs/{queued}/cancel")
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()

    for status in ("completed", "failed"):
        ended = await _run(connection, status)
        response = await client.post(f"/runs/{ended}/cancel")
        assert response.status_code == 409
        error = response.json()["error"]
        assert error["code"] == "failed_precondition"
        assert status in error["message"]
        assert (await client.get(f"/runs/{ended}")).json()["status"] == status

    missing = await client.post("/runs/no-such-run/cancel")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")


async def test_cancel_takes_the_runs_it_invoked(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    parent = await _run(connection, "waiting")
    child = await _run(connection, "waiting", function_id="child", parent=parent)
    grandchild = await _run(connection, "queued", function_id="leaf", parent=child)
    done = await _run(connection, "completed", function_id="leaf", parent=child)

    assert (await client.post(f"/runs/{parent}/cancel")).status_code == 200

    statuses = {
        run_id: (await client.get(f"/runs/{run_id}")).json()["status"]
        for run_id in (parent, child, grandchild, done)
    }
    assert statuses == {
        parent: "cancelled",
        child: "cancelled",
        grandchild: "cancelled",
        done: "completed",
    }


async def test_bulk_cancel_answers_the_count(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    inside = [
        await _run(connection, status, created_at=t0 + timedelta(minutes=minute))
        for minute, status in ((0, "sleeping"), (1, "queued"), (2, "running"), (3, "completed"))
    ]
    before = await _run(connection, "sleeping", created_at=t0 - timedelta(seconds=1))
    after = await _run(connection, "sleeping", created_at=t0 + timedelta(hours=1))
    other = await _run(connection, "sleeping", function_id="refund", created_at=t0)
    window = {"function": "charge", "from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:10:00Z"}

    only_queued = await client.post("/runs/cancel", json={**window, "status": "queued"})
    assert only_queued.status_code == 200, only_queued.text
    assert only_queued.json() == {"count": 1}
    rest = await client.post("/runs/cancel", json=window)
    assert rest.json() == {"count": 2}
    assert (await client.post("/runs/cancel", json=window)).json() == {"count": 0}

    async def status(run_id: str) -> str:
        return str((await client.get(f"/runs/{run_id}")).json()["status"])

    assert [await status(run_id) for run_id in inside] == [
        "cancelled",
        "cancelled",
        "cancelled",
        "completed",
    ]
    assert [await status(run_id) for run_id in (before, after, other)] == ["sleeping"] * 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}, "function"),
        ({"function": "charge", "to": "2026-01-02T00:00:00Z"}, "from"),
        ({"function": "charge", "from": "2026-01-02T00:00:00Z"}, "to"),
        (
            {"function": "charge", "from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
            "to must be later than from",
        ),
        (
            {
                "function": "charge",
                "from": "2026-01-01T00:00:00Z",
                "to": "2026-01-02T00:00:00Z",
                "status": "completed",
            },
            "completed",
        ),
        (
            {
                "function": "charge",
                "from": "2026-01-01T00:00:00Z",
                "to": "2026-01-02T00:00:00Z",
                "status": "asleep",
            },
            "status",
        ),
    ],
)
async def test_bulk_cancel_refuses_bad_input(
    client: httpx.AsyncClient, body: dict[str, str], message: str
) -> None:
    response = await client.post("/runs/cancel", json=body)

    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]
