"""Cancelling runs: at once when nothing drives them, at the next step boundary when a step
runs, with the runs they invoked; races with a running step and with completion, with two
real workers, a real function host and PostgreSQL."""

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import pytest

import reverb
from reverb import Context, StepError, event
from reverb_function_host import Host
from reverb_function_host import start as start_host
from reverb_store import execution, jobs
from reverb_store.ids import FunctionId, RunId
from tests.e2e.processes import eventually
from tests.integration.step_gates import StepGate
from tests.integration.test_worker_runs import host_settings
from tests.integration.two_workers import Two, two_workers

app = reverb.App("cancel-tests")
gate = StepGate()
executed = gate.executed


async def blocking(run_id: str) -> str:
    await gate.hold(run_id, "first")
    return "first done"


def second(run_id: str) -> str:
    executed[f"{run_id}:second"] += 1
    return "second done"


@app.function("two-steps", trigger=event("test.two-steps"))
async def two_steps(ctx: Context) -> str:
    await ctx.step.run("first", blocking, ctx.run_id)
    return str(await ctx.step.run("second", second, ctx.run_id))


async def quick(run_id: str, n: int) -> int:
    executed[f"{run_id}:quick"] += 1
    await asyncio.sleep(0)
    return n


@app.function("quick-steps", trigger=event("test.quick"))
async def quick_steps(ctx: Context) -> int:
    total = 0
    for n in range(3):
        total += await ctx.step.run("quick", quick, ctx.run_id, n)
    return total


@app.function("sleeper", trigger=event("test.sleeper"))
async def sleeper(ctx: Context) -> str:
    await ctx.step.run("before", lambda: "before")
    await ctx.step.sleep("nap", "1h")
    executed[f"{ctx.run_id}:after"] += 1
    return "woke"


@app.function("child-sleeper", trigger=event("test.never"))
async def child_sleeper(ctx: Context) -> str:
    await ctx.step.sleep("nap", "1h")
    return "child woke"


@app.function("invoker", trigger=event("test.invoker"))
async def invoker(ctx: Context) -> dict[str, str]:
    try:
        await ctx.step.invoke("call", "child-sleeper", {}, timeout="2h")
    except StepError as error:
        return {"child": error.error_type}
    return {"child": "returned"}


@pytest.fixture(scope="module")
async def host() -> AsyncIterator[Host]:
    running = await start_host(app, host_settings(), register_app=False)
    yield running
    await running.stop(0)


@pytest.fixture
async def two(database_url: str, connection: asyncpg.Connection, host: Host) -> AsyncIterator[Two]:
    async with two_workers(database_url, connection, app, host) as mesh:
        yield mesh


async def _status(connection: asyncpg.Connection, run_id: str) -> asyncpg.Record:
    row = await connection.fetchrow(
        "SELECT status, job_id, error FROM reverb.runs WHERE id = $1", run_id
    )
    assert row is not None
    return row


async def _let_go(connection: asyncpg.Connection, run_id: str) -> None:
    """Until no job drives the run (a cancelled run's job let it go)."""

    async def idle() -> bool:
        return (await _status(connection, run_id))["job_id"] is None

    await eventually(idle, within=10, what="the run's job to let it go")


async def _no_jobs_left(connection: asyncpg.Connection, run_id: str) -> bool:
    count: int = await connection.fetchval(
        "SELECT count(*) FROM pgqueuer WHERE entrypoint IN ('advance_run', 'wake_run')"
        " AND convert_from(payload, 'UTF8')::jsonb ->> 'run_id' = $1 AND status = 'picked'",
        run_id,
    )
    return count == 0


async def test_a_running_run_stops_at_its_next_step_boundary(two: Two) -> None:
    """Repeated: the step running when the cancel commits finishes and its output is
    committed; the next step never starts; the job lets the run go."""
    for _ in range(8):
        event_id = await two.mesh.send("test.two-steps", {})
        run_id = await two.run_id(event_id, "two-steps")
        await asyncio.wait_for(gate.entered(run_id).wait(), 10)

        previous = await execution.cancel_run(two.connection, RunId(run_id))

        assert previous == "running"
        cancelled = await _status(two.connection, run_id)
        assert cancelled["status"] == "cancelled"
        assert orjson.loads(cancelled["error"])["type"] == "RunCancelled"
        gate.released(run_id).set()
        await _let_go(two.connection, run_id)
        steps = await two.mesh.steps(run_id)
        assert [(s["id"], s["status"], orjson.loads(s["output"])) for s in steps] == [
            ("first", "completed", "first done")
        ]
        assert executed[f"{run_id}:second"] == 0
        assert (await _status(two.connection, run_id))["status"] == "cancelled"
        assert await _no_jobs_left(two.connection, run_id)


async def test_cancel_racing_completion_ends_one_way_or_the_other(two: Two) -> None:
    """Many runs of quick steps, each cancelled at a random moment: a run the cancel found
    live ends cancelled and never runs a step the cancel did not allow; one that ended first
    keeps its end; none is left driven."""
    events = [await two.mesh.send("test.quick", {"i": i}) for i in range(40)]
    run_ids = [await two.run_id(event_id, "quick-steps") for event_id in events]
    outcomes: dict[str, str | None] = {}
    # The steps each run had committed when its cancel committed.
    at_cancel: dict[str, int] = {}
    for run_id in run_ids:
        await asyncio.sleep(random.uniform(0, 0.01))
        outcomes[run_id] = await execution.cancel_run(two.connection, RunId(run_id))
        at_cancel[run_id] = len(await two.mesh.steps(run_id))

    async def settled() -> bool:
        rows = await two.connection.fetch(
            "SELECT id FROM reverb.runs WHERE id = ANY($1) AND (job_id IS NOT NULL"
            " OR status NOT IN ('completed', 'cancelled'))",
            run_ids,
        )
        return not rows

    await eventually(settled, within=30, what="every run to settle")
    for run_id, previous in outcomes.items():
        row = await _status(two.connection, run_id)
        if previous == "completed":
            assert row["status"] == "completed"
        else:
            assert previous in execution.CANCELLABLE
            assert row["status"] == "cancelled"
            # At most the step in flight at the cancel committed after it, and no step
            # started after that one: each step executed ran once and was committed.
            steps = await two.mesh.steps(run_id)
            assert len(steps) <= at_cancel[run_id] + 1, (run_id, at_cancel[run_id], steps)
            assert executed[f"{run_id}:quick"] <= at_cancel[run_id] + 1
        assert await _no_jobs_left(two.connection, run_id)


async def test_a_sleeping_run_is_cancelled_at_once_and_never_wakes(two: Two) -> None:
    event_id = await two.mesh.send("test.sleeper", {})
    run_id = await two.run_id(event_id, "sleeper")

    async def sleeping() -> bool:
        return bool((await _status(two.connection, run_id))["status"] == "sleeping")

    await eventually(sleeping, within=10, what="the run to sleep")

    assert await execution.cancel_run(two.connection, RunId(run_id)) == "sleeping"
    assert await execution.cancel_run(two.connection, RunId(run_id)) == "cancelled"

    # A wake-up due now (as the sleep's own will be): its job finds the run cancelled.
    await jobs.enqueue(two.connection, [jobs.AdvanceRun(run_id, None)])

    async def advance_gone() -> bool:
        count: int = await two.connection.fetchval(
            "SELECT count(*) FROM pgqueuer WHERE entrypoint = 'advance_run'"
            " AND convert_from(payload, 'UTF8')::jsonb ->> 'run_id' = $1",
            run_id,
        )
        return count == 0

    await eventually(advance_gone, within=15, what="the wake-up to end")
    row = await _status(two.connection, run_id)
    assert (row["status"], row["job_id"]) == ("cancelled", None)
    assert executed[f"{run_id}:after"] == 0


async def test_cancelling_a_parent_cancels_the_child_it_waits_on(two: Two) -> None:
    event_id = await two.mesh.send("test.invoker", {})
    parent_id = await two.run_id(event_id, "invoker")

    async def child_sleeping() -> bool:
        status: str | None = await two.connection.fetchval(
            "SELECT status FROM reverb.runs WHERE parent_run_id = $1", parent_id
        )
        return status == "sleeping"

    await eventually(child_sleeping, within=10, what="the child to sleep")

    assert await execution.cancel_run(two.connection, RunId(parent_id)) == "waiting"

    child = await two.connection.fetchrow(
        "SELECT status, error FROM reverb.runs WHERE parent_run_id = $1", parent_id
    )
    assert child is not None
    assert child["status"] == "cancelled"
    assert orjson.loads(child["error"])["type"] == "RunCancelled"
    assert (await _status(two.connection, parent_id))["status"] == "cancelled"


async def test_a_cancelled_child_fails_its_parents_invoke_step(two: Two) -> None:
    event_id = await two.mesh.send("test.invoker", {})
    parent_id = await two.run_id(event_id, "invoker")

    async def child_id() -> str | None:
        value: str | None = await two.connection.fetchval(
            "SELECT id FROM reverb.runs WHERE parent_run_id = $1 AND status = 'sleeping'",
            parent_id,
        )
        return value

    async def child_sleeping() -> bool:
        return await child_id() is not None

    await eventually(child_sleeping, within=10, what="the child to sleep")
    child = await child_id()
    assert child is not None

    assert await execution.cancel_run(two.connection, RunId(child)) == "sleeping"

    parent = await two.mesh.finished(event_id, "invoker")
    assert orjson.loads(parent["output"]) == {"child": "RunCancelled"}


async def test_bulk_cancel_takes_the_functions_runs_in_the_range(two: Two) -> None:
    events = [await two.mesh.send("test.sleeper", {"i": i}) for i in range(5)]
    run_ids = [await two.run_id(event_id, "sleeper") for event_id in events]

    async def all_sleeping() -> bool:
        count: int = await two.connection.fetchval(
            "SELECT count(*) FROM reverb.runs WHERE id = ANY($1) AND status = 'sleeping'",
            run_ids,
        )
        return count == len(run_ids)

    await eventually(all_sleeping, within=15, what="every run to sleep")
    now = datetime.now(UTC)
    function = FunctionId("sleeper")

    assert await execution.cancel_runs(two.connection, function, now, now + timedelta(1)) == 0
    assert (
        await execution.cancel_runs(
            two.connection, function, now - timedelta(1), now, statuses=["queued"]
        )
        == 0
    )
    assert await execution.cancel_runs(two.connection, function, now - timedelta(1), now) == 5
    assert await execution.cancel_runs(two.connection, function, now - timedelta(1), now) == 0
    statuses = await two.connection.fetch(
        "SELECT DISTINCT status FROM reverb.runs WHERE id = ANY($1)", run_ids
    )
    assert [row["status"] for row in statuses] == ["cancelled"]
    with pytest.raises(ValueError, match="completed"):
        await execution.cancel_runs(
            two.connection,
            function,
            now - timedelta(1),
            now,
            statuses=["completed"],
        )


async def test_an_ended_run_is_left_as_it_ended(two: Two) -> None:
    event_id = await two.mesh.send("test.quick", {})
    run = await two.mesh.finished(event_id, "quick-steps")

    assert await execution.cancel_run(two.connection, RunId(run["id"])) == "completed"
    assert await execution.cancel_run(two.connection, RunId("no-such-run")) is None
    assert (await _status(two.connection, run["id"]))["status"] == "completed"
