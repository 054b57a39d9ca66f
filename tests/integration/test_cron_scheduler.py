"""The cron scheduler against real PostgreSQL, with a clock the test drives: one run per
tick however many schedulers race, redeploys applied at once, catch-up after an outage,
overlap while the previous run goes on (with a real worker and host: every policy, and
catch_up "skip", fired by the worker's own cron_tick at the driven time), backfill.

`register_app` is what the gateway's RegisterApp calls; `cron.fire_due` is what every
worker's `cron_tick` job runs, here at the driven clock's time."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import pytest
import structlog

import reverb
from reverb import Context, cron
from reverb_function_host import Host
from reverb_function_host import start as start_host
from reverb_queue_worker import Worker
from reverb_queue_worker import start as start_worker
from reverb_store import control, jobs
from reverb_store import cron as scheduler
from reverb_store.control import AppDefinition, FunctionDefinition, HostLease, TriggerDefinition
from tests.e2e.processes import eventually
from tests.integration.test_worker_runs import add_host, host_settings, worker_settings

T0 = datetime(2030, 1, 7, 8, 59, 30, tzinfo=UTC)  # 30 s before 09:00 UTC
MINUTE = timedelta(minutes=1)
LEASE = HostLease("127.0.0.1:1", timedelta(seconds=30))


class DrivenClock:
    def __init__(self, now: datetime) -> None:
        self.time = now

    def now(self) -> datetime:
        return self.time


def definition(*triggers: TriggerDefinition, function_id: str = "report") -> AppDefinition:
    return AppDefinition("reports", (FunctionDefinition(function_id, function_id, 0, triggers),))


def tick(moment: datetime) -> datetime:
    return moment.replace(second=0)


async def runs_by_tick(connection: asyncpg.Connection) -> dict[str, int]:
    rows = await connection.fetch(
        "SELECT e.data->>'scheduled_at' AS tick, count(*) AS runs FROM reverb.runs r"
        " JOIN reverb.events e ON e.id = r.event_ids[1] GROUP BY 1 ORDER BY 1"
    )
    return {row["tick"]: row["runs"] for row in rows}


async def schedule_row(connection: asyncpg.Connection) -> asyncpg.Record:
    row = await connection.fetchrow("SELECT * FROM reverb.cron_schedules")
    assert row is not None
    return row


async def test_a_tick_starts_one_run_with_the_cron_event(connection: asyncpg.Connection) -> None:
    await control.register_app(
        connection,
        definition(TriggerDefinition(cron="0 9 * * *", timezone="Europe/Paris")),
        LEASE,
        T0,
    )
    nine_paris = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)  # next 09:00 Paris is 08:00 UTC tomorrow
    row = await schedule_row(connection)
    assert row["next_at"] == nine_paris + timedelta(days=1)
    # The registration queued a cron_tick job, due now, for the new schedule.
    assert await connection.fetchval(
        "SELECT count(*) FROM pgqueuer WHERE entrypoint = 'cron_tick' AND execute_after <= now()"
    )
    assert (await scheduler.fire_due(connection, T0)).runs == 0

    due = nine_paris + timedelta(days=1, milliseconds=30)
    fired = await scheduler.fire_due(connection, due)
    again = await scheduler.fire_due(connection, due)

    assert (fired.runs, again.runs) == (1, 0)
    run = await connection.fetchrow("SELECT * FROM reverb.runs")
    event = await connection.fetchrow("SELECT * FROM reverb.events")
    assert run is not None and event is not None
    assert event["id"] == "reverb-cron:report:2030-01-08T08:00:00Z" == run["event_ids"][0]
    assert (run["function_id"], run["status"], event["name"]) == ("report", "queued", "reverb/cron")
    assert orjson.loads(event["data"]) == {
        "cron": "0 9 * * *",
        "timezone": "Europe/Paris",
        "scheduled_at": "2030-01-08T08:00:00Z",
    }
    row = await schedule_row(connection)
    assert (row["last_at"], row["last_run_id"]) == (nine_paris + timedelta(days=1), run["id"])
    assert row["next_at"] == nine_paris + timedelta(days=2)


async def test_schedulers_racing_start_exactly_one_run_per_tick(database_url: str) -> None:
    connections = [await asyncpg.connect(database_url) for _ in range(4)]
    try:
        await control.register_app(
            connections[0], definition(TriggerDefinition(cron="* * * * *")), LEASE, T0
        )
        for minute in range(10):
            now = tick(T0) + MINUTE * (minute + 1) + timedelta(milliseconds=5)
            # Four workers fire at once, then again (a job retried, or taken over).
            for _ in range(2):
                await asyncio.gather(*(scheduler.fire_due(c, now) for c in connections))
        counts = await runs_by_tick(connections[0])
    finally:
        for connection in connections:
            await connection.close()
    expected = [(tick(T0) + MINUTE * n).strftime("%Y-%m-%dT%H:%M:00Z") for n in range(1, 11)]
    assert counts == dict.fromkeys(expected, 1)


async def test_a_redeploy_applies_at_once(connection: asyncpg.Connection) -> None:
    await control.register_app(
        connection, definition(TriggerDefinition(cron="0 * * * *")), LEASE, T0
    )
    hourly = await schedule_row(connection)
    later = T0 + timedelta(minutes=10)
    # Only a policy changed: the same schedule, its next tick kept.
    policy = TriggerDefinition(cron="0 * * * *", overlap="skip")
    await control.register_app(connection, definition(policy), LEASE, later)
    kept = await schedule_row(connection)
    assert (kept["id"], kept["next_at"], kept["overlap"]) == (
        hourly["id"],
        hourly["next_at"],
        "skip",
    )

    # A changed expression is a new schedule from its next tick after the redeploy.
    await control.register_app(
        connection, definition(TriggerDefinition(cron="*/5 * * * *")), LEASE, later
    )
    changed = await schedule_row(connection)
    assert changed["id"] != hourly["id"]
    assert changed["next_at"] == datetime(2030, 1, 7, 9, 10, tzinfo=UTC)
    await scheduler.fire_due(connection, datetime(2030, 1, 7, 9, 10, 1, tzinfo=UTC))
    assert await runs_by_tick(connection) == {"2030-01-07T09:10:00Z": 1}

    # A removed cron stops firing.
    await control.register_app(
        connection, definition(TriggerDefinition(event="report.requested")), LEASE, later
    )
    assert await connection.fetchval("SELECT count(*) FROM reverb.cron_schedules") == 0
    assert (await scheduler.fire_due(connection, T0 + timedelta(days=1))).schedules == 0


async def test_ticks_missed_while_down_are_caught_up_and_counted(
    connection: asyncpg.Connection,
) -> None:
    every = TriggerDefinition(cron="*/15 * * * *", catch_up="all")
    await control.register_app(connection, definition(every), LEASE, T0)
    # Every worker was down from 09:00 to 12:05: 13 ticks fell due.
    fired = await scheduler.fire_due(connection, datetime(2030, 1, 7, 12, 5, tzinfo=UTC))

    assert (fired.runs, fired.missed) == (4, 9)
    assert list(await runs_by_tick(connection)) == [
        "2030-01-07T11:15:00Z",
        "2030-01-07T11:30:00Z",
        "2030-01-07T11:45:00Z",
        "2030-01-07T12:00:00Z",
    ]
    row = await schedule_row(connection)
    assert (row["missed"], row["skipped"]) == (9, 0)
    assert row["next_at"] == datetime(2030, 1, 7, 12, 15, tzinfo=UTC)


async def test_a_backfill_runs_each_tick_once(connection: asyncpg.Connection) -> None:
    await control.register_app(
        connection, definition(TriggerDefinition(cron="0 * * * *")), LEASE, T0
    )
    await scheduler.fire_due(connection, datetime(2030, 1, 7, 9, 0, 1, tzinfo=UTC))
    # The fired tick's event exists: a backfill over it skips it.
    stored = await scheduler.backfill(
        connection,
        "report",
        datetime(2030, 1, 7, 6, 0, tzinfo=UTC),
        datetime(2030, 1, 7, 9, 0, tzinfo=UTC),
    )
    assert stored.event_ids == tuple(
        f"reverb-cron:report:2030-01-07T0{hour}:00:00Z" for hour in (6, 7, 8)
    )
    assert stored.already_run == 1
    jobs = await connection.fetch("SELECT payload FROM pgqueuer WHERE entrypoint = 'cron_fire'")
    assert [orjson.loads(job["payload"]) for job in jobs] == [
        {"function_id": "report", "event_ids": list(stored.event_ids)}
    ]
    with pytest.raises(scheduler.BackfillTooLarge):
        await scheduler.backfill(connection, "report", T0, T0 + timedelta(days=60))
    with pytest.raises(scheduler.NoSchedule, match="'nothing' is not registered"):
        await scheduler.trigger(connection, "nothing")


# Overlap needs runs that go on: a real worker and host, the host in this process.
app = reverb.App("held")
released: dict[str, asyncio.Event] = {}


async def hold(run_id: str) -> str:
    released.setdefault(run_id, asyncio.Event())
    await released[run_id].wait()
    return "done"


@app.function("held", trigger=cron("* * * * *"))
async def held(ctx: Context) -> str:
    return str(await ctx.step.run("hold", hold, ctx.run_id))


@pytest.fixture
async def host() -> AsyncIterator[Host]:
    running = await start_host(app, host_settings(), register_app=False)
    yield running
    await running.stop(0)


@pytest.fixture
async def worker(database_url: str, host: Host) -> AsyncIterator[tuple[Worker, DrivenClock]]:
    clock = DrivenClock(T0)
    running = await start_worker(worker_settings(database_url), clock=clock)
    yield running, clock
    await running.stop()


async def _register_held(
    connection: asyncpg.Connection, host: Host, overlap: str, catch_up: str = "latest"
) -> None:
    trigger = TriggerDefinition(
        cron="* * * * *",
        overlap=overlap,  # type: ignore[arg-type]
        catch_up=catch_up,  # type: ignore[arg-type]
    )
    await control.register_app(
        connection,
        AppDefinition("held", (FunctionDefinition("held", "held", 0, (trigger,)),)),
        LEASE,
        T0,
    )
    await connection.execute("DELETE FROM reverb.app_hosts WHERE app_id = 'held'")
    await add_host(connection, "held", f"127.0.0.1:{host.port}")


async def _holding(connection: asyncpg.Connection, count: int) -> list[str]:
    """The ids of the runs waiting in their step, once there are `count`."""

    async def started() -> bool:
        return len(released) >= count

    await eventually(started, within=15, what=f"{count} held runs")
    return list(released)


async def test_overlap_skip_records_the_tick_as_skipped(
    connection: asyncpg.Connection, host: Host, worker: tuple[Worker, DrivenClock]
) -> None:
    released.clear()
    await _register_held(connection, host, "skip")
    await scheduler.fire_due(connection, datetime(2030, 1, 7, 9, 0, 1, tzinfo=UTC))
    [first] = await _holding(connection, 1)
    fired = await scheduler.fire_due(connection, datetime(2030, 1, 7, 9, 1, 1, tzinfo=UTC))
    assert (fired.runs, fired.skipped) == (0, 1)
    assert (await schedule_row(connection))["skipped"] == 1

    released[first].set()
    await eventually(lambda: _ended(connection, first), within=15, what="the first run to complete")
    assert (
        await scheduler.fire_due(connection, datetime(2030, 1, 7, 9, 2, 1, tzinfo=UTC))
    ).runs == 1


async def test_overlap_buffer_one_starts_the_kept_tick_when_the_run_ends(
    connection: asyncpg.Connection, host: Host, worker: tuple[Worker, DrivenClock]
) -> None:
    released.clear()
    _, clock = worker
    await _register_held(connection, host, "buffer_one")
    await scheduler.fire_due(connection, datetime(2030, 1, 7, 9, 0, 1, tzinfo=UTC))
    [first] = await _holding(connection, 1)
    await scheduler.fire_due(connection, datetime(2030, 1, 7, 9, 1, 1, tzinfo=UTC))  # kept
    third = await scheduler.fire_due(connection, datetime(2030, 1, 7, 9, 2, 1, tzinfo=UTC))
    assert (third.runs, third.skipped) == (0, 1)
    row = await schedule_row(connection)
    assert row["buffered_at"] == datetime(2030, 1, 7, 9, 1, tzinfo=UTC)

    # The first run's end queues a cron_tick; the worker (at the driven time) starts
    # the kept tick's run: no poll.
    clock.time = datetime(2030, 1, 7, 9, 2, 30, tzinfo=UTC)
    released[first].set()
    [_, second] = await _holding(connection, 2)
    assert await runs_by_tick(connection) == {
        "2030-01-07T09:00:00Z": 1,
        "2030-01-07T09:01:00Z": 1,
    }
    row = await schedule_row(connection)
    assert (row["buffered_at"], row["last_run_id"]) == (None, second)
    released[second].set()


async def _ended(connection: asyncpg.Connection, run_id: str) -> bool:
    status = await connection.fetchval("SELECT status FROM reverb.runs WHERE id = $1", run_id)
    return status in ("completed", "failed", "cancelled")


async def test_overlap_cancel_previous_cancels_the_old_run_then_starts_the_new_one(
    connection: asyncpg.Connection, host: Host, worker: tuple[Worker, DrivenClock]
) -> None:
    released.clear()
    await _register_held(connection, host, "cancel_previous")
    await scheduler.fire_due(connection, datetime(2030, 1, 7, 9, 0, 1, tzinfo=UTC))
    [first] = await _holding(connection, 1)

    fired = await scheduler.fire_due(connection, datetime(2030, 1, 7, 9, 1, 1, tzinfo=UTC))

    # In the firing's transaction: the old run cancelled, the new tick's run started.
    assert (fired.runs, fired.cancelled, fired.skipped) == (1, 1, 0)
    old = await connection.fetchrow("SELECT status, error FROM reverb.runs WHERE id = $1", first)
    assert old is not None and old["status"] == "cancelled"
    assert orjson.loads(old["error"])["type"] == "RunCancelled"
    assert "cancel_previous" in orjson.loads(old["error"])["message"]
    assert await runs_by_tick(connection) == {
        "2030-01-07T09:00:00Z": 1,
        "2030-01-07T09:01:00Z": 1,
    }
    [_, second] = await _holding(connection, 2)
    row = await schedule_row(connection)
    assert (row["last_at"], row["last_run_id"], row["skipped"]) == (
        datetime(2030, 1, 7, 9, 1, tzinfo=UTC),
        second,
        0,
    )

    # The old run was in its step: the step finishes, the run stays cancelled, and its
    # job lets it go; the new run is untouched and completes.
    released[first].set()

    async def let_go() -> bool:
        row = await connection.fetchrow(
            "SELECT status, job_id FROM reverb.runs WHERE id = $1", first
        )
        return row is not None and row["job_id"] is None

    await eventually(let_go, within=15, what="the cancelled run's job to let it go")
    assert await connection.fetchval("SELECT status FROM reverb.runs WHERE id = $1", first) == (
        "cancelled"
    )
    released[second].set()
    await eventually(lambda: _ended(connection, second), within=15, what="the new run to end")
    assert await connection.fetchval("SELECT status FROM reverb.runs WHERE id = $1", second) == (
        "completed"
    )

    # A tick while nothing runs cancels nothing.
    third = await scheduler.fire_due(connection, datetime(2030, 1, 7, 9, 2, 1, tzinfo=UTC))
    assert (third.runs, third.cancelled) == (1, 0)
    [*_, last] = await _holding(connection, 3)
    released[last].set()


async def _worker_ticks_at(
    connection: asyncpg.Connection, clock: DrivenClock, now: datetime
) -> None:
    """The worker's next `cron_tick` job runs at `now` by its clock: queued now, as a
    run's end or a registration queues one (no wait for the timer)."""
    clock.time = now
    await jobs.enqueue(connection, [jobs.CronTick()])


async def test_overlap_allow_starts_the_next_run_while_the_previous_goes_on(
    connection: asyncpg.Connection, host: Host, worker: tuple[Worker, DrivenClock]
) -> None:
    released.clear()
    _, clock = worker
    await _register_held(connection, host, "allow")
    await _worker_ticks_at(connection, clock, datetime(2030, 1, 7, 9, 0, 1, tzinfo=UTC))
    [first] = await _holding(connection, 1)

    # 09:01 falls due while 09:00's run is still in its step: its run starts anyway.
    await _worker_ticks_at(connection, clock, datetime(2030, 1, 7, 9, 1, 1, tzinfo=UTC))
    [_, second] = await _holding(connection, 2)
    both = await connection.fetch(
        "SELECT id, status FROM reverb.runs WHERE id = ANY($1::text[]) ORDER BY id", [first, second]
    )
    assert {row["id"]: row["status"] for row in both} == {first: "running", second: "running"}
    assert await runs_by_tick(connection) == {
        "2030-01-07T09:00:00Z": 1,
        "2030-01-07T09:01:00Z": 1,
    }
    row = await schedule_row(connection)
    assert (row["last_run_id"], row["skipped"], row["missed"], row["buffered_at"]) == (
        second,
        0,
        0,
        None,
    )

    # Both go on to complete, the later one first: neither waits for the other.
    released[second].set()
    await eventually(lambda: _ended(connection, second), within=15, what="the second run's end")
    assert await connection.fetchval("SELECT status FROM reverb.runs WHERE id = $1", first) == (
        "running"
    )
    released[first].set()
    await eventually(lambda: _ended(connection, first), within=15, what="the first run's end")
    statuses = await connection.fetch("SELECT status FROM reverb.runs")
    assert [row["status"] for row in statuses] == ["completed", "completed"]


async def test_catch_up_skip_runs_none_of_the_ticks_missed_while_every_worker_was_down(
    connection: asyncpg.Connection, host: Host, worker: tuple[Worker, DrivenClock]
) -> None:
    released.clear()
    _, clock = worker
    with structlog.testing.capture_logs() as logs:
        await _register_held(connection, host, "allow", catch_up="skip")
        # No worker ran from 09:00 to 12:05:30: the first cron_tick after the outage
        # starts no run for the 186 ticks (09:00 … 12:05) that fell due meanwhile.
        await _worker_ticks_at(connection, clock, datetime(2030, 1, 7, 12, 5, 30, tzinfo=UTC))

        async def missed() -> bool:
            return bool((await schedule_row(connection))["missed"])

        await eventually(missed, within=15, what="the missed ticks to be counted")
    row = await schedule_row(connection)
    assert (row["missed"], row["skipped"], row["last_run_id"]) == (186, 0, None)
    assert row["next_at"] == datetime(2030, 1, 7, 12, 6, tzinfo=UTC)
    assert await runs_by_tick(connection) == {}
    assert [log for log in logs if log["event"] == "cron ticks missed"] == [
        {
            "event": "cron ticks missed",
            "log_level": "warning",
            "function_id": "held",
            "reason": "catch_up_skip",
            "missed": 186,
            "first": "2030-01-07T09:00:00Z",
            "latest": "2030-01-07T12:05:00Z",
        }
    ]

    # The schedule goes on from its next tick: 12:06's run starts and completes.
    await _worker_ticks_at(connection, clock, datetime(2030, 1, 7, 12, 6, 1, tzinfo=UTC))
    [run_id] = await _holding(connection, 1)
    released[run_id].set()
    await eventually(lambda: _ended(connection, run_id), within=15, what="12:06's run to end")
    assert await runs_by_tick(connection) == {"2030-01-07T12:06:00Z": 1}
    assert await connection.fetchval("SELECT status FROM reverb.runs WHERE id = $1", run_id) == (
        "completed"
    )
    assert (await schedule_row(connection))["missed"] == 186
