"""Cron runs and webhook runs replay like any other (POST /runs/{id}/replay and the bulk
form): a real gateway with a webhook source, two workers, a real host and PostgreSQL.
The cron tick is fired by the scheduler at a time the test chooses (`cron.fire_due`, what
every worker's `cron_tick` job runs)."""

import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from pydantic import SecretStr

import reverb
from reverb import Context, cron, event
from reverb_function_host import Host
from reverb_function_host import start as start_host
from reverb_ingress_gateway import GatewaySettings, start
from reverb_ingress_gateway.webhooks import WebhookSource
from reverb_queue_worker import start as start_worker
from reverb_store import control
from reverb_store import cron as scheduler
from reverb_store.control import AppDefinition, FunctionDefinition, HostLease, TriggerDefinition
from tests.e2e.processes import eventually
from tests.integration.test_worker_runs import add_host, host_settings, worker_settings

app = reverb.App("replay-sources")
SECRET = "replay-webhook-secret"
T0 = datetime(2030, 1, 7, 8, 59, 30, tzinfo=UTC)


@app.function("nightly", trigger=cron("0 9 * * *"))
async def nightly(ctx: Context) -> dict[str, Any]:
    stamp = await ctx.step.run("stamp", lambda: ctx.run_id)
    return {"event": ctx.event.id, "scheduled_at": ctx.event.data["scheduled_at"], "by": stamp}


@app.function("on-push", trigger=event("github.push"))
async def on_push(ctx: Context) -> dict[str, Any]:
    stamp = await ctx.step.run("stamp", lambda: ctx.run_id)
    return {
        "delivery": ctx.event.data["delivery_id"],
        "ref": ctx.event.data["webhook"]["ref"],
        "by": stamp,
    }


@pytest.fixture
async def client(
    database_url: str, connection: asyncpg.Connection
) -> AsyncIterator[httpx.AsyncClient]:
    host: Host = await start_host(app, host_settings(), register_app=False)
    await control.register_app(
        connection,
        AppDefinition(
            app.id,
            (
                FunctionDefinition("nightly", "nightly", 0, (TriggerDefinition(cron="0 9 * * *"),)),
                FunctionDefinition(
                    "on-push", "on-push", 0, (TriggerDefinition(event="github.push"),)
                ),
            ),
        ),
        HostLease("127.0.0.1:1", timedelta(seconds=30)),
        T0,
    )
    await connection.execute("DELETE FROM reverb.app_hosts WHERE app_id = $1", app.id)
    await add_host(connection, app.id, f"127.0.0.1:{host.port}")
    source = WebhookSource(preset="github", secret=SecretStr(SECRET), event="github.{type}")
    gateway = await start(
        GatewaySettings(
            database_url=database_url,
            http_address="127.0.0.1:0",
            ingress_address="127.0.0.1:0",
            dev=True,
            log_json=False,
            database_pool_size=4,
            webhooks={"gh": source},
        )
    )
    workers = [await start_worker(worker_settings(database_url)) for _ in range(2)]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
            yield client
    finally:
        for worker in workers:
            await worker.stop()
        await gateway.stop()
        await host.stop(0)


async def _ended(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    async def done() -> bool:
        shown = (await client.get(f"/runs/{run_id}")).json()
        return shown["status"] in ("completed", "failed")

    await eventually(done, within=20, what=f"run {run_id} to end")
    return dict((await client.get(f"/runs/{run_id}")).json())


async def _only_run(client: httpx.AsyncClient, function_id: str) -> dict[str, Any]:
    async def created() -> bool:
        listed = (await client.get("/runs", params={"function": function_id})).json()
        return len(listed["runs"]) == 1

    await eventually(created, within=20, what=f"a run of {function_id}")
    [run] = (await client.get("/runs", params={"function": function_id})).json()["runs"]
    return await _ended(client, run["id"])


async def test_a_cron_run_replays_on_its_tick(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    await scheduler.fire_due(connection, datetime(2030, 1, 7, 9, 0, 1, tzinfo=UTC))
    original = await _only_run(client, "nightly")
    assert original["status"] == "completed"

    answer = await client.post(f"/runs/{original['id']}/replay")
    assert answer.status_code == 202, answer.text
    replay = await _ended(client, answer.json()["run_id"])

    assert replay["status"] == "completed"
    assert replay["replay_of"] == original["id"]
    assert replay["event_ids"] == original["event_ids"]
    assert replay["event_ids"][0].startswith("reverb-cron:nightly:")
    assert replay["output"]["scheduled_at"] == original["output"]["scheduled_at"]
    assert replay["output"]["by"] == replay["id"]  # its steps ran again
    # A replay is no tick: the schedule fired one run for it, and still one.
    ticks = await connection.fetchval(
        "SELECT count(*) FROM reverb.runs WHERE function_id = 'nightly' AND replay_of IS NULL"
    )
    assert ticks == 1


async def test_a_webhook_run_replays_on_its_delivery(client: httpx.AsyncClient) -> None:
    body = orjson.dumps({"ref": "refs/heads/main"})
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    answer = await client.post(
        "/webhooks/gh",
        content=body,
        headers={
            "content-type": "application/json",
            "x-github-event": "push",
            "x-github-delivery": "delivery-7",
            "x-hub-signature-256": signature,
        },
    )
    assert answer.status_code == 202, answer.text
    original = await _only_run(client, "on-push")
    assert original["output"]["delivery"] == "delivery-7"

    forked = await client.post(f"/runs/{original['id']}/replay", json={"from_step": "stamp"})
    assert forked.status_code == 202, forked.text
    replay = await _ended(client, forked.json()["run_id"])

    assert (replay["status"], replay["replay_of"]) == ("completed", original["id"])
    assert replay["event_ids"] == original["event_ids"]
    assert replay["output"] == {
        "delivery": "delivery-7",
        "ref": "refs/heads/main",
        "by": replay["id"],
    }
    # The bulk form takes webhook runs as it takes any: both completed runs, the
    # original and its replay, replay on the delivery's event.
    bulk = await client.post("/runs/replay", json={"function": "on-push", "status": "completed"})
    assert bulk.status_code == 202, bulk.text
    assert bulk.json()["count"] == 2
    for run_id in bulk.json()["run_ids"]:
        again = await _ended(client, run_id)
        assert (again["status"], again["event_ids"]) == ("completed", original["event_ids"])
        assert again["output"]["delivery"] == "delivery-7"
