"""The queue worker drives real runs: a real function host (gRPC on port 0) serving an SDK app,
a real worker, and PostgreSQL. Registration rows are written directly (the gateway's job)."""

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from pydantic import SecretStr

import reverb
from reverb import Context, NonRetriableError, StepError, event
from reverb_function_host import Host, HostSettings
from reverb_function_host import start as start_host
from reverb_queue_worker import Worker, WorkerSettings
from reverb_queue_worker import start as start_worker
from reverb_store import NewEvent, insert_events
from reverb_store.jobs import ProcessEvent, enqueue
from tests.e2e.processes import eventually

app = reverb.App("worker-tests")
calls: Counter[str] = Counter()


def double(value: int) -> int:
    calls["double"] += 1
    return value * 2


async def add_one(value: int) -> int:
    return value + 1


@app.function("fan-a", trigger=event("test.fan-out"))
async def fan_a(ctx: Context) -> str:
    return str(await ctx.step.run("hello", lambda: f"a got {ctx.event.data['n']}"))


@app.function("fan-b", trigger=event("test.fan-out"))
async def fan_b(ctx: Context) -> str:
    return str(await ctx.step.run("hello", lambda: f"b got {ctx.event.data['n']}"))


@app.function("three-steps", trigger=event("test.three"))
async def three_steps(ctx: Context) -> int:
    a = await ctx.step.run("double", double, ctx.event.data["n"])
    b = await ctx.step.run("add-one", add_one, a)
    return int(await ctx.step.run("double", double, b))


@app.function("ten-steps", trigger=event("test.ten"))
async def ten_steps(ctx: Context) -> int:
    total = 0
    for _ in range(10):
        total = await ctx.step.run("add", add_one, total)
    return total


@app.function("naps", trigger=event("test.naps"))
async def naps(ctx: Context) -> str:
    before = await ctx.step.run("before", lambda: "before")
    await ctx.step.sleep("nap", "2s")
    after = await ctx.step.run("after", lambda: "after")
    return f"{before}-{after}"


@app.function("child", trigger=event("test.never"))
async def child(ctx: Context) -> dict[str, int]:
    return {"doubled": await ctx.step.run("double", double, ctx.event.data["n"])}


@app.function("parent", trigger=event("test.parent"))
async def parent(ctx: Context) -> object:
    return await ctx.step.invoke("call-child", "child", {"n": 21}, timeout="1m")


@app.function("sender", trigger=event("test.send"))
async def sender(ctx: Context) -> list[str]:
    return await ctx.step.send_event("notify", "test.notified", {"user": 7})


@app.function("receiver", trigger=event("test.notified"))
async def receiver(ctx: Context) -> object:
    return ctx.event.data


def flaky(run_id: str) -> str:
    calls[f"flaky:{run_id}"] += 1
    if calls[f"flaky:{run_id}"] < 3:
        raise ConnectionError("try again")
    return "worked"


@app.function("flaky-step", trigger=event("test.flaky"), retries=3)
async def flaky_step(ctx: Context) -> str:
    return str(await ctx.step.run("call", flaky, ctx.run_id))


@app.function("gives-up", trigger=event("test.gives-up"), retries=3)
async def gives_up(ctx: Context) -> None:
    calls["gives-up"] += 1
    raise NonRetriableError("the account is closed")


@app.function("bad-sleep", trigger=event("test.bad-sleep"), retries=3)
async def bad_sleep(ctx: Context) -> None:
    calls["bad-sleep"] += 1
    await ctx.step.sleep("cool-down", "5 parsecs")


def refuse() -> None:
    raise NonRetriableError("card declined")


@app.function("catches", trigger=event("test.catches"))
async def catches(ctx: Context) -> dict[str, str]:
    try:
        await ctx.step.run("charge", refuse)
    except StepError as error:
        return {"caught": error.error_type, "message": error.message}
    return {}


@app.function("retries-run", trigger=event("test.retries-run"), retries=2)
async def retries_run(ctx: Context) -> int:
    if ctx.attempt == 0:
        raise RuntimeError("first attempt fails")
    return ctx.attempt


@app.function("parallel", trigger=event("test.parallel"))
async def parallel(ctx: Context) -> list[int]:
    steps = (ctx.step.run(f"add-{n}", add_one, n) for n in range(3))
    return list(await asyncio.gather(*steps))


@app.function("failing-child", trigger=event("test.never"), retries=0)
async def failing_child(ctx: Context) -> None:
    raise ValueError(f"cannot handle {ctx.event.data['n']}")


@app.function("careful-parent", trigger=event("test.careful-parent"))
async def careful_parent(ctx: Context) -> dict[str, str]:
    try:
        await ctx.step.invoke("call-child", "failing-child", {"n": 3})
    except StepError as error:
        return {"type": error.error_type, "message": error.message}
    return {}


attempt_times: dict[str, list[float]] = {}


def slow_to_recover(run_id: str) -> str:
    attempt_times.setdefault(run_id, []).append(time.monotonic())
    if len(attempt_times[run_id]) == 1:
        raise reverb.RetryAfterError("2s", "the service asked us to come back later")
    return "recovered"


@app.function("backs-off-beside-a-nap", trigger=event("test.backs-off"))
async def backs_off_beside_a_nap(ctx: Context) -> list[object]:
    return list(
        await asyncio.gather(
            ctx.step.run("call", slow_to_recover, ctx.run_id),
            ctx.step.sleep("nap", "200ms"),
        )
    )


@dataclass
class Mesh:
    connection: asyncpg.Connection
    worker: Worker
    host: Host

    async def send(self, name: str, data: object) -> str:
        async with self.connection.transaction():
            (event_id,) = await insert_events(
                self.connection, [NewEvent(name, orjson.dumps(data).decode())]
            )
        return event_id

    async def run_of(self, event_id: str, function_id: str) -> asyncpg.Record | None:
        return await self.connection.fetchrow(
            "SELECT * FROM reverb.runs WHERE $1 = ANY(event_ids) AND function_id = $2",
            event_id,
            function_id,
        )

    async def finished(self, event_id: str, function_id: str, within: float = 10) -> asyncpg.Record:
        async def done() -> bool:
            run = await self.run_of(event_id, function_id)
            return run is not None and run["status"] in ("completed", "failed")

        await eventually(done, within=within, what=f"{function_id} to finish")
        run = await self.run_of(event_id, function_id)
        assert run is not None
        return run

    async def steps(self, run_id: str) -> list[asyncpg.Record]:
        return await self.connection.fetch(
            "SELECT * FROM reverb.steps WHERE run_id = $1 ORDER BY seq", run_id
        )


async def register(connection: asyncpg.Connection, served: reverb.App, address: str) -> None:
    """What Ingress.RegisterApp stores: the app, its functions and triggers, the host."""
    await connection.execute(
        "INSERT INTO reverb.apps (id, definition_hash, definition) VALUES ($1, 'test', '{}')"
        " ON CONFLICT (id) DO NOTHING",
        served.id,
    )
    for definition in served.functions.values():
        await connection.execute(
            "INSERT INTO reverb.functions (id, app_id, name, retries) VALUES ($1, $2, $3, $4)",
            definition.id,
            served.id,
            definition.name,
            definition.retries,
        )
        for trigger in definition.triggers:
            assert isinstance(trigger, reverb.EventTrigger)
            await connection.execute(
                "INSERT INTO reverb.triggers (function_id, event_name) VALUES ($1, $2)",
                definition.id,
                trigger.name,
            )
    await add_host(connection, served.id, address)


async def add_host(connection: asyncpg.Connection, app_id: str, address: str) -> None:
    await connection.execute(
        "INSERT INTO reverb.app_hosts (app_id, address) VALUES ($1, $2)", app_id, address
    )


# Workers and hosts of the tests share it: every Start and every answer is signed.
SIGNING_KEY = SecretStr("integration-test-signing-key")


def host_settings(**values: Any) -> HostSettings:
    """A signed host on a free port."""
    return HostSettings(host_address="127.0.0.1:0", signing_key=SIGNING_KEY, **values)


def worker_settings(database_url: str) -> WorkerSettings:
    return WorkerSettings(
        database_url=database_url,
        signing_key=SIGNING_KEY,
        worker_concurrency=20,
        backoff_base=timedelta(milliseconds=50),
        worker_shutdown_timeout=timedelta(seconds=5),
    )


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


async def test_an_event_fans_out_to_every_function_listening(mesh: Mesh) -> None:
    event_id = await mesh.send("test.fan-out", {"n": 3})

    a = await mesh.finished(event_id, "fan-a")
    b = await mesh.finished(event_id, "fan-b")

    assert (a["status"], orjson.loads(a["output"])) == ("completed", "a got 3")
    assert (b["status"], orjson.loads(b["output"])) == ("completed", "b got 3")


async def test_step_outputs_are_stored_in_order_and_memoized(mesh: Mesh) -> None:
    calls.clear()
    event_id = await mesh.send("test.three", {"n": 5})

    run = await mesh.finished(event_id, "three-steps")

    assert (run["status"], orjson.loads(run["output"])) == ("completed", 22)
    steps = await mesh.steps(run["id"])
    assert [(s["id"], s["name"], s["status"], orjson.loads(s["output"])) for s in steps] == [
        ("double", "double", "completed", 10),
        ("add-one", "add-one", "completed", 11),
        ("double:1", "double", "completed", 22),
    ]
    assert all(s["started_at"] <= s["ended_at"] for s in steps)
    assert calls["double"] == 2


async def test_ten_steps_take_one_invocation(mesh: Mesh) -> None:
    event_id = await mesh.send("test.ten", {})

    run = await mesh.finished(event_id, "ten-steps")

    assert (run["status"], orjson.loads(run["output"])) == ("completed", 10)
    assert run["invocations"] == 1
    assert len(await mesh.steps(run["id"])) == 10


async def test_a_sleep_suspends_the_run_and_resumes_it_after_the_delay(mesh: Mesh) -> None:
    event_id = await mesh.send("test.naps", {})
    began = time.monotonic()

    async def sleeping() -> bool:
        run = await mesh.run_of(event_id, "naps")
        return run is not None and run["status"] == "sleeping"

    await eventually(sleeping, within=10, what="the run to sleep")
    run = await mesh.finished(event_id, "naps")

    assert time.monotonic() - began >= 2
    assert (run["status"], orjson.loads(run["output"])) == ("completed", "before-after")
    assert run["invocations"] == 2
    nap = [s for s in await mesh.steps(run["id"]) if s["id"] == "nap"][0]
    assert (nap["kind"], nap["status"]) == ("sleep", "completed")


async def test_invoke_returns_the_child_result(mesh: Mesh) -> None:
    event_id = await mesh.send("test.parent", {})

    run = await mesh.finished(event_id, "parent")

    assert (run["status"], orjson.loads(run["output"])) == ("completed", {"doubled": 42})
    (step,) = await mesh.steps(run["id"])
    child_run = await mesh.connection.fetchrow(
        "SELECT * FROM reverb.runs WHERE id = $1", step["child_run_id"]
    )
    assert child_run is not None
    assert (child_run["status"], child_run["parent_run_id"]) == ("completed", run["id"])
    assert (step["kind"], step["status"]) == ("invoke", "completed")


async def test_a_sent_event_triggers_another_function(mesh: Mesh) -> None:
    event_id = await mesh.send("test.send", {})

    run = await mesh.finished(event_id, "sender")
    (sent_id,) = orjson.loads(run["output"])
    received = await mesh.finished(sent_id, "receiver")

    assert (received["status"], orjson.loads(received["output"])) == ("completed", {"user": 7})


async def test_a_failing_step_is_retried_until_it_succeeds(mesh: Mesh) -> None:
    event_id = await mesh.send("test.flaky", {})

    run = await mesh.finished(event_id, "flaky-step")

    assert (run["status"], orjson.loads(run["output"])) == ("completed", "worked")
    (step,) = await mesh.steps(run["id"])
    assert (step["status"], step["attempts"]) == ("completed", 3)
    assert run["attempt"] == 0
    assert calls[f"flaky:{run['id']}"] == 3


async def test_a_non_retriable_error_fails_the_run_at_once(mesh: Mesh) -> None:
    calls.clear()
    event_id = await mesh.send("test.gives-up", {})

    run = await mesh.finished(event_id, "gives-up")

    assert run["status"] == "failed"
    error = orjson.loads(run["error"])
    assert (error["type"], error["message"]) == ("NonRetriableError", "the account is closed")
    assert (run["attempt"], run["invocations"], calls["gives-up"]) == (0, 1, 1)


async def test_an_invalid_step_argument_fails_the_run_at_once(mesh: Mesh) -> None:
    event_id = await mesh.send("test.bad-sleep", {})

    run = await mesh.finished(event_id, "bad-sleep")

    assert run["status"] == "failed"
    error = orjson.loads(run["error"])
    assert error["type"] == "StepArgumentError"
    assert error["message"].startswith("step 'cool-down': '5 parsecs' is not a duration")
    assert (run["attempt"], run["invocations"], calls["bad-sleep"]) == (0, 1, 1)
    assert await mesh.steps(run["id"]) == []


async def test_user_code_can_catch_a_failed_step(mesh: Mesh) -> None:
    event_id = await mesh.send("test.catches", {})

    run = await mesh.finished(event_id, "catches")

    assert run["status"] == "completed"
    output = orjson.loads(run["output"])
    assert output == {"caught": "NonRetriableError", "message": "card declined"}
    (step,) = await mesh.steps(run["id"])
    assert (step["status"], orjson.loads(step["error"])["type"]) == ("failed", "NonRetriableError")


async def test_a_retriable_function_failure_retries_the_run(mesh: Mesh) -> None:
    event_id = await mesh.send("test.retries-run", {})

    run = await mesh.finished(event_id, "retries-run")

    assert (run["status"], orjson.loads(run["output"]), run["attempt"]) == ("completed", 1, 1)


async def test_a_repeated_fan_out_job_creates_no_duplicate_runs(mesh: Mesh) -> None:
    event_id = await mesh.send("test.fan-out", {"n": 1})
    async with mesh.connection.transaction():
        await enqueue(mesh.connection, [ProcessEvent((event_id,))])

    async def fan_outs_done() -> bool:
        left: int = await mesh.connection.fetchval(
            "SELECT count(*) FROM pgqueuer WHERE entrypoint = 'process_event'"
        )
        return left == 0

    await eventually(fan_outs_done, within=10, what="both fan-out jobs to end")
    await mesh.finished(event_id, "fan-a")
    await mesh.finished(event_id, "fan-b")
    runs = await mesh.connection.fetch(
        "SELECT function_id FROM reverb.runs WHERE $1 = ANY(event_ids) ORDER BY function_id",
        event_id,
    )
    assert [run["function_id"] for run in runs] == ["fan-a", "fan-b"]


async def test_parallel_steps_report_and_commit_independently(mesh: Mesh) -> None:
    event_id = await mesh.send("test.parallel", {})

    run = await mesh.finished(event_id, "parallel")

    assert (run["status"], orjson.loads(run["output"])) == ("completed", [1, 2, 3])
    assert sorted(step["id"] for step in await mesh.steps(run["id"])) == ["add-0", "add-1", "add-2"]
    assert run["invocations"] == 1


async def test_a_failed_child_fails_the_invoke_step_with_its_error(mesh: Mesh) -> None:
    event_id = await mesh.send("test.careful-parent", {})

    run = await mesh.finished(event_id, "careful-parent")

    assert run["status"] == "completed"
    assert orjson.loads(run["output"]) == {"type": "ValueError", "message": "cannot handle 3"}


async def test_concurrent_runs_share_checkpoint_transactions(mesh: Mesh) -> None:
    before = mesh.worker.services.checkpoints.transactions
    async with mesh.connection.transaction():
        events = [NewEvent("test.three", orjson.dumps({"n": n}).decode()) for n in range(40)]
        event_ids = await insert_events(mesh.connection, events)

    runs = [await mesh.finished(event_id, "three-steps", within=30) for event_id in event_ids]

    assert [orjson.loads(run["output"]) for run in runs] == [(2 * n + 1) * 2 for n in range(40)]
    assert all(run["invocations"] == 1 for run in runs)
    committed = mesh.worker.services.checkpoints.transactions - before
    assert committed < 40 * 3


async def test_a_step_backing_off_is_not_run_early_when_another_wait_resumes_the_run(
    mesh: Mesh,
) -> None:
    event_id = await mesh.send("test.backs-off", {})

    run = await mesh.finished(event_id, "backs-off-beside-a-nap")

    assert (run["status"], orjson.loads(run["output"])) == ("completed", ["recovered", None])
    first, second = attempt_times[run["id"]]
    assert second - first >= 2, "the retry ran before its Retry-After delay"
    # Start; the nap's wake-up (the call stays pending); the retry.
    assert run["invocations"] == 3
