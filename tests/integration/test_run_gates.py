"""Run gates hold runs without polling and let them start once capacity frees.

The gate here is a real one written against the gate interface: at most one
running run per function, with its own table of held runs, on real PostgreSQL,
with two real workers and a real function host.
"""

import asyncio
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import pytest

import reverb
from reverb import Context, event
from reverb_function_host import Host
from reverb_function_host import start as start_host
from reverb_queue_worker import start as start_worker
from reverb_store import execution, jobs
from reverb_store.execution import (
    ADMIT,
    Candidate,
    ClaimedRun,
    Freed,
    FunctionRef,
    Gates,
    Hold,
    Refusal,
    Skip,
    Verdict,
)
from reverb_store.ids import AppId, FunctionId, JobId, RunId, StepId, new_id
from tests.e2e.processes import eventually
from tests.integration.test_worker_runs import Mesh, host_settings, register, worker_settings
from tests.integration.wakeups import Heard

app = reverb.App("gate-tests")
started: dict[int, asyncio.Event] = {}
released: dict[int, asyncio.Event] = {}


async def work(n: int) -> int:
    started.setdefault(n, asyncio.Event()).set()
    await released.setdefault(n, asyncio.Event()).wait()
    return n


@app.function("one-at-a-time", trigger=event("test.gated"))
async def one_at_a_time(ctx: Context) -> int:
    return int(await ctx.step.run("work", work, ctx.event.data["n"]))


class OneAtATime:
    """At most one running run per function; held runs wait in the gate's own table and
    the oldest is woken when a run of its function stops executing."""

    name = "one-at-a-time"

    def __init__(self, function_ids: Iterable[str]) -> None:
        self.function_ids = frozenset(function_ids)

    def applies(self, function: FunctionRef) -> bool:
        return function.function_id in self.function_ids

    async def decide(self, connection: asyncpg.Connection, candidate: Candidate) -> Verdict:
        # The function's row serializes admissions and frees of its runs.
        await connection.execute(
            "SELECT FROM reverb.functions WHERE id = $1 FOR UPDATE", candidate.function_id
        )
        running = await connection.fetchval(
            "SELECT count(*) FROM reverb.runs"
            " WHERE function_id = $1 AND status = 'running' AND id <> $2",
            candidate.function_id,
            candidate.run_id,
        )
        if running == 0:
            return ADMIT
        await connection.execute(
            "INSERT INTO held_runs (run_id, function_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            candidate.run_id,
            candidate.function_id,
        )
        return Hold("another run of the function is running")

    async def freed(self, connection: asyncpg.Connection, run: Freed) -> None:
        await connection.execute(
            "SELECT FROM reverb.functions WHERE id = $1 FOR UPDATE", run.function_id
        )
        woken = await connection.fetchval(
            "DELETE FROM held_runs WHERE run_id = (SELECT run_id FROM held_runs"
            " WHERE function_id = $1 ORDER BY held_at, run_id LIMIT 1) RETURNING run_id",
            run.function_id,
        )
        if woken is not None:
            await execution.wake(connection, woken)


async def create_held_runs_table(connection: asyncpg.Connection) -> None:
    await connection.execute(
        "CREATE TABLE held_runs (run_id text PRIMARY KEY, function_id text NOT NULL,"
        " held_at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )


@pytest.fixture(scope="module")
async def host() -> AsyncIterator[Host]:
    running = await start_host(app, host_settings(), register_app=False)
    yield running
    await running.stop(0)


async def jobs_of(connection: asyncpg.Connection, run_id: str) -> int:
    count: int = await connection.fetchval(
        "SELECT count(*) FROM pgqueuer WHERE convert_from(payload, 'UTF8')::jsonb->>'run_id' = $1",
        run_id,
    )
    return count


async def test_a_gate_holds_a_second_run_without_a_job_and_starts_it_when_the_first_ends(
    database_url: str, connection: asyncpg.Connection, host: Host
) -> None:
    await create_held_runs_table(connection)
    await register(connection, app, f"127.0.0.1:{host.port}")
    gate = OneAtATime(["one-at-a-time"])
    workers = [await start_worker(worker_settings(database_url), [gate]) for _ in range(2)]
    mesh = Mesh(connection, workers[0], host)
    started.clear()
    released.clear()
    try:
        first_event = await mesh.send("test.gated", {"n": 1})
        await started.setdefault(1, asyncio.Event()).wait()
        second_event = await mesh.send("test.gated", {"n": 2})

        async def second_held() -> bool:
            held = await connection.fetchval("SELECT count(*) FROM held_runs")
            return bool(held)

        await eventually(second_held, within=10, what="the second run to be held")
        second = await mesh.run_of(second_event, "one-at-a-time")
        assert second is not None
        # Held: queued, never started, and no job keeps it alive (nothing polls it).
        assert (second["status"], second["started_at"], second["invocations"]) == (
            "queued",
            None,
            0,
        )
        assert await jobs_of(connection, second["id"]) == 0
        assert 2 not in started

        released[1].set()
        released.setdefault(2, asyncio.Event()).set()
        first = await mesh.finished(first_event, "one-at-a-time")
        second = await mesh.finished(second_event, "one-at-a-time")

        assert (first["status"], orjson.loads(first["output"])) == ("completed", 1)
        assert (second["status"], orjson.loads(second["output"])) == ("completed", 2)
        assert second["started_at"] >= first["ended_at"]
        assert await connection.fetchval("SELECT count(*) FROM held_runs") == 0
    finally:
        for worker in workers:
            await worker.stop()


class Verdicts:
    """A gate that answers what it is told, for the store's side of admission."""

    name = "scripted"

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        self.freed_runs: list[Freed] = []

    def applies(self, function: FunctionRef) -> bool:
        return True

    async def decide(self, connection: asyncpg.Connection, candidate: Candidate) -> Verdict:
        return self.verdict

    async def freed(self, connection: asyncpg.Connection, run: Freed) -> None:
        self.freed_runs.append(run)


async def gated_run(connection: asyncpg.Connection) -> tuple[RunId, JobId]:
    """A queued gated run and its advance_run job."""
    run_id = RunId(new_id())
    await connection.execute(
        "INSERT INTO reverb.runs (id, function_id, app_id, status, max_attempts, gated)"
        " VALUES ($1, 'f', 'a', 'queued', 1, true)",
        run_id,
    )
    (job_id,) = await jobs.enqueue(connection, [jobs.AdvanceRun(run_id)])
    return run_id, JobId(job_id)


async def test_a_hold_until_a_time_ends_the_job_and_schedules_one_for_then(
    connection: asyncpg.Connection,
) -> None:
    run_id, job_id = await gated_run(connection)
    until = datetime.now(UTC) + timedelta(minutes=5)
    gates = Gates([Verdicts(Hold("throttled", until))])

    heard = Heard()
    refusal = await execution.claim_run(connection, run_id, job_id, gates, heard)

    assert refusal == Refusal("scripted", Hold("throttled", until))
    assert len(heard.delays) == 1 and heard.delays[0] > timedelta(minutes=4)
    row = await connection.fetchrow("SELECT status, job_id FROM reverb.runs WHERE id = $1", run_id)
    assert row is not None
    assert (row["status"], row["job_id"]) == ("queued", None)
    (job,) = await connection.fetch("SELECT id, entrypoint, execute_after FROM pgqueuer")
    assert (job["id"] != job_id, job["entrypoint"]) == (True, "wake_run")
    assert abs(job["execute_after"] - until) < timedelta(seconds=1)


async def test_a_skipped_run_ends_cancelled_with_the_reason(
    connection: asyncpg.Connection,
) -> None:
    run_id, job_id = await gated_run(connection)
    gates = Gates([Verdicts(Skip("a run of the same key is running"))])

    assert isinstance(
        await execution.claim_run(connection, run_id, job_id, gates, Heard()), Refusal
    )

    row = await connection.fetchrow("SELECT status, error FROM reverb.runs WHERE id = $1", run_id)
    assert row is not None
    assert row["status"] == "cancelled"
    assert orjson.loads(row["error"])["type"] == "RunSkipped"
    assert "a run of the same key is running" in orjson.loads(row["error"])["message"]
    assert await connection.fetchval("SELECT count(*) FROM pgqueuer") == 0


async def test_gates_are_told_when_an_admitted_run_stops_executing(
    connection: asyncpg.Connection,
) -> None:
    scripted = Verdicts(ADMIT)
    gates = Gates([scripted])
    run_id, job_id = await gated_run(connection)

    assert isinstance(
        await execution.claim_run(connection, run_id, job_id, gates, Heard()), ClaimedRun
    )
    assert await execution.complete_run(connection, run_id, job_id, '"done"', gates)

    assert scripted.freed_runs == [Freed(run_id, FunctionId("f"), AppId("a"), "completed")]


async def test_a_run_no_gate_applies_to_is_claimed_without_asking_them(
    connection: asyncpg.Connection,
) -> None:
    scripted = Verdicts(Hold("never asked"))
    run_id = RunId(new_id())
    await connection.execute(
        "INSERT INTO reverb.runs (id, function_id, app_id, status, max_attempts)"
        " VALUES ($1, 'f', 'a', 'queued', 1)",
        run_id,
    )

    claim = await execution.claim_run(connection, run_id, JobId(1), Gates([scripted]), Heard())

    assert isinstance(claim, ClaimedRun)
    assert await execution.complete_run(connection, run_id, JobId(1), '"done"', Gates([scripted]))
    assert scripted.freed_runs == []


async def test_a_child_of_a_gated_function_is_created_gated(
    connection: asyncpg.Connection,
) -> None:
    await connection.execute(
        "INSERT INTO reverb.apps (id, definition_hash, definition) VALUES ('a', '', '{}');"
        "INSERT INTO reverb.functions (id, app_id, name)"
        " VALUES ('gated', 'a', 'g'), ('free', 'a', 'f')"
    )
    parent = RunId(new_id())
    await connection.execute(
        "INSERT INTO reverb.runs (id, function_id, app_id, status, max_attempts)"
        " VALUES ($1, 'free', 'a', 'running', 1)",
        parent,
    )
    gates = Gates([OneAtATime(["gated"])])

    for step, function_id in (("call-gated", "gated"), ("call-free", "free")):
        await execution.start_child(
            connection,
            parent,
            execution.StepTiming(StepId(step), step, None, None),
            function_id=FunctionId(function_id),
            data="{}",
            wait_limit=timedelta(minutes=1),
            traceparent=None,
            gates=gates,
        )

    rows = await connection.fetch(
        "SELECT function_id, gated FROM reverb.runs WHERE parent_run_id = $1", parent
    )
    assert {row["function_id"]: row["gated"] for row in rows} == {"gated": True, "free": False}
