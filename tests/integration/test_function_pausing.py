"""Pausing a function: its events start no runs (recorded as skipped), its runs in flight
stop at their next step boundary as `paused` and go on when it is resumed, and a resume
may start the runs it skipped. Two real workers, a real host, PostgreSQL."""

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest

import reverb
from reverb import Context, event
from reverb_function_host import Host
from reverb_function_host import start as start_host
from reverb_store import execution, jobs
from reverb_store.ids import FunctionId
from tests.e2e.processes import eventually
from tests.integration.step_gates import StepGate
from tests.integration.test_worker_runs import host_settings
from tests.integration.two_workers import Two, two_workers

app = reverb.App("pause-tests")
gate = StepGate()
executed = gate.executed


async def blocking(run_id: str) -> str:
    await gate.hold(run_id, "first")
    return "first"


def second(run_id: str) -> str:
    executed[f"{run_id}:second"] += 1
    return "second"


@app.function("two-steps", trigger=event("pause.two-steps"))
async def two_steps(ctx: Context) -> list[str]:
    first = await ctx.step.run("first", blocking, ctx.run_id)
    return [first, await ctx.step.run("second", second, ctx.run_id)]


@app.function("counted", trigger=event("pause.counted"))
async def counted(ctx: Context) -> int:
    return int(await ctx.step.run("count", lambda: ctx.event.data["n"]))


@app.function("bystander", trigger=event("pause.counted"))
async def bystander(ctx: Context) -> str:
    return "not paused"


@app.function("napper", trigger=event("pause.napper"))
async def napper(ctx: Context) -> str:
    await ctx.step.run("before", lambda: "before")
    await ctx.step.sleep("nap", "1h")
    return "woke"


@pytest.fixture(scope="module")
async def host() -> AsyncIterator[Host]:
    running = await start_host(app, host_settings(), register_app=False)
    yield running
    await running.stop(0)


@pytest.fixture
async def two(database_url: str, connection: asyncpg.Connection, host: Host) -> AsyncIterator[Two]:
    async with two_workers(database_url, connection, app, host) as mesh:
        yield mesh


async def _fanned_out(connection: asyncpg.Connection) -> None:
    """Until no fan-out job is left."""

    async def none_left() -> bool:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM pgqueuer WHERE entrypoint = 'process_event'"
        )
        return count == 0

    await eventually(none_left, within=15, what="the fan-outs to finish")


async def _skips(connection: asyncpg.Connection, event_id: str) -> list[tuple[str, str]]:
    rows = await connection.fetch(
        "SELECT function_id, reason FROM reverb.event_skips WHERE event_id = $1", event_id
    )
    return [(row["function_id"], row["reason"]) for row in rows]


async def _status_is(connection: asyncpg.Connection, run_id: str, status: str) -> None:
    async def reached() -> bool:
        row = await connection.fetchrow(
            "SELECT status, job_id FROM reverb.runs WHERE id = $1", run_id
        )
        return row is not None and row["status"] == status and row["job_id"] is None

    await eventually(reached, within=15, what=f"run {run_id} to be {status}")


async def test_a_paused_function_starts_no_runs_and_the_event_says_why(two: Two) -> None:
    assert await execution.pause_function(two.connection, FunctionId("counted")) is not None

    event_id = await two.mesh.send("pause.counted", {"n": 1})
    bystander_run = await two.mesh.finished(event_id, "bystander")
    await _fanned_out(two.connection)

    assert bystander_run["status"] == "completed"
    assert await two.mesh.run_of(event_id, "counted") is None
    assert await _skips(two.connection, event_id) == [("counted", "paused")]


async def test_a_run_in_flight_stops_at_its_next_step_boundary_and_goes_on_when_resumed(
    two: Two,
) -> None:
    for _ in range(4):
        event_id = await two.mesh.send("pause.two-steps", {})
        run_id = await two.run_id(event_id, "two-steps")
        await asyncio.wait_for(gate.entered(run_id).wait(), 10)

        await execution.pause_function(two.connection, FunctionId("two-steps"))
        gate.released(run_id).set()
        await _status_is(two.connection, run_id, "paused")

        steps = await two.mesh.steps(run_id)
        assert [(s["id"], s["status"]) for s in steps] == [("first", "completed")]
        assert executed[f"{run_id}:second"] == 0

        resumed = await execution.resume_function(two.connection, FunctionId("two-steps"))
        assert resumed is not None and resumed.runs == 1
        finished = await two.mesh.finished(event_id, "two-steps")
        assert orjson.loads(finished["output"]) == ["first", "second"]
        assert (executed[f"{run_id}:first"], executed[f"{run_id}:second"]) == (1, 1)


async def test_a_sleeping_run_is_parked_when_it_wakes_and_sleeps_on_after_resume(
    two: Two,
) -> None:
    event_id = await two.mesh.send("pause.napper", {})

    async def sleeping() -> bool:
        run = await two.mesh.run_of(event_id, "napper")
        return run is not None and run["status"] == "sleeping"

    await eventually(sleeping, within=10, what="the run to sleep")
    run = await two.mesh.run_of(event_id, "napper")
    assert run is not None
    await execution.pause_function(two.connection, FunctionId("napper"))

    # A wake-up due now (as the sleep's own will be when it comes due).
    await jobs.enqueue(two.connection, [jobs.AdvanceRun(run["id"], None)])
    await _status_is(two.connection, run["id"], "paused")

    await execution.resume_function(two.connection, FunctionId("napper"))
    await eventually(sleeping, within=10, what="the run to sleep again")


async def test_resume_may_start_the_runs_skipped_while_paused(two: Two) -> None:
    function = FunctionId("counted")
    before = await two.mesh.send("pause.counted", {"n": 0})
    await two.mesh.finished(before, "counted")
    await execution.pause_function(two.connection, function)
    skipped = [await two.mesh.send("pause.counted", {"n": n}) for n in range(1, 4)]
    for event_id in skipped:
        await two.mesh.finished(event_id, "bystander")
    await _fanned_out(two.connection)

    resumed = await execution.resume_function(two.connection, function, replay_skipped=True)

    assert resumed is not None and (resumed.runs, resumed.replayed) == (0, 3)
    for n, event_id in enumerate(skipped, start=1):
        run = await two.mesh.finished(event_id, "counted")
        assert orjson.loads(run["output"]) == n
        assert await _skips(two.connection, event_id) == []
    again = await execution.resume_function(two.connection, function, replay_skipped=True)
    assert again is not None and (again.paused_at, again.runs, again.replayed) == (None, 0, 0)


async def test_pause_racing_fan_outs_leaves_each_event_a_run_or_a_skip(two: Two) -> None:
    """Repeated: events fan out while the function is paused and resumed under them. Every
    (event, function) pair ends with exactly one of a run and a skip, and every run ends."""
    function = FunctionId("counted")
    sent: list[str] = []
    for round_ in range(6):
        batch = [two.mesh.send("pause.counted", {"n": round_ * 10 + n}) for n in range(8)]
        toggled = (
            execution.pause_function(two.connection, function)
            if round_ % 2 == 0
            else execution.resume_function(two.connection, function)
        )
        # One connection runs one statement at a time: interleave them on it.
        for future in [*batch[:4], toggled, *batch[4:]]:
            result = await future
            if isinstance(result, str):
                sent.append(result)
    await execution.resume_function(two.connection, function)
    await _fanned_out(two.connection)

    for event_id in sent:
        run = await two.mesh.run_of(event_id, "counted")
        skips = await _skips(two.connection, event_id)
        assert (run is None) != (skips == []), (event_id, run, skips)
        if run is not None:
            finished = await two.mesh.finished(event_id, "counted")
            assert finished["status"] == "completed"
    paused_left: int = await two.connection.fetchval(
        "SELECT count(*) FROM reverb.runs WHERE function_id = 'counted' AND status = 'paused'"
    )
    assert paused_left == 0
