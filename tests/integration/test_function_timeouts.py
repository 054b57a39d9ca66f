"""`timeouts=reverb.Timeouts(start=, finish=)` enforced, and `reverb.Step(id, timeout=)`
retried with StepTimeout: a real gateway (the host registers through it, timeouts
included), two workers, a real host and PostgreSQL.

Deadlines are the queue's due times (PostgreSQL's clock), so the limits here are short
real durations; the workers poll every 100 ms for jobs that no worker's timer knows of
(deadlines inserted by the run's creation or first claim).
"""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

import reverb
from reverb import Context, event
from reverb_function_host import start as start_host
from reverb_ingress_gateway import Gateway
from reverb_queue_worker import Worker
from reverb_queue_worker import start as start_worker
from reverb_store import execution
from reverb_store.ids import RunId
from tests.e2e.processes import eventually
from tests.integration.test_run_gates import OneAtATime, create_held_runs_table
from tests.integration.test_worker_runs import host_settings, worker_settings
from tests.integration.wakeups import Heard

app = reverb.App("timeout-tests")

entered: dict[str, asyncio.Event] = {}
release: dict[str, asyncio.Event] = {}


async def hold(key: str) -> str:
    entered.setdefault(key, asyncio.Event()).set()
    await release.setdefault(key, asyncio.Event()).wait()
    return key


async def tell(ctx: Context) -> str:
    return str(ctx.event.data["error"]["type"])


@app.function(
    "slow-sleeper",
    trigger=event("timeouts.sleep"),
    timeouts=reverb.Timeouts(finish="1s"),
    on_failure=tell,
)
async def slow_sleeper(ctx: Context) -> str:
    await ctx.step.run("first", lambda: "done")
    await ctx.step.sleep("nap", "1h")
    return "woke"


@app.function("patient", trigger=event("timeouts.patient"), timeouts=reverb.Timeouts(finish="1s"))
async def patient(ctx: Context) -> str:
    await ctx.step.sleep("nap", "1h")
    return "woke"


attempts: dict[str, int] = {}


async def slow_first(key: str, *, timeout: int) -> str:  # noqa: ASYNC109 (its own keyword)
    """Blocks on its first attempt (past the step's timeout), answers on the next; its own
    `timeout` keyword reaches it untouched."""
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] == 1:
        await asyncio.Event().wait()
    return f"{key} after {attempts[key]} attempts, timeout={timeout}"


@app.function("step-timeout", trigger=event("timeouts.step"), retries=2)
async def step_timeout(ctx: Context) -> str:
    step = reverb.Step("charge", timeout="200ms")
    return str(await ctx.step.run(step, slow_first, ctx.event.data["key"], timeout=5))


@app.function("quick", trigger=event("timeouts.quick"), timeouts=reverb.Timeouts("1s", "1s"))
async def quick(ctx: Context) -> str:
    return str(await ctx.step.run("only", lambda: "ok"))


@app.function("stuck", trigger=event("timeouts.stuck"), timeouts=reverb.Timeouts(finish="1s"))
async def stuck(ctx: Context) -> str:
    await ctx.step.run("hold", hold, ctx.event.data["key"])
    return str(await ctx.step.run("after", lambda: "after"))


@app.function("child", trigger=event("timeouts.child-never"))
async def child(ctx: Context) -> str:
    return str(await ctx.step.run("hold", hold, ctx.event.data["key"]))


@app.function("parent", trigger=event("timeouts.parent"), timeouts=reverb.Timeouts(finish="1s"))
async def parent(ctx: Context) -> Any:
    return await ctx.step.invoke("call", "child", {"key": ctx.event.data["key"]})


@app.function(
    "one-at-a-time-late",
    trigger=event("timeouts.gated"),
    timeouts=reverb.Timeouts(start="1s"),
    retries=0,
)
async def gated(ctx: Context) -> str:
    return str(await ctx.step.run("hold", hold, ctx.event.data["key"]))


@app.function(
    "one-at-a-time-finish",
    trigger=event("timeouts.gated-finish"),
    timeouts=reverb.Timeouts(finish="1s"),
    retries=0,
)
async def gated_finish(ctx: Context) -> str:
    return str(await ctx.step.run("hold", hold, ctx.event.data["key"]))


@dataclass
class Mesh:
    connection: asyncpg.Connection
    client: httpx.AsyncClient
    workers: list[Worker]

    async def stop_workers(self) -> None:
        """Stop the workers (each finishes its jobs in flight first)."""
        while self.workers:
            await self.workers.pop().stop()

    async def send(self, name: str, data: dict[str, Any]) -> str:
        response = await self.client.post("/events", json={"name": name, "data": data})
        assert response.status_code == 202, response.text
        return str(response.json()["ids"][0])

    async def run(self, event_id: str, function_id: str) -> dict[str, Any]:
        """The function's run of the event, once there is one."""

        async def created() -> bool:
            return bool(await self.run_id(event_id, function_id))

        await eventually(created, within=20, what=f"a run of {function_id}")
        response = await self.client.get(f"/runs/{await self.run_id(event_id, function_id)}")
        return dict(response.json())

    async def run_id(self, event_id: str, function_id: str) -> str | None:
        found: str | None = await self.connection.fetchval(
            "SELECT id FROM reverb.runs WHERE $1 = ANY(event_ids) AND function_id = $2",
            event_id,
            function_id,
        )
        return found

    async def ended(self, event_id: str, function_id: str, within: float = 20) -> dict[str, Any]:
        async def done() -> bool:
            run = await self.run(event_id, function_id)
            return run["status"] in ("completed", "failed", "cancelled")

        await eventually(done, within=within, what=f"{function_id} to end")
        return await self.run(event_id, function_id)


@pytest.fixture
async def mesh(
    database_url: str, connection: asyncpg.Connection, gateway: Gateway
) -> AsyncIterator[Mesh]:
    entered.clear()
    release.clear()
    attempts.clear()
    await create_held_runs_table(connection)
    host = await start_host(app, host_settings(ingress_address=f"127.0.0.1:{gateway.grpc_port}"))
    await asyncio.wait_for(host.registered.wait(), timeout=10)
    settings = worker_settings(database_url).model_copy(
        update={"worker_poll_interval": timedelta(milliseconds=100)}
    )
    gate = OneAtATime(["one-at-a-time-late", "one-at-a-time-finish"])
    workers = [await start_worker(settings, [gate]) for _ in range(2)]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        mesh = Mesh(connection, client, workers)
        yield mesh
    for key in list(release):
        release[key].set()
    await mesh.stop_workers()
    await host.stop(0)


async def test_a_sleeping_run_past_its_finish_limit_fails_with_function_timeout(
    mesh: Mesh,
) -> None:
    event_id = await mesh.send("timeouts.sleep", {})

    run = await mesh.ended(event_id, "slow-sleeper")

    assert run["status"] == "failed"
    assert run["error"]["type"] == "FunctionTimeout"
    assert "finish timeout (1s)" in run["error"]["message"]
    steps = {step["id"]: step["status"] for step in run["steps"]}
    assert steps == {"first": "completed", "nap": "sleeping"}
    # A failure like any other: announced, and the on_failure handler runs.
    [announced] = (await mesh.client.get("/events?name=reverb/function.failed")).json()["events"]
    handled = await mesh.ended(announced["id"], "slow-sleeper-failure")
    assert handled["output"] == "FunctionTimeout"


async def test_a_step_past_its_timeout_is_retried_with_step_timeout(mesh: Mesh) -> None:
    event_id = await mesh.send("timeouts.step", {"key": "card"})

    run = await mesh.ended(event_id, "step-timeout")

    assert run["status"] == "completed", run
    assert run["output"] == "card after 2 attempts, timeout=5"
    [step] = run["steps"]
    assert (step["id"], step["status"], step["attempts"]) == ("charge", "completed", 2)
    retried = await mesh.connection.fetchval(
        "SELECT count(*) FROM reverb.runs WHERE function_id = 'step-timeout' AND attempt > 0"
    )
    assert retried == 0  # the step was retried, not the function


async def test_a_run_that_ends_in_time_is_left_as_it_is(mesh: Mesh) -> None:
    event_id = await mesh.send("timeouts.quick", {})

    run = await mesh.ended(event_id, "quick")
    assert run["status"] == "completed"
    # Its deadline jobs come due and change nothing.
    run_id = run["id"]

    async def no_deadline_left() -> bool:
        left = await mesh.connection.fetchval(
            "SELECT count(*) FROM pgqueuer WHERE entrypoint = 'time_out_run'"
            " AND convert_from(payload, 'UTF8')::jsonb->>'run_id' = $1",
            run_id,
        )
        return bool(left == 0)

    await eventually(no_deadline_left, within=10, what="the deadline jobs to run")
    assert (await mesh.run(event_id, "quick"))["status"] == "completed"


async def _deadlines(connection: asyncpg.Connection, run_id: str) -> list[asyncpg.Record]:
    return await connection.fetch(
        "SELECT id, execute_after - now() AS due_in FROM pgqueuer"
        " WHERE entrypoint = 'time_out_run'"
        " AND convert_from(payload, 'UTF8')::jsonb->>'run_id' = $1",
        run_id,
    )


@pytest.mark.parametrize("new_limit", [None, timedelta(hours=1)])
async def test_a_redeploy_that_removes_or_lengthens_the_limit_spares_the_run(
    mesh: Mesh, new_limit: timedelta | None
) -> None:
    event_id = await mesh.send("timeouts.patient", {})
    run_id = (await mesh.run(event_id, "patient"))["id"]

    async def queued() -> bool:
        return len(await _deadlines(mesh.connection, run_id)) == 1

    await eventually(queued, within=10, what="the finish deadline")
    [first] = await _deadlines(mesh.connection, run_id)
    await mesh.connection.execute(
        "UPDATE reverb.functions SET finish_timeout = $1 WHERE id = 'patient'", new_limit
    )

    async def checked() -> bool:
        left = await _deadlines(mesh.connection, run_id)
        return all(job["id"] != first["id"] for job in left)

    await eventually(checked, within=10, what="the first deadline to come due")
    assert (await mesh.run(event_id, "patient"))["status"] == "sleeping"
    left = await _deadlines(mesh.connection, run_id)
    if new_limit is None:
        assert left == []
    else:
        [again] = left
        assert timedelta(minutes=59) < again["due_in"] <= timedelta(hours=1)


async def test_a_running_run_past_its_finish_limit_fails_and_its_steps_do_not_revive_it(
    mesh: Mesh,
) -> None:
    event_id = await mesh.send("timeouts.stuck", {"key": "stuck"})
    await asyncio.wait_for(entered.setdefault("stuck", asyncio.Event()).wait(), timeout=10)

    run = await mesh.ended(event_id, "stuck")
    assert (run["status"], run["error"]["type"]) == ("failed", "FunctionTimeout")

    # The step in flight returns: its output is committed, and the run stops at that
    # boundary (no further step starts; the workers stop once its job let it go).
    release.setdefault("stuck", asyncio.Event()).set()

    async def let_go() -> bool:
        row = await mesh.connection.fetchrow(
            "SELECT job_id, EXISTS (SELECT FROM reverb.stopping_runs WHERE run_id = $1) AS"
            " stopping FROM reverb.runs WHERE id = $1",
            run["id"],
        )
        return row is not None and row["job_id"] is None and not row["stopping"]

    await eventually(let_go, within=10, what="the job to let the run go")
    await mesh.stop_workers()
    after = await mesh.run(event_id, "stuck")
    assert (after["status"], after["error"]["type"]) == ("failed", "FunctionTimeout")
    assert after["output"] is None
    assert {step["id"]: step["status"] for step in after["steps"]} == {"hold": "completed"}


async def test_a_run_waiting_on_a_child_past_its_finish_limit_fails(mesh: Mesh) -> None:
    event_id = await mesh.send("timeouts.parent", {"key": "child"})

    run = await mesh.ended(event_id, "parent")

    assert (run["status"], run["error"]["type"]) == ("failed", "FunctionTimeout")
    assert {step["id"]: step["status"] for step in run["steps"]} == {"call": "waiting"}


async def test_a_run_queued_behind_a_gate_past_its_start_limit_fails(mesh: Mesh) -> None:
    first = await mesh.send("timeouts.gated", {"key": "first"})
    await asyncio.wait_for(entered.setdefault("first", asyncio.Event()).wait(), timeout=10)
    second = await mesh.send("timeouts.gated", {"key": "second"})

    held = await mesh.ended(second, "one-at-a-time-late")

    assert (held["status"], held["error"]["type"]) == ("failed", "FunctionTimeout")
    assert "start timeout (1s)" in held["error"]["message"]
    assert held["steps"] == []
    # The first run started in time: its start limit does not apply, and it completes.
    assert (await mesh.run(first, "one-at-a-time-late"))["status"] == "running"
    release.setdefault("first", asyncio.Event()).set()
    assert (await mesh.ended(first, "one-at-a-time-late"))["status"] == "completed"


async def test_a_finish_limit_counts_from_the_start_of_a_run_queued_longer_than_it(
    mesh: Mesh,
) -> None:
    """The finish deadline is queued when the run is created, due at its creation plus the
    limit: a run held behind a gate past that time is checked again, and fails a limit
    after its start, not after its creation."""
    first = await mesh.send("timeouts.gated-finish", {"key": "first"})
    await asyncio.wait_for(entered.setdefault("first", asyncio.Event()).wait(), timeout=10)
    second = await mesh.send("timeouts.gated-finish", {"key": "second"})
    second_id = (await mesh.run(second, "one-at-a-time-finish"))["id"]

    # The first run passes its own limit (1 s after its start) while it holds the slot.
    assert (await mesh.ended(first, "one-at-a-time-finish"))["error"]["type"] == "FunctionTimeout"

    # Its step's end lets it go and frees the slot for the second, queued for longer than
    # its limit by then...
    release.setdefault("first", asyncio.Event()).set()
    held = await mesh.ended(second, "one-at-a-time-finish")
    assert (held["status"], held["error"]["type"]) == ("failed", "FunctionTimeout")
    assert "finish timeout (1s)" in held["error"]["message"]
    # ...which started, and failed a limit after its start.
    await asyncio.wait_for(entered.setdefault("second", asyncio.Event()).wait(), timeout=10)
    row = await mesh.connection.fetchrow(
        "SELECT started_at, ended_at, created_at FROM reverb.runs WHERE id = $1", second_id
    )
    assert row is not None
    started, ended, created = row
    assert started - created >= timedelta(seconds=1)
    assert ended - started >= timedelta(seconds=1)


async def test_the_handler_checks_a_finish_limit_again_while_the_run_has_not_started(
    connection: asyncpg.Connection,
) -> None:
    """`execution.time_out_run` directly: a queued run's `finish` job, due at its creation
    plus the limit, fails nothing and is queued again the limit later."""
    await connection.execute(
        "INSERT INTO reverb.apps (id, definition_hash, definition) VALUES ('a', 'h', '{}');"
        "INSERT INTO reverb.functions (id, app_id, name, finish_timeout)"
        " VALUES ('a-f', 'a', 'f', interval '5 minutes');"
        "INSERT INTO reverb.runs (id, function_id, app_id, status, max_attempts)"
        " VALUES ('queued-run', 'a-f', 'a', 'queued', 1)"
    )
    # The creation queued the finish deadline, due at the creation plus the limit.
    due = await connection.fetchval(
        "SELECT execute_after - r.created_at FROM pgqueuer, reverb.runs r"
        " WHERE entrypoint = 'time_out_run' AND r.id = 'queued-run'"
        " AND convert_from(payload, 'UTF8')::jsonb ->> 'limit' = 'finish'"
    )
    assert due == timedelta(minutes=5)
    heard = Heard()

    assert not await execution.time_out_run(connection, RunId("queued-run"), "finish", heard)

    assert heard.delays == [timedelta(minutes=5)]
    assert await connection.fetchval("SELECT status FROM reverb.runs") == "queued"


async def test_the_handler_fails_what_is_in_flight_only(
    connection: asyncpg.Connection,
) -> None:
    """`execution.time_out_run` directly: an unknown or ended run is left alone."""
    assert not await execution.time_out_run(connection, RunId("no-such-run"), "finish", Heard())
