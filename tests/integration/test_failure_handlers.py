"""`on_failure=handler` and the `reverb/function.failed` event: a real gateway (the host
registers through it), two workers, a real host and PostgreSQL."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

import reverb
from reverb import Context, event
from reverb_function_host import start as start_host
from reverb_ingress_gateway import Gateway
from reverb_queue_worker import start as start_worker
from tests.e2e.processes import eventually
from tests.integration.test_worker_runs import host_settings, worker_settings

app = reverb.App("failure-tests")


async def notify_support(ctx: Context) -> dict[str, Any]:
    return {"event": ctx.event.name, "data": ctx.event.data}


@app.function("charge", trigger=event("failures.charge"), retries=1, on_failure=notify_support)
async def charge(ctx: Context) -> None:
    raise ValueError(f"card {ctx.event.data['card']} declined")


@app.function("charge-ok", trigger=event("failures.ok"), on_failure=notify_support)
async def charge_ok(ctx: Context) -> str:
    return "charged"


async def broken_handler(ctx: Context) -> None:
    raise RuntimeError("the pager is down too")


@app.function("fragile", trigger=event("failures.fragile"), retries=0, on_failure=broken_handler)
async def fragile(ctx: Context) -> None:
    raise reverb.NonRetriableError("fragile broke")


@app.function("alert-everyone", trigger=event("reverb/function.failed"), retries=0)
async def alert_everyone(ctx: Context) -> str:
    return f"{ctx.event.data['function_id']}: {ctx.event.data['error']['type']}"


@dataclass
class Mesh:
    connection: asyncpg.Connection
    client: httpx.AsyncClient

    async def send(self, name: str, data: dict[str, Any]) -> str:
        response = await self.client.post("/events", json={"name": name, "data": data})
        assert response.status_code == 202, response.text
        return str(response.json()["ids"][0])

    async def ended_runs(self, function_id: str, count: int = 1) -> list[dict[str, Any]]:
        """The function's runs once `count` of them ended, oldest first."""

        async def ended() -> bool:
            found = await self.connection.fetchval(
                "SELECT count(*) FROM reverb.runs WHERE function_id = $1"
                " AND status IN ('completed', 'failed')",
                function_id,
            )
            return bool(found >= count)

        await eventually(ended, within=20, what=f"{count} ended run(s) of {function_id}")
        listed = await self.client.get("/runs", params={"function": function_id})
        return list(reversed(listed.json()["runs"]))

    async def failure_events(self) -> list[dict[str, Any]]:
        listed = await self.client.get("/events", params={"name": "reverb/function.failed"})
        return list(reversed(listed.json()["events"]))


@pytest.fixture
async def mesh(
    database_url: str, connection: asyncpg.Connection, gateway: Gateway
) -> AsyncIterator[Mesh]:
    host = await start_host(app, host_settings(ingress_address=f"127.0.0.1:{gateway.grpc_port}"))
    await asyncio.wait_for(host.registered.wait(), timeout=10)
    workers = [await start_worker(worker_settings(database_url)) for _ in range(2)]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        yield Mesh(connection, client)
    for worker in workers:
        await worker.stop()
    await host.stop(0)


async def test_the_handler_runs_on_the_failure_event(mesh: Mesh) -> None:
    event_id = await mesh.send("failures.charge", {"card": "4242"})

    [failed] = await mesh.ended_runs("charge")
    [handled] = await mesh.ended_runs("charge-failure")

    assert (failed["status"], failed["attempt"]) == ("failed", 1)
    [announced] = await mesh.failure_events()
    assert handled["event_ids"] == [announced["id"]]
    assert handled["status"] == "completed", handled
    output = handled["output"]
    assert output["event"] == "reverb/function.failed"
    data = output["data"]
    assert (data["function_id"], data["run_id"]) == ("charge", failed["id"])
    assert data["event"]["id"] == event_id
    assert data["event"]["name"] == "failures.charge"
    assert data["event"]["data"] == {"card": "4242"}
    assert data["event"]["ts"].endswith("Z")
    error = data["error"]
    assert (error["type"], error["message"]) == ("ValueError", "card 4242 declined")
    assert "raise ValueError" in error["stack"]
    # The event is an ordinary one: GET /events/{id} shows the runs it started.
    shown = (await mesh.client.get(f"/events/{announced['id']}")).json()
    assert {run["function_id"] for run in shown["runs"]} == {"charge-failure", "alert-everyone"}


async def test_any_function_may_listen_for_every_failure(mesh: Mesh) -> None:
    await mesh.send("failures.charge", {"card": "1"})
    await mesh.send("failures.fragile", {})

    alerts = await mesh.ended_runs("alert-everyone", count=2)

    assert sorted(alert["output"] for alert in alerts) == [
        "charge: ValueError",
        "fragile: NonRetriableError",
    ]


async def test_a_failing_handler_announces_nothing_more(mesh: Mesh) -> None:
    await mesh.send("failures.fragile", {})

    [handler_run] = await mesh.ended_runs("fragile-failure")
    [alert] = await mesh.ended_runs("alert-everyone")

    assert handler_run["status"] == "failed"
    assert handler_run["error"]["message"] == "the pager is down too"
    assert alert["output"] == "fragile: NonRetriableError"
    # One announcement: the handler's own failure (and the alert's, had it failed) is not.
    assert [event["data"]["function_id"] for event in await mesh.failure_events()] == ["fragile"]


async def test_a_completed_run_announces_nothing(mesh: Mesh) -> None:
    await mesh.send("failures.ok", {})
    await mesh.send("failures.charge", {"card": "2"})

    [completed] = await mesh.ended_runs("charge-ok")
    await mesh.ended_runs("charge-failure")

    assert completed["status"] == "completed"
    announced = await mesh.failure_events()
    assert [event["data"]["function_id"] for event in announced] == ["charge"]
    runs = (await mesh.client.get("/runs", params={"function": "charge-ok-failure"})).json()
    assert runs["runs"] == []


async def test_the_handler_is_registered_as_a_function_without_triggers(mesh: Mesh) -> None:
    listed = (await mesh.client.get("/functions")).json()["functions"]
    by_id = {function["id"]: function for function in listed}

    assert by_id["charge"]["on_failure"] == "charge-failure"
    assert by_id["charge-failure"]["triggers"] == []
    assert by_id["charge-failure"]["name"] == "charge (on failure)"
    assert by_id["charge-failure"]["retries"] == 1
    assert by_id["alert-everyone"]["on_failure"] == ""
