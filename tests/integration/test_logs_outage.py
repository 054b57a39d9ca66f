"""A log sink outage never blocks, slows or fails a run: documents wait in a bounded buffer,
and what does not fit is dropped and counted. The sink is a MongoDB URL where nothing
listens (a real refused connection)."""

import socket
from collections.abc import AsyncIterator

import asyncpg
import pytest
from pydantic import SecretStr

import reverb
from reverb import Context, event
from reverb_function_host import Host
from reverb_function_host import start as start_host
from reverb_queue_worker import start as start_worker
from tests.integration.test_worker_runs import Mesh, host_settings, register, worker_settings

app = reverb.App("logs-outage")


@app.function("steady", trigger=event("outage.steady"), retries=0)
async def steady(ctx: Context) -> int:
    for index in range(5):
        await ctx.step.sleep(f"nap-{index}", "1ms")
    return 5


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
async def host() -> AsyncIterator[Host]:
    running = await start_host(app, host_settings(), register_app=False)
    yield running
    await running.stop(0)


async def test_runs_complete_while_the_sink_is_down_and_drops_are_counted(
    database_url: str, connection: asyncpg.Connection, host: Host
) -> None:
    await register(connection, app, f"127.0.0.1:{host.port}")
    settings = worker_settings(database_url).model_copy(
        update={
            "log_sink": "mongodb",
            "mongodb_url": SecretStr(f"mongodb://127.0.0.1:{closed_port()}/?connectTimeoutMS=200"),
            "log_buffer_size": 4,
        }
    )
    worker = await start_worker(settings)
    try:
        mesh = Mesh(connection, worker, host)
        runs = [await mesh.send("outage.steady", {}) for _ in range(3)]
        for event_id in runs:
            run = await mesh.finished(event_id, "steady", within=30)
            assert run["status"] == "completed"
        logs = worker.services.logs
        # Each run records started, five sleeps, five resumes and completed: far more
        # than four; none was written, four wait for the sink, the rest were dropped.
        assert logs.written == 0
        assert logs.backlog == 4
        assert logs.dropped >= 3 * 12 + 3 - 4
    finally:
        await worker.stop()
