"""POST /functions/{id}/schedule/trigger and /schedule/backfill over a real socket: the
ticks' events, their runs started by a real worker and host, ticks already run skipped,
and every refusal a 4xx."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import orjson
import pytest

import reverb
from reverb import Context, cron, event
from reverb_function_host import Host
from reverb_function_host import start as start_host
from reverb_ingress_gateway import Gateway
from reverb_queue_worker import Worker
from reverb_queue_worker import start as start_worker
from reverb_store import cron as scheduler
from reverb_store.control import (
    AppDefinition,
    FunctionDefinition,
    HostLease,
    TriggerDefinition,
    register_app,
)
from tests.e2e.processes import eventually
from tests.integration.test_worker_runs import add_host, host_settings, worker_settings

app = reverb.App("reports")


@app.function("hourly", trigger=cron("0 * * * *", tz="Europe/Paris"))
async def hourly(ctx: Context) -> str:
    return str(ctx.event.data["scheduled_at"])


@app.function("on-demand", trigger=event("report.requested"))
async def on_demand(ctx: Context) -> None:
    return None


DEFINITION = AppDefinition(
    "reports",
    (
        FunctionDefinition(
            "hourly", "hourly", 0, (TriggerDefinition(cron="0 * * * *", timezone="Europe/Paris"),)
        ),
        FunctionDefinition(
            "on-demand", "on-demand", 0, (TriggerDefinition(event="report.requested"),)
        ),
    ),
)


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        yield client


@pytest.fixture
async def mesh(database_url: str, connection: asyncpg.Connection) -> AsyncIterator[Worker]:
    host: Host = await start_host(app, host_settings(), register_app=False)
    await register_app(connection, DEFINITION, HostLease("127.0.0.1:1", timedelta(seconds=30)))
    await connection.execute("DELETE FROM reverb.app_hosts")
    await add_host(connection, "reports", f"127.0.0.1:{host.port}")
    worker = await start_worker(worker_settings(database_url))
    yield worker
    await worker.stop()
    await host.stop(0)


async def outputs(connection: asyncpg.Connection, count: int) -> list[str]:
    """The completed runs' outputs (their ticks), once there are `count`."""

    async def done() -> bool:
        found = await connection.fetchval(
            "SELECT count(*) FROM reverb.runs WHERE status = 'completed'"
        )
        return bool(found == count)

    await eventually(done, within=20, what=f"{count} completed runs")
    rows = await connection.fetch("SELECT output FROM reverb.runs ORDER BY output")
    return [orjson.loads(row["output"]) for row in rows]


async def test_trigger_fires_a_tick_now(
    client: httpx.AsyncClient, connection: asyncpg.Connection, mesh: Worker
) -> None:
    before = datetime.now(UTC)
    response = await client.post("/functions/hourly/schedule/trigger")

    assert response.status_code == 202
    [event_id] = response.json()["ids"]
    assert event_id.startswith("reverb-cron:hourly:")
    stored = await connection.fetchrow(
        "SELECT name, data FROM reverb.events WHERE id = $1", event_id
    )
    assert stored is not None and stored["name"] == "reverb/cron"
    data = orjson.loads(stored["data"])
    assert (data["cron"], data["timezone"]) == ("0 * * * *", "Europe/Paris")
    scheduled = datetime.fromisoformat(data["scheduled_at"])
    assert before - timedelta(seconds=1) <= scheduled <= datetime.now(UTC)
    assert await outputs(connection, 1) == [data["scheduled_at"]]


async def test_backfill_runs_each_tick_once_and_skips_ticks_already_run(
    client: httpx.AsyncClient, connection: asyncpg.Connection, mesh: Worker
) -> None:
    # 10:00 to 12:00 in Paris (CET) on 5 January: three ticks.
    body = {"from": "2026-01-05T09:00:00Z", "to": "2026-01-05T11:00:00Z"}
    first = await client.post("/functions/hourly/schedule/backfill", json=body)
    assert first.status_code == 202
    ticks = ["2026-01-05T09:00:00Z", "2026-01-05T10:00:00Z", "2026-01-05T11:00:00Z"]
    assert first.json() == {
        "ids": [f"reverb-cron:hourly:{tick}" for tick in ticks],
        "already_run": 0,
    }
    assert await outputs(connection, 3) == ticks

    wider = {"from": "2026-01-05T08:30:00Z", "to": "2026-01-05T12:00:00Z"}
    second = await client.post("/functions/hourly/schedule/backfill", json=wider)
    assert second.json() == {"ids": ["reverb-cron:hourly:2026-01-05T12:00:00Z"], "already_run": 3}
    assert await outputs(connection, 4) == [*ticks, "2026-01-05T12:00:00Z"]


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/functions/nothing/schedule/trigger", None, 404, "not_found"),
        ("/functions/on-demand/schedule/trigger", None, 409, "failed_precondition"),
        ("/functions/nothing/schedule/backfill", {"from": 0, "to": 1}, 404, "not_found"),
        ("/functions/hourly/schedule/backfill", {"from": "2026-01-05T09:00:00Z"}, 400, None),
        (
            "/functions/hourly/schedule/backfill",
            {"from": "2026-01-05T09:00:00Z", "to": "2026-01-05T08:00:00Z"},
            400,
            "invalid_argument",
        ),
        (
            "/functions/hourly/schedule/backfill",
            {"from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
            400,
            "invalid_argument",
        ),
        ("/functions/hourly/schedule/backfill", {"from": "soon", "to": 1}, 400, None),
    ],
)
async def test_refusals_are_4xx(
    client: httpx.AsyncClient,
    connection: asyncpg.Connection,
    path: str,
    body: object,
    status: int,
    code: str | None,
) -> None:
    await register_app(connection, DEFINITION, HostLease("127.0.0.1:1", timedelta(seconds=30)))
    response = await client.post(path, json=body) if body is not None else await client.post(path)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code


async def test_missed_ticks_are_counted_in_get_functions(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    """Every worker down for three hours: the catch-up (`latest`) runs one tick, and the
    two it does not run are counted where a user looks, GET /functions."""
    await register_app(connection, DEFINITION, HostLease("127.0.0.1:1", timedelta(seconds=30)))
    [before] = [
        t
        for f in (await client.get("/functions")).json()["functions"]
        for t in f["triggers"]
        if "cron" in t
    ]
    next_at = datetime.fromisoformat(before["next_at"])
    assert (before["missed"], before["skipped"], before["last_at"]) == (0, 0, None)

    back = next_at + timedelta(hours=2, minutes=30)
    fired = await scheduler.fire_due(connection, back)

    assert (fired.runs, fired.missed) == (1, 2)
    [after] = [
        t
        for f in (await client.get("/functions")).json()["functions"]
        for t in f["triggers"]
        if "cron" in t
    ]
    assert (after["missed"], after["skipped"]) == (2, 0)
    assert datetime.fromisoformat(after["last_at"]) == next_at + timedelta(hours=2)
    assert datetime.fromisoformat(after["next_at"]) == next_at + timedelta(hours=3)
