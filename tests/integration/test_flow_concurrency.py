"""Concurrency limits hold exactly across workers, per key, and hand slots on without
polling: two real workers, a real host registered through the gateway, real PostgreSQL.
Each limit is checked from the steps' own timestamps (and from the host's live count)."""

import asyncio
from collections import Counter

import asyncpg
import pytest

import reverb
from reverb import Context, event
from tests.e2e.processes import eventually
from tests.integration.flow import flow_mesh, most_at_once
from tests.integration.test_cli import run_cli

app = reverb.App("flow-concurrency")
live: Counter[str] = Counter()
most: Counter[str] = Counter()


async def work(tenant: str) -> str:
    live[tenant] += 1
    most[tenant] = max(most[tenant], live[tenant])
    try:
        # Work that takes a little time, so that runs overlap when they may.
        await asyncio.sleep(0.005)
    finally:
        live[tenant] -= 1
    return tenant


@app.function("three-at-once", trigger=event("flow.limited"), concurrency=3)
async def three_at_once(ctx: Context) -> str:
    await ctx.step.run("first", work, "all")
    return str(await ctx.step.run("second", work, "all"))


@app.function(
    "per-tenant",
    trigger=event("flow.tenant"),
    concurrency=reverb.Concurrency(limit=2, key="event.data.tenant"),
)
async def per_tenant(ctx: Context) -> str:
    return str(await ctx.step.run("work", work, ctx.event.data["tenant"]))


@app.function("naps", trigger=event("flow.naps"), concurrency=1)
async def naps(ctx: Context) -> str:
    await ctx.step.sleep("nap", "300ms")
    return str(await ctx.step.run("after", work, "naps"))


gates: dict[int, asyncio.Event] = {}
entered: dict[int, asyncio.Event] = {}


async def blocked(n: int) -> int:
    entered.setdefault(n, asyncio.Event()).set()
    await gates.setdefault(n, asyncio.Event()).wait()
    return n


@app.function("one-by-one", trigger=event("flow.one"), concurrency=1)
async def one_by_one(ctx: Context) -> int:
    return int(await ctx.step.run("blocked", blocked, ctx.event.data["n"]))


@pytest.fixture(autouse=True)
def counters() -> None:
    live.clear()
    most.clear()
    gates.clear()
    entered.clear()


@pytest.mark.timeout(180)
async def test_two_hundred_runs_with_a_limit_of_three_never_run_more_than_three(
    database_url: str, connection: asyncpg.Connection
) -> None:
    async with flow_mesh(database_url, connection, app) as mesh:
        await mesh.send("flow.limited", [{"n": n} for n in range(200)])
        await mesh.all_ended("three-at-once", 200)

        runs = await mesh.runs("three-at-once")
        assert {run["status"] for run in runs} == {"completed"}
        intervals = await mesh.step_intervals("three-at-once")
        assert len(intervals) == 400
        assert 1 < most_at_once(intervals) <= 3
        assert most["all"] <= 3
        # Every slot was handed back.
        assert await connection.fetchval("SELECT count(*) FROM reverb.concurrency_slots") == 0
        assert await connection.fetchval("SELECT count(*) FROM reverb.concurrency_queue") == 0


@pytest.mark.timeout(180)
async def test_a_burst_of_five_hundred_events_over_keys_keeps_each_key_to_its_limit(
    database_url: str, connection: asyncpg.Connection
) -> None:
    async with flow_mesh(database_url, connection, app) as mesh:
        await mesh.send("flow.tenant", [{"tenant": f"t{n % 5}"} for n in range(500)])
        await mesh.all_ended("per-tenant", 500)

        assert {run["status"] for run in await mesh.runs("per-tenant")} == {"completed"}
        assert set(most) == {f"t{n}" for n in range(5)}
        assert max(most.values()) == 2
        # Keys do not share a limit: more than one key's runs ran at once.
        assert most_at_once(await mesh.step_intervals("per-tenant")) > 2


async def test_a_sleeping_run_holds_no_slot(
    database_url: str, connection: asyncpg.Connection
) -> None:
    async with flow_mesh(database_url, connection, app) as mesh:
        await mesh.send("flow.naps", [{}, {}, {}])
        await mesh.all_ended("naps", 3)

        runs = await mesh.runs("naps")
        assert {run["status"] for run in runs} == {"completed"}
        # All three slept at once although the limit is 1: a sleep frees the slot.
        naps = await connection.fetch(
            "SELECT started_at, ended_at FROM reverb.steps WHERE id = 'nap'"
        )
        assert most_at_once([(row["started_at"], row["ended_at"]) for row in naps]) == 3
        assert most["naps"] == 1


async def test_a_held_run_stays_queued_without_a_job_and_shows_what_it_waits_on(
    database_url: str, connection: asyncpg.Connection
) -> None:
    async with flow_mesh(database_url, connection, app) as mesh:
        (first_event,) = await mesh.send("flow.one", [{"n": 1}])
        await entered.setdefault(1, asyncio.Event()).wait()
        (second_event,) = await mesh.send("flow.one", [{"n": 2}])

        async def held() -> bool:
            return bool(await connection.fetchval("SELECT count(*) FROM reverb.concurrency_queue"))

        await eventually(held, within=20, what="the second run to be held")
        (second,) = (await mesh.http.get("/runs", params={"event": second_event})).json()["runs"]
        shown = (await mesh.http.get(f"/runs/{second['id']}")).json()
        assert (shown["status"], shown["waiting_on"]) == (
            "queued",
            {"kind": "concurrency", "until": None},
        )
        # Nothing polls it: no job of its own.
        jobs = await connection.fetchval(
            "SELECT count(*) FROM pgqueuer"
            " WHERE convert_from(payload, 'UTF8')::jsonb->>'run_id' = $1",
            second["id"],
        )
        assert jobs == 0
        cli = await run_cli("run", second["id"], env={"REVERB_URL": str(mesh.http.base_url)})
        assert cli.code == 0, cli
        assert "waiting   on concurrency" in cli.stdout

        gates.setdefault(1, asyncio.Event()).set()
        gates.setdefault(2, asyncio.Event()).set()
        await mesh.all_ended("one-by-one", 2)
        (first,) = (await mesh.http.get("/runs", params={"event": first_event})).json()["runs"]
        done = (await mesh.http.get(f"/runs/{second['id']}")).json()
        assert (done["status"], done["waiting_on"]) == ("completed", None)
        assert done["started_at"] >= first["ended_at"]


@pytest.mark.timeout(120)
async def test_cancelling_gated_runs_hands_their_slots_on_at_once(
    database_url: str, connection: asyncpg.Connection
) -> None:
    async with flow_mesh(database_url, connection, app) as mesh:
        (first_event,) = await mesh.send("flow.one", [{"n": 1}])
        await asyncio.wait_for(entered.setdefault(1, asyncio.Event()).wait(), 20)
        second_event, third_event = await mesh.send("flow.one", [{"n": 2}, {"n": 3}])

        async def queued(count: int) -> None:
            async def there() -> bool:
                found = await connection.fetchval("SELECT count(*) FROM reverb.concurrency_queue")
                return bool(found == count)

            await eventually(there, within=20, what=f"{count} runs held")

        await queued(2)
        first, second, third = [
            await mesh.run_of(event) for event in (first_event, second_event, third_event)
        ]
        # A held run cancelled leaves the queue: the slot will not be handed to it.
        answer = await mesh.http.post(f"/runs/{third}/cancel")
        assert answer.status_code == 200, answer.text
        await queued(1)
        # The running one cancelled (its step still in flight): the next held run starts
        # now, not when that step ends.
        answer = await mesh.http.post(f"/runs/{first}/cancel")
        assert answer.status_code == 200, answer.text
        await asyncio.wait_for(entered.setdefault(2, asyncio.Event()).wait(), 20)
        assert not gates.setdefault(1, asyncio.Event()).is_set()

        gates[1].set()
        gates.setdefault(2, asyncio.Event()).set()
        await mesh.all_ended("one-by-one", 3)
        statuses = {run["id"]: run["status"] for run in await mesh.runs("one-by-one")}
        assert statuses == {first: "cancelled", second: "completed", third: "cancelled"}
        assert 3 not in entered
        assert await connection.fetchval("SELECT count(*) FROM reverb.concurrency_slots") == 0
        assert await connection.fetchval("SELECT count(*) FROM reverb.concurrency_queue") == 0
        assert await connection.fetchval("SELECT sum(used) FROM reverb.concurrency_shards") == 0


@pytest.mark.timeout(120)
async def test_the_worker_whose_run_ends_drives_the_held_run_it_hands_the_slot_to(
    database_url: str, connection: asyncpg.Connection
) -> None:
    job_of = (
        "SELECT j.status, j.queue_manager_id, j.created = j.updated AS picked_when_made"
        " FROM reverb.runs r JOIN pgqueuer j ON j.id = r.job_id WHERE r.id = $1"
    )
    async with flow_mesh(database_url, connection, app) as mesh:
        (first_event,) = await mesh.send("flow.one", [{"n": 1}])
        await asyncio.wait_for(entered.setdefault(1, asyncio.Event()).wait(), 20)
        first = await mesh.run_of(first_event)
        driving = await connection.fetchrow(job_of, first)
        assert driving is not None
        (second_event,) = await mesh.send("flow.one", [{"n": 2}])

        async def held() -> bool:
            found = await connection.fetchval("SELECT count(*) FROM reverb.concurrency_queue")
            return bool(found == 1)

        await eventually(held, within=20, what="the second run held")
        second = await mesh.run_of(second_event)

        gates.setdefault(1, asyncio.Event()).set()
        await asyncio.wait_for(entered.setdefault(2, asyncio.Event()).wait(), 20)
        # The first run's completion handed its slot, and the second run's job, picked by
        # the same worker in that transaction (never queued, notified and dequeued).
        job = await connection.fetchrow(job_of, second)
        assert job is not None
        assert (job["status"], job["queue_manager_id"], job["picked_when_made"]) == (
            "picked",
            driving["queue_manager_id"],
            True,
        )
        gates.setdefault(2, asyncio.Event()).set()
        await mesh.all_ended("one-by-one", 2)
        statuses = {run["status"] for run in await mesh.runs("one-by-one")}
        assert statuses == {"completed"}
        assert await connection.fetchval("SELECT count(*) FROM reverb.concurrency_slots") == 0
