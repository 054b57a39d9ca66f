"""A webhook as large as GitHub sends (25 MiB) reaches a function run: gateway, store,
worker and host carry it (gRPC's default limit is 4 MiB), verified by the github preset."""

import hashlib
import hmac
from collections.abc import AsyncIterator

import asyncpg
import httpx
import orjson
import pytest
from pydantic import SecretStr

import reverb
from reverb import Context, event
from reverb_function_host import Host
from reverb_function_host import start as start_host
from reverb_ingress_gateway import GatewaySettings, start
from reverb_ingress_gateway.webhooks import WebhookSource
from reverb_queue_worker import start as start_worker
from tests.integration.test_worker_hosts import wait_status
from tests.integration.test_worker_runs import host_settings, register, worker_settings

app = reverb.App("webhook-run-tests")
SECRET = "large-webhook-secret"
MEBIBYTE = 1024 * 1024


@app.function("measure-push", trigger=event("github.push"))
async def measure_push(ctx: Context) -> dict[str, object]:
    data = ctx.event.data
    return {
        "source": data["source"],
        "event": data["headers"]["x-github-event"],
        "delivery": data["delivery_id"],
        "blob": len(data["webhook"]["blob"]),
    }


@pytest.fixture
async def host() -> AsyncIterator[Host]:
    running = await start_host(app, host_settings(), register_app=False)
    yield running
    await running.stop(0)


async def test_a_25_mib_webhook_reaches_its_function(
    database_url: str, connection: asyncpg.Connection, host: Host
) -> None:
    await register(connection, app, f"127.0.0.1:{host.port}")
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
    worker = await start_worker(worker_settings(database_url))
    blob = "x" * (25 * MEBIBYTE - 64)
    body = orjson.dumps({"blob": blob})
    assert 24 * MEBIBYTE < len(body) <= 25 * MEBIBYTE
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": "big-1",
        "x-hub-signature-256": signature,
    }
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{gateway.http_port}", timeout=60
        ) as client:
            answer = await client.post("/webhooks/gh", content=body, headers=headers)
            assert answer.status_code == 202, answer.text
            [event_id] = answer.json()["ids"]
            run = await wait_status(connection, event_id, "completed", within=60)
    finally:
        await worker.stop()
        await gateway.stop()
    assert orjson.loads(run["output"]) == {
        "source": "gh",
        "event": "push",
        "delivery": "big-1",
        "blob": len(blob),
    }
