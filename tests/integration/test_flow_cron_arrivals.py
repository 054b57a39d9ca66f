"""Cron ticks go through the arrival options as events do (issue 11: one admission path):
a singleton cron function skips a tick while its run goes on, and an idempotency key
computed from the tick's event dedupes ticks. A real worker with the flow gates (its
cron_tick at a time the test drives) and a real host, on real PostgreSQL."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from reverb_function_host import Host
from reverb_function_host import start as start_host
from reverb_queue_worker import Worker
from reverb_queue_worker import start as start_worker
from reverb_store import control, jobs
from reverb_store.control import AppDefinition, FunctionDefinition, HostLease, TriggerDefinition
from reverb_store.flow.gates import flow_gates
from reverb_store.flow.options import FlowOptions, SingletonOptions
from tests.e2e.processes import eventually
from tests.integration.test_cron_scheduler import DrivenClock, app, released
from tests.integration.test_worker_runs import add_host, host_settings, worker_settings

T0 = datetime(2030, 1, 7, 8, 59, 30, tzinfo=UTC)
LEASE = HostLease("127.0.0.1:1", timedelta(seconds=30))


@pytest.fixture
async def host() -> AsyncIterator[Host]:
    # The scheduler tests' app: its function "held" waits in its step until released.
    running = await start_host(app, host_settings(), register_app=False)
    yield running
    await running.stop(0)


@pytest.fixture
async def worker(database_url: str, host: Host) -> AsyncIterator[tuple[Worker, DrivenClock]]:
    clock = DrivenClock(T0)
    running = await start_worker(worker_settings(database_url), flow_gates(), clock=clock)
    yield running, clock
    await running.stop()


async def _register(connection: asyncpg.Connection, host: Host, flow: FlowOptions) -> None:
    # overlap "allow": the schedule's own overlap policy lets every tick start a run, so
    # what is skipped is skipped by the function's flow options.
    trigger = TriggerDefinition(cron="* * * * *", overlap="allow")
    function = FunctionDefinition("held", "held", 0, (trigger,), flow=flow)
    await control.register_app(connection, AppDefinition("held", (function,)), LEASE, T0)
    await connection.execute("DELETE FROM reverb.app_hosts WHERE app_id = 'held'")
    await add_host(connection, "held", f"127.0.0.1:{host.port}")


async def _tick_at(connection: asyncpg.Connection, clock: DrivenClock, now: datetime) -> None:
    """The worker's cron_tick runs at `now` by its clock."""
    clock.time = now
    await jobs.enqueue(connection, [jobs.CronTick()])


async def _runs(connection: asyncpg.Connection) -> list[asyncpg.Record]:
    return await connection.fetch(
        "SELECT r.id, r.status, r.error->>'type' AS error, e.data->>'scheduled_at' AS tick,"
        " e.id AS event_id FROM reverb.runs r JOIN reverb.events e ON e.id = r.event_ids[1]"
        " WHERE r.function_id = 'held' ORDER BY tick"
    )


async def test_a_singleton_cron_function_skips_a_tick_while_its_run_goes_on(
    connection: asyncpg.Connection, host: Host, worker: tuple[Worker, DrivenClock]
) -> None:
    released.clear()
    _, clock = worker
    await _register(connection, host, FlowOptions(singleton=SingletonOptions(mode="skip")))
    await _tick_at(connection, clock, datetime(2030, 1, 7, 9, 0, 1, tzinfo=UTC))

    async def holding() -> bool:
        return len(released) == 1

    await eventually(holding, within=15, what="the first tick's run in its step")
    [first] = released
    await _tick_at(connection, clock, datetime(2030, 1, 7, 9, 1, 1, tzinfo=UTC))

    async def second_skipped() -> bool:
        runs = await _runs(connection)
        return len(runs) == 2 and runs[1]["status"] == "cancelled"

    await eventually(second_skipped, within=15, what="the second tick's run skipped")
    runs = await _runs(connection)
    assert [(run["tick"], run["status"], run["error"]) for run in runs] == [
        ("2030-01-07T09:00:00Z", "running", None),
        ("2030-01-07T09:01:00Z", "cancelled", "RunSkipped"),
    ]
    # The tick's event lists the skip, as an event's would.
    skips = await connection.fetch(
        "SELECT function_id, reason FROM reverb.event_skips WHERE event_id = $1",
        runs[1]["event_id"],
    )
    assert [(row["function_id"], row["reason"]) for row in skips] == [("held", "singleton")]
    assert len(released) == 1  # the skipped run never ran its step

    released[first].set()

    async def first_done() -> bool:
        return bool((await _runs(connection))[0]["status"] == "completed")

    await eventually(first_done, within=15, what="the first run to complete")
    # Once it ended, the next tick runs.
    await _tick_at(connection, clock, datetime(2030, 1, 7, 9, 2, 1, tzinfo=UTC))

    async def third_holding() -> bool:
        return len(released) == 2

    await eventually(third_holding, within=15, what="the third tick's run in its step")
    for event in released.values():
        event.set()


async def test_an_idempotency_key_of_the_tick_dedupes_cron_runs(
    connection: asyncpg.Connection, host: Host, worker: tuple[Worker, DrivenClock]
) -> None:
    released.clear()
    _, clock = worker
    # Every tick has the same key (its event's name): one run per 24 hours.
    flow = FlowOptions(idempotency="event.name")
    await _register(connection, host, flow)
    for minute in (0, 1):
        await _tick_at(connection, clock, datetime(2030, 1, 7, 9, minute, 1, tzinfo=UTC))

        async def fired(minute: int = minute) -> bool:
            row = await connection.fetchrow("SELECT next_at FROM reverb.cron_schedules")
            assert row is not None
            return bool(row["next_at"] == datetime(2030, 1, 7, 9, minute + 1, tzinfo=UTC))

        await eventually(fired, within=15, what=f"the 09:0{minute} tick fired")
    runs = await _runs(connection)
    assert [run["tick"] for run in runs] == ["2030-01-07T09:00:00Z"]
    skips = await connection.fetch(
        "SELECT e.data->>'scheduled_at' AS tick, s.reason FROM reverb.event_skips s"
        " JOIN reverb.events e ON e.id = s.event_id WHERE s.function_id = 'held'"
    )
    assert [(row["tick"], row["reason"]) for row in skips] == [
        ("2030-01-07T09:01:00Z", "idempotent")
    ]
    await eventually(lambda: _one_holding(), within=15, what="the run in its step")
    for event in released.values():
        event.set()


async def _one_holding() -> bool:
    return len(released) == 1
