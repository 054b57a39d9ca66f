"""The logs API over real runs, on both sinks: a real worker writes the documents to the
sink, a real gateway answers /logs/functions, /logs/events/{id} and /logs/functions/{run_id}
from the sink and reverb.runs; the OpenAPI document lists every logs route behind a key
with the `read` scope."""

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

import reverb
from reverb import Context, NonRetriableError, event
from reverb_function_host import Host
from reverb_function_host import start as start_host
from reverb_ingress_gateway import GatewaySettings
from reverb_ingress_gateway import start as start_gateway
from reverb_queue_worker import start as start_worker
from tests.e2e.processes import eventually
from tests.integration.test_worker_runs import Mesh, host_settings, register, worker_settings

app = reverb.App("logs-api-runs")


def decline() -> None:
    raise NonRetriableError("card declined")


@app.function("greet", trigger=event("api.order"), retries=0)
async def greet(ctx: Context) -> str:
    await ctx.step.run("hello", lambda: "hi")
    await ctx.step.run("bye", lambda: "bye")
    return "done"


@app.function("charge", trigger=event("api.order"), retries=0)
async def charge(ctx: Context) -> None:
    await ctx.step.run("card", decline)


@app.function("nap", trigger=event("api.nap"), retries=0)
async def nap(ctx: Context) -> str:
    await ctx.step.run("before", lambda: "before")
    await ctx.step.sleep("nap", "1h")
    return "woke"


LOG_ROUTES = (
    "/logs",
    "/logs/events",
    "/logs/events/{event_id}",
    "/logs/functions",
    "/logs/functions/{run_id}",
    "/logs/errors",
    "/logs/dead-letter",
)


@pytest.fixture(scope="module")
async def host() -> AsyncIterator[Host]:
    running = await start_host(app, host_settings(), register_app=False)
    yield running
    await running.stop(0)


@pytest.fixture(params=["postgres", "mongodb"])
def sink_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "postgres":
        return {}
    url = request.getfixturevalue("mongodb_url")
    return {
        "log_sink": "mongodb",
        "mongodb_url": SecretStr(url),
        "mongodb_database": "reverb_tests",
        "mongodb_collection": f"logs_{secrets.token_hex(6)}",
    }


@pytest.fixture
async def engine(
    database_url: str,
    connection: asyncpg.Connection,
    host: Host,
    sink_settings: dict[str, Any],
) -> AsyncIterator[tuple[Mesh, httpx.AsyncClient]]:
    await register(connection, app, f"127.0.0.1:{host.port}")
    worker = await start_worker(worker_settings(database_url).model_copy(update=sink_settings))
    gateway = await start_gateway(
        GatewaySettings(
            database_url=database_url,
            http_address="127.0.0.1:0",
            ingress_address="127.0.0.1:0",
            dev=True,
        ).model_copy(update=sink_settings)
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        yield Mesh(connection, worker, host), client
    await gateway.stop()
    await worker.stop()


async def test_runs_summaries_and_a_runs_logs_in_order(
    engine: tuple[Mesh, httpx.AsyncClient],
) -> None:
    mesh, client = engine
    event_id = await mesh.send("api.order", {"id": 7})
    greeted = await mesh.finished(event_id, "greet")
    charged = await mesh.finished(event_id, "charge")
    async with asyncio.timeout(10):
        await mesh.worker.services.logs.flush()

    runs = (await client.get(f"/logs/events/{event_id}")).json()
    summaries = {item["function"]["function_id"]: item for item in runs["logs"]}
    assert summaries["greet"]["function"]["status"] == "completed"
    assert summaries["charge"]["function"]["status"] == "failed"
    assert summaries["greet"]["function"]["run_id"] == greeted["id"]
    assert summaries["greet"]["links"]["logs"] == f"/logs/functions/{greeted['id']}"
    assert runs["links"]["self"] == f"/logs/events/{event_id}?page=1&limit=50"

    listed = (await client.get("/logs/functions", params={"id": "charge"})).json()
    assert [item["function"]["run_id"] for item in listed["logs"]] == [charged["id"]]
    assert set(listed["logs"][0]["function"]) == {
        "run_id",
        "function_id",
        "status",
        "invoked",
        "last_update",
    }
    named = (await client.get("/logs/functions", params={"name": "greet"})).json()
    assert [item["function"]["run_id"] for item in named["logs"]] == [greeted["id"]]

    own = (await client.get(f"/logs/functions/{greeted['id']}")).json()
    kinds = [
        (item["function"]["kind"], item["function"]["meta"]["step_id"]) for item in own["logs"]
    ]
    assert kinds == [
        ("run.started", None),
        ("step.completed", "hello"),
        ("step.completed", "bye"),
        ("run.completed", None),
    ]
    paged = await client.get(f"/logs/functions/{greeted['id']}", params={"limit": 3, "page": 2})
    assert [item["function"]["kind"] for item in paged.json()["logs"]] == ["run.completed"]

    failed = (await client.get(f"/logs/functions/{charged['id']}")).json()
    assert [next(iter(item)) for item in failed["logs"]] == ["function", "error", "error", "error"]
    dead = (await client.get("/logs/dead-letter", params={"type": "function"})).json()
    assert [item["error"]["meta"]["run_id"] for item in dead["logs"]] == [charged["id"]]
    received = (await client.get("/logs/events", params={"name": "api.order"})).json()
    assert [item["event"]["meta"]["event_id"] for item in received["logs"]] == [event_id]


async def test_a_cancelled_run_logs_its_cancellation(
    engine: tuple[Mesh, httpx.AsyncClient],
) -> None:
    """Cancelled through the API while it sleeps (no process drives it): its logs end with
    `run.cancelled`, a warning with the RunCancelled error, on /logs/functions/{run_id} and
    on /logs?run=…&level=warning."""
    mesh, client = engine
    event_id = await mesh.send("api.nap", {})

    async def sleeping() -> bool:
        run = await mesh.run_of(event_id, "nap")
        return run is not None and run["status"] == "sleeping"

    await eventually(sleeping, what="the run to sleep")
    run = await mesh.run_of(event_id, "nap")
    assert run is not None
    response = await client.post(f"/runs/{run['id']}/cancel", json={})
    assert response.status_code == 200, response.text
    async with asyncio.timeout(10):
        await mesh.worker.services.logs.flush()

    own = (await client.get(f"/logs/functions/{run['id']}")).json()
    kinds = [item["function"]["kind"] for item in own["logs"]]
    assert kinds == ["run.started", "step.completed", "sleep.started", "run.cancelled"]
    (cancelled,) = [item["function"] for item in own["logs"][-1:]]
    assert cancelled["level"] == "warning"
    assert cancelled["message"] == "run cancelled: the run was cancelled"
    assert cancelled["meta"]["run_id"] == run["id"]
    assert cancelled["meta"]["function_id"] == "nap"
    assert cancelled["meta"]["event_id"] == event_id
    assert cancelled["meta"]["event_name"] == "api.nap"
    assert cancelled["meta"]["error"]["type"] == "RunCancelled"
    assert cancelled["trace_id"] == own["logs"][0]["function"]["trace_id"]
    again = (await client.get(f"/logs/functions/{run['id']}")).json()
    assert again["logs"][-1]["function"]["id"] == cancelled["id"]

    warnings = (await client.get("/logs", params={"run": run["id"], "level": "warning"})).json()
    assert [item["function"]["kind"] for item in warnings["logs"]] == ["run.cancelled"]


async def test_the_openapi_document_lists_the_logs_routes_behind_the_read_scope(
    engine: tuple[Mesh, httpx.AsyncClient],
) -> None:
    _, client = engine
    document = (await client.get("/openapi.json")).json()
    for path in LOG_ROUTES:
        operation = document["paths"][path]["get"]
        assert operation["x-reverb-scope"] == "read", path
        assert operation["security"] == [{"apiKey": ["read"]}], path
        assert "400" in operation["responses"], path
    names = {p["name"] for p in document["paths"]["/logs"]["get"]["parameters"]}
    assert {"cursor", "startTime", "endTime", "limit"} <= names
    names = {p["name"] for p in document["paths"]["/logs/dead-letter"]["get"]["parameters"]}
    assert {"type", "page", "limit", "startTime", "endTime"} <= names
