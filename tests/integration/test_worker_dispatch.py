"""How runs reach a worker: a fan-out drives the runs it has room for itself, and a worker
wakes the runs it put to sleep without polling. A real host, worker and PostgreSQL."""

from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import orjson
import pytest

from reverb_function_host import Host
from reverb_function_host import start as start_host
from reverb_queue_worker import WorkerSettings
from reverb_queue_worker import start as start_worker
from tests.e2e.processes import eventually
from tests.integration.test_worker_runs import Mesh, app, host_settings, register, worker_settings


@pytest.fixture(scope="module")
async def host() -> AsyncIterator[Host]:
    running = await start_host(app, host_settings(), register_app=False)
    yield running
    await running.stop(0)


@pytest.fixture
async def registered(connection: asyncpg.Connection, host: Host) -> asyncpg.Connection:
    await register(connection, app, f"127.0.0.1:{host.port}")
    return connection


def never_polling(database_url: str) -> WorkerSettings:
    """Worker settings under which no poll comes within a test's time."""
    hour = timedelta(hours=1)
    return worker_settings(database_url).model_copy(
        update={"worker_poll_interval": hour, "worker_heartbeat_timeout": hour}
    )


async def test_a_fan_out_starts_the_runs_it_creates_in_the_same_transaction(
    database_url: str, registered: asyncpg.Connection, host: Host
) -> None:
    worker = await start_worker(worker_settings(database_url))
    mesh = Mesh(registered, worker, host)

    async def queue_empty() -> bool:
        left: int = await registered.fetchval("SELECT count(*) FROM pgqueuer")
        return left == 0

    try:
        event_id = await mesh.send("test.three", {"n": 1})
        run = await mesh.finished(event_id, "three-steps")
        await eventually(queue_empty, what="the jobs to be gone")
    finally:
        await worker.stop()
    assert (run["status"], orjson.loads(run["output"])) == ("completed", 6)
    # Claimed in the transaction that created it: no trip through the queue.
    assert run["started_at"] == run["created_at"]
    assert run["invocations"] == 1


async def test_a_fan_out_wider_than_the_worker_runs_the_rest_through_the_queue(
    database_url: str, registered: asyncpg.Connection, host: Host
) -> None:
    # Room for two jobs: the fan-out job itself and one run; the other run is queued.
    settings = worker_settings(database_url).model_copy(update={"worker_concurrency": 2})
    worker = await start_worker(settings)
    mesh = Mesh(registered, worker, host)
    try:
        event_id = await mesh.send("test.fan-out", {"n": 4})
        a = await mesh.finished(event_id, "fan-a")
        b = await mesh.finished(event_id, "fan-b")
    finally:
        await worker.stop()
    assert [orjson.loads(run["output"]) for run in (a, b)] == ["a got 4", "b got 4"]
    started_at_creation = [run["started_at"] == run["created_at"] for run in (a, b)]
    assert sorted(started_at_creation) == [False, True]


async def test_a_worker_wakes_the_runs_it_put_to_sleep_without_polling(
    database_url: str, registered: asyncpg.Connection, host: Host
) -> None:
    # No poll would come within the test's time: only the worker's own timer can wake the run.
    settings = never_polling(database_url)
    worker = await start_worker(settings)
    mesh = Mesh(registered, worker, host)
    try:
        event_id = await mesh.send("test.naps", {})
        run = await mesh.finished(event_id, "naps", within=20)
    finally:
        await worker.stop()
    assert (run["status"], orjson.loads(run["output"])) == ("completed", "before-after")
    assert run["invocations"] == 2


async def test_a_worker_wakes_runs_another_worker_put_to_sleep_without_polling(
    database_url: str, registered: asyncpg.Connection, host: Host
) -> None:
    # The first worker stops while the run sleeps. The second never polls within the
    # test; it never scheduled the wake-up either: its one timer is armed from the
    # queue's next due time, read when it starts.
    settings = never_polling(database_url)
    first = await start_worker(settings)
    mesh = Mesh(registered, first, host)
    try:
        event_id = await mesh.send("test.naps", {})

        async def sleeping() -> bool:
            run = await mesh.run_of(event_id, "naps")
            return run is not None and run["status"] == "sleeping"

        await eventually(sleeping, within=10, what="the run to sleep")
    finally:
        await first.stop()
    second = await start_worker(settings)
    try:
        run = await Mesh(registered, second, host).finished(event_id, "naps", within=20)
    finally:
        await second.stop()
    assert (run["status"], orjson.loads(run["output"])) == ("completed", "before-after")
    assert run["invocations"] == 2


async def test_a_worker_starts_a_retried_runs_next_attempt_without_polling(
    database_url: str, registered: asyncpg.Connection, host: Host
) -> None:
    # The retry is a delayed job that the failed attempt's transition schedules: the
    # worker hears of it there, and only its timer can start the next attempt in time.
    worker = await start_worker(never_polling(database_url))
    mesh = Mesh(registered, worker, host)
    try:
        event_id = await mesh.send("test.retries-run", {})
        run = await mesh.finished(event_id, "retries-run", within=20)
    finally:
        await worker.stop()
    assert (run["status"], orjson.loads(run["output"]), run["attempt"]) == ("completed", 1, 1)
