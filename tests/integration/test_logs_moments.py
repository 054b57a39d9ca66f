"""Every notable moment of a run becomes a log document with its ids (PostgreSQL sink):
a real worker and host drive the runs; the documents are read back from reverb.logs."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

import reverb
from reverb import Context, NonRetriableError, event
from reverb_function_host import Host
from reverb_function_host import start as start_host
from reverb_queue_worker import start as start_worker
from reverb_store.logs import LogQuery, LogViews, PostgresLogs
from tests.e2e.processes import eventually
from tests.integration.test_worker_hosts import dead_address, send
from tests.integration.test_worker_runs import Mesh, host_settings, register, worker_settings

app = reverb.App("logs-moments")
tries: dict[str, int] = {}


def flaky(run_id: str) -> str:
    tries[run_id] = tries.get(run_id, 0) + 1
    if tries[run_id] < 2:
        raise ConnectionError("try again")
    return "worked"


def refuse() -> None:
    raise NonRetriableError("card declined")


@app.function("journey", trigger=event("logs.journey"), retries=2)
async def journey(ctx: Context) -> str:
    await ctx.step.run("first", lambda: 1)
    await ctx.step.run("flaky", flaky, ctx.run_id)
    await ctx.step.sleep("nap", "10ms")
    await ctx.step.send_event("notify", "logs.notified", {"ok": True})
    return "done"


@app.function("doomed", trigger=event("logs.doomed"), retries=2)
async def doomed(ctx: Context) -> None:
    await ctx.step.run("charge", refuse)


@pytest.fixture(scope="module")
async def host() -> AsyncIterator[Host]:
    running = await start_host(app, host_settings(), register_app=False)
    yield running
    await running.stop(0)


@pytest.fixture
async def mesh(
    database_url: str, connection: asyncpg.Connection, host: Host
) -> AsyncIterator[Mesh]:
    await register(connection, app, f"127.0.0.1:{host.port}")
    worker = await start_worker(worker_settings(database_url))
    yield Mesh(connection, worker, host)
    await worker.stop()


async def documents_of(mesh: Mesh, pool: asyncpg.Pool, run_id: str) -> list[dict[str, Any]]:
    async with asyncio.timeout(10):
        await mesh.worker.services.logs.flush()
    views = LogViews(PostgresLogs(pool), pool, derive_steps=True)
    found = await views.find(LogQuery(limit=100, run_id=run_id))
    return [document.to_json() for document in found]


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    opened = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    yield opened
    await opened.close()


async def test_a_run_logs_each_moment_with_its_ids_in_order(mesh: Mesh, pool: asyncpg.Pool) -> None:
    event_id = await mesh.send("logs.journey", {})
    run = await mesh.finished(event_id, "journey")
    assert run["status"] == "completed"

    documents = await documents_of(mesh, pool, run["id"])

    moments = [(d["kind"], d["meta"]["step_id"]) for d in documents]
    assert moments == [
        ("run.started", None),
        ("step.completed", "first"),
        ("retry.scheduled", "flaky"),
        ("wait.resolved", None),
        ("step.completed", "flaky"),
        ("sleep.started", "nap"),
        ("wait.resolved", None),
        ("event.sent", "notify"),
        ("run.completed", None),
    ]
    for document in documents:
        assert document["meta"]["run_id"] == run["id"]
        assert document["meta"]["function_id"] == "journey"
        assert document["meta"]["event_id"] == event_id
        assert document["meta"]["event_name"] == "logs.journey"
    retry = documents[2]
    assert retry["level"] == "warning"
    assert retry["meta"]["error"]["type"] == "ConnectionError"
    assert retry["meta"]["error"]["message"] == "try again"
    timestamps = [d["timestamp"] for d in documents]
    assert timestamps == sorted(timestamps)


async def test_a_run_failing_for_good_is_failed_and_dead_lettered(
    mesh: Mesh, pool: asyncpg.Pool
) -> None:
    event_id = await mesh.send("logs.doomed", {})
    run = await mesh.finished(event_id, "doomed")
    assert run["status"] == "failed"

    documents = await documents_of(mesh, pool, run["id"])

    kinds = [d["kind"] for d in documents]
    assert kinds == ["run.started", "step.failed", "run.failed", "run.dead_lettered"]
    assert {d["level"] for d in documents[1:]} == {"error"}
    assert documents[-1]["meta"]["error"]["type"] == "StepError"


async def test_an_event_received_is_logged_with_the_runs_it_triggered(
    mesh: Mesh, pool: asyncpg.Pool
) -> None:
    event_id = await mesh.send("logs.doomed", {})
    await mesh.finished(event_id, "doomed")
    async with asyncio.timeout(10):
        await mesh.worker.services.logs.flush()

    found = await PostgresLogs(pool).find(LogQuery(limit=100, kinds=("event.received",)))

    (received,) = [d.to_json() for d in found if d.event_id == event_id]
    assert received["meta"]["event_name"] == "logs.doomed"
    assert received["message"] == "event received, 1 run triggered"


async def test_a_host_that_cannot_be_reached_is_logged_with_the_run_it_held_back(
    database_url: str, connection: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await register(connection, app, dead_address())
    worker = await start_worker(worker_settings(database_url))
    try:
        event_id = await send(connection, "logs.doomed", {})
        found: list[dict[str, Any]] = []

        async def logged() -> bool:
            await worker.services.logs.flush()
            query = LogQuery(limit=10, kinds=("host.unreachable",))
            found[:] = [document.to_json() for document in await PostgresLogs(pool).find(query)]
            return bool(found)

        await eventually(logged, what="host.unreachable in the logs")
    finally:
        await worker.stop()
    unreachable = found[0]
    assert unreachable["level"] == "warning"
    assert unreachable["message"].startswith("host unreachable, run released: ")
    assert unreachable["meta"]["event_id"] == event_id
    assert unreachable["meta"]["event_name"] == "logs.doomed"
    assert unreachable["meta"]["function_id"] == "doomed"
    run_id = unreachable["meta"]["run_id"]
    status = await connection.fetchval("SELECT status FROM reverb.runs WHERE id = $1", run_id)
    assert status in ("queued", "running")
