"""`ctx.logger` lines as log documents, end to end on both sinks: a real host streams them
to a real worker over the Invoke stream, the worker writes them to the sink (PostgreSQL or
MongoDB on nx-27017), and a real gateway shows them through the logs API with the run's,
the step's and the attempt's ids; a replayed invocation does not write them again; levels
filter; a flood is bounded by the writer's buffer, its drops counted in the worker's
Prometheus metrics."""

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

import reverb
from reverb import Context, event
from reverb._logger import NULL_LOGGER
from reverb.execution import LOG_MESSAGE_LIMIT
from reverb_function_host import Host
from reverb_function_host import start as start_host
from reverb_ingress_gateway import GatewaySettings
from reverb_ingress_gateway import start as start_gateway
from reverb_queue_worker import Worker
from reverb_queue_worker import start as start_worker
from tests.integration.test_worker_runs import Mesh, host_settings, register, worker_settings

pytestmark = pytest.mark.timeout(60)

app = reverb.App("user-logs")
tries: dict[str, int] = {}


async def charge(ctx: Context, amount: int) -> int:
    tries[ctx.run_id] = tries.get(ctx.run_id, 0) + 1
    ctx.logger.info("charging", amount=amount, try_number=tries[ctx.run_id])
    if tries[ctx.run_id] < 2:
        ctx.logger.warning("card network busy")
        raise ConnectionError("try again")
    return amount


def receipt(ctx: Context) -> str:
    ctx.logger.info("receipt sent")  # a sync step: logged from its thread
    return "sent"


@app.function("order", trigger=event("user-logs.order"), retries=2)
async def order(ctx: Context) -> str:
    ctx.logger.info("order received", order=ctx.event.data["order"])
    await ctx.step.run("charge", charge, ctx, 3)
    ctx.logger.debug("charged")
    await ctx.step.sleep("cool-off", "10ms")
    await ctx.step.run("receipt", receipt, ctx)
    ctx.logger.error("done, loudly")
    return "done"


@app.function("flood", trigger=event("user-logs.flood"), retries=0)
async def flood(ctx: Context) -> int:
    for number in range(int(ctx.event.data["lines"])):
        ctx.logger.info("line", number=number)
    ctx.logger.info("x" * (LOG_MESSAGE_LIMIT * 4))
    after: int = await ctx.step.run("after", lambda: 1)
    return after


@app.function("logger-kind", trigger=event("user-logs.logger-kind"), retries=0)
async def logger_kind(ctx: Context) -> str:
    ctx.logger.info("sent, or not")
    return "records nothing" if ctx.logger is NULL_LOGGER else "sends its lines"


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


def user_lines(body: dict[str, Any]) -> list[dict[str, Any]]:
    documents = [next(iter(item.values())) for item in body["logs"]]
    return [document for document in documents if document["kind"] == "user"]


async def test_logger_lines_are_documents_with_their_ids_written_once(
    engine: tuple[Mesh, httpx.AsyncClient],
) -> None:
    mesh, client = engine
    event_id = await mesh.send("user-logs.order", {"order": 7})
    run = await mesh.finished(event_id, "order")
    assert run["status"] == "completed"
    assert run["invocations"] >= 3  # the retry's backoff and the sleep each resumed it
    async with asyncio.timeout(10):
        await mesh.worker.services.logs.flush()

    response = await client.get(f"/logs/functions/{run['id']}", params={"limit": 100})
    assert response.status_code == 200, response.text
    lines = user_lines(response.json())

    # Each line once, in order, though the function replayed "order received" and
    # "charged" over its memo twice (after the retry's backoff and after the sleep).
    assert [(d["level"], d["message"], d["meta"]["step_id"]) for d in lines] == [
        ("info", "order received", None),
        ("info", "charging", "charge"),
        ("warning", "card network busy", "charge"),
        ("info", "charging", "charge"),
        ("debug", "charged", None),
        ("info", "receipt sent", "receipt"),
        ("error", "done, loudly", None),
    ]
    first, *_ = lines
    assert first["fields"] == {"order": 7}
    assert [d["fields"] for d in lines[1:4]] == [
        {"amount": 3, "try_number": 1},
        {},  # no fields
        {"amount": 3, "try_number": 2},
    ]
    # The step's attempt (its failures before), the run's at function level.
    assert [d["meta"]["attempt"] for d in lines] == [0, 0, 0, 1, 0, 0, 0]
    trace_id = run["traceparent"][3:35] if run["traceparent"] else None
    for document in lines:
        meta = document["meta"]
        assert (meta["run_id"], meta["function_id"]) == (run["id"], "order")
        assert (meta["event_id"], meta["event_name"]) == (event_id, "user-logs.order")
        assert document["trace_id"] == trace_id
        assert len(document["id"]) == 16

    # The stream of every log shows them too, filtered by level (and above).
    warned = (await client.get("/logs", params={"run": run["id"], "level": "warning"})).json()
    assert [(d["message"]) for d in user_lines(warned)] == ["card network busy", "done, loudly"]
    errors = (await client.get("/logs/errors")).json()
    assert "done, loudly" in [d["message"] for d in user_lines(errors)]


async def test_a_flood_of_lines_is_bounded_and_its_drops_counted(
    database_url: str, connection: asyncpg.Connection, host: Host
) -> None:
    """The writer keeps at most REVERB_LOG_BUFFER_SIZE lines while they wait for the sink:
    the rest are dropped and counted (reverb_log_sink_dropped_total), the written ones
    counted too, the backlog read at each scrape; the run is not slowed or failed by it.
    A message longer than a line keeps is cut."""
    await register(connection, app, f"127.0.0.1:{host.port}")
    settings = worker_settings(database_url).model_copy(
        update={"log_buffer_size": 100, "metrics_address": "127.0.0.1:0"}
    )
    worker = await start_worker(settings)
    try:
        mesh = Mesh(connection, worker, host)
        event_id = await mesh.send("user-logs.flood", {"lines": 2_000})
        run = await mesh.finished(event_id, "flood")
        assert run["status"] == "completed"
        async with asyncio.timeout(10):
            await worker.services.logs.flush()
        samples = await scrape(worker)

        stored = await connection.fetch(
            "SELECT message FROM reverb.logs WHERE run_id = $1 AND kind = 'user'", run["id"]
        )
        logs = worker.services.logs
        assert 0 < len(stored) <= 100 < 2_001
        assert logs.dropped >= 2_001 - 100
        assert samples["reverb_log_sink_dropped_total"] == logs.dropped
        assert samples["reverb_log_sink_written_total"] == logs.written >= len(stored)
        assert samples["reverb_log_sink_backlog"] == 0
        assert all(len(row["message"]) <= LOG_MESSAGE_LIMIT for row in stored)
    finally:
        await worker.stop()


async def scrape(worker: Worker) -> dict[str, float]:
    assert worker.metrics_server is not None
    async with httpx.AsyncClient() as client:
        response = await client.get(worker.metrics_server.url)
    assert response.status_code == 200
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name.startswith("reverb_log_sink")
    }


@pytest.mark.parametrize("sink", ["none", "postgres"])
async def test_with_the_sink_off_the_host_is_asked_for_no_lines(
    database_url: str, connection: asyncpg.Connection, host: Host, sink: str
) -> None:
    """A worker that keeps no lines (REVERB_LOG_SINK=none) says so in every Start: the
    host's ctx.logger then records nothing, instead of sending lines to be dropped."""
    await register(connection, app, f"127.0.0.1:{host.port}")
    worker = await start_worker(worker_settings(database_url).model_copy(update={"log_sink": sink}))
    try:
        mesh = Mesh(connection, worker, host)
        run = await mesh.finished(await mesh.send("user-logs.logger-kind", {}), "logger-kind")
        async with asyncio.timeout(10):
            await worker.services.logs.flush()
        stored = await connection.fetchval(
            "SELECT count(*) FROM reverb.logs WHERE run_id = $1 AND kind = 'user'", run["id"]
        )
    finally:
        await worker.stop()
    assert run["status"] == "completed"
    if sink == "none":
        assert (orjson.loads(run["output"]), stored) == ("records nothing", 0)
    else:
        assert (orjson.loads(run["output"]), stored) == ("sends its lines", 1)
