"""Singleton: one run at a time per key. `skip` skips a new run while one of its key is in
progress (reason `singleton`); `cancel` cancels the one in progress and starts the new one
once it has stopped.

Two workers, a host registered through the gateway (in this process, so a step can wait
for the test), events over HTTP.
"""

import asyncio
import itertools
from collections.abc import AsyncIterator

import asyncpg
import pytest

import reverb
from reverb import Context, event
from reverb_ingress_gateway import Gateway
from tests.integration.arrivals import Deployment, deploy, output

app = reverb.App("singleton-tests")
started: dict[str, asyncio.Event] = {}
released: dict[str, asyncio.Event] = {}


def gate(name: str, gates: dict[str, asyncio.Event]) -> asyncio.Event:
    return gates.setdefault(name, asyncio.Event())


async def work(name: str) -> str:
    gate(name, started).set()
    await gate(name, released).wait()
    return name


# The names whose step ran, in order (a step may run once per run at most here).
ran: list[str] = []


@app.function(
    "sync-user",
    trigger=event("user.changed"),
    singleton=reverb.Singleton(key="event.data.user", mode="skip"),
)
async def sync_user(ctx: Context) -> object:
    return await ctx.step.run("work", work, ctx.event.data["name"])


@pytest.fixture
async def deployment(
    gateway: Gateway, database_url: str, connection: asyncpg.Connection
) -> AsyncIterator[Deployment]:
    started.clear()
    released.clear()
    ran.clear()
    async for running in deploy(app, gateway, database_url, connection):
        yield running
    for event_ in released.values():
        event_.set()


async def run_of(deployment: Deployment, event_id: str) -> asyncpg.Record:
    query = "SELECT * FROM reverb.runs WHERE event_ids @> ARRAY[$1::text]"
    await deployment.until(
        lambda: deployment.connection.fetchval(query, event_id), what=f"the run of {event_id}"
    )
    run = await deployment.connection.fetchrow(query, event_id)
    assert run is not None
    return run


async def test_skip_mode_skips_a_run_of_a_key_in_progress(deployment: Deployment) -> None:
    first = await deployment.send("user.changed", {"user": 1, "name": "first"})
    await gate("first", started).wait()

    second = await deployment.send("user.changed", {"user": 1, "name": "second"})
    other = await deployment.send("user.changed", {"user": 2, "name": "other"})
    await gate("other", started).wait()  # another key runs beside it

    async def second_skipped() -> bool:
        run = await run_of(deployment, second)
        return bool(run["status"] == "cancelled")

    await deployment.until(second_skipped, what="the second run of the key to be skipped")
    skipped = await run_of(deployment, second)
    assert skipped["started_at"] is None
    assert "singleton" in skipped["error"]
    assert await deployment.skipped(second) == [("sync-user", "singleton")]
    assert "second" not in started

    gate("first", released).set()
    gate("other", released).set()
    await deployment.finished("sync-user", count=3)
    assert [(await run_of(deployment, e))["status"] for e in (first, other)] == [
        "completed",
        "completed",
    ]

    # Once the key's run ended, the next event of the key runs.
    gate("third", released).set()
    third = await deployment.send("user.changed", {"user": 1, "name": "third"})
    await deployment.finished("sync-user", count=4)
    assert output(await run_of(deployment, third)) == "third"
    assert await deployment.skipped(third) == []


@app.function(
    "replace-user",
    trigger=event("user.replaced"),
    singleton=reverb.Singleton(key="event.data.user", mode="cancel"),
)
async def replace_user(ctx: Context) -> object:
    first = await ctx.step.run("work", work, ctx.event.data["name"])
    return await ctx.step.run("after", lambda: f"{first} done")


async def test_cancel_mode_cancels_the_run_in_progress_and_starts_the_new_one_after_it(
    deployment: Deployment,
) -> None:
    first = await deployment.send("user.replaced", {"user": 1, "name": "old"})
    await gate("old", started).wait()

    gate("new", released).set()
    second = await deployment.send("user.replaced", {"user": 1, "name": "new"})

    async def cancelled() -> bool:
        run = await run_of(deployment, first)
        return bool(run["status"] == "cancelled")

    await deployment.until(cancelled, what="the run in progress to be cancelled")
    # The new run waits while the cancelled one still runs its step, and says why.
    waiting = await run_of(deployment, second)

    async def held() -> bool:
        shown = (await deployment.http.get(f"/runs/{waiting['id']}")).json()
        return bool((shown["waiting_on"] or {}).get("kind") == "singleton")

    await deployment.until(held, what="the new run to be held for the key")
    assert await deployment.waiting_on(waiting["id"]) == (
        {"kind": "singleton", "until": None},
        "waiting   on singleton",
    )
    waiting = await run_of(deployment, second)
    assert (waiting["status"], waiting["started_at"]) == ("queued", None)
    assert "new" not in started

    gate("old", released).set()

    async def second_done() -> bool:
        run = await run_of(deployment, second)
        return bool(run["status"] == "completed")

    await deployment.until(second_done, what="the new run to complete")
    old, new = await run_of(deployment, first), await run_of(deployment, second)
    assert output(new) == "new done"
    assert "RunCancelled" in old["error"] and "newer run of its singleton key" in old["error"]
    old_steps = await deployment.connection.fetch(
        "SELECT id, ended_at FROM reverb.steps WHERE run_id = $1", old["id"]
    )
    # The old run's step in progress finished and committed; no further step started.
    assert [step["id"] for step in old_steps] == ["work"]
    assert new["started_at"] >= old_steps[0]["ended_at"]
    assert await deployment.skipped(second) == []
    assert await deployment.skipped(first) == []


@app.function(
    "quick-replace",
    trigger=event("user.quick"),
    singleton=reverb.Singleton(key="event.data.user", mode="cancel"),
)
async def quick_replace(ctx: Context) -> object:
    return await ctx.step.run("only", record, ctx.event.data["name"])


async def record(name: str) -> str:
    ran.append(name)
    gate(name, started).set()
    await gate(name, released).wait()
    return name


async def settled(deployment: Deployment, function_id: str, count: int) -> list[asyncpg.Record]:
    """The function's runs once `count` of them exist and all ended, let go by their jobs."""

    async def ended() -> bool:
        runs = await deployment.runs(function_id)
        return len(runs) == count and all(
            run["status"] in ("completed", "cancelled") and run["job_id"] is None for run in runs
        )

    try:
        await deployment.until(ended, what=f"every run of {function_id} to end", within=60)
    except AssertionError as error:
        runs = await deployment.runs(function_id)
        states = [(run["id"], run["status"], run["job_id"], run["waiting_kind"]) for run in runs]
        raise AssertionError(f"{error}; runs: {states}") from None
    return await deployment.runs(function_id)


async def assert_one_at_a_time(deployment: Deployment, function_id: str) -> None:
    spans = await deployment.connection.fetch(
        "SELECT r.id, min(s.started_at) AS started, max(s.ended_at) AS ended"
        " FROM reverb.runs r JOIN reverb.steps s ON s.run_id = r.id"
        " WHERE r.function_id = $1 GROUP BY r.id ORDER BY started",
        function_id,
    )
    for before, after in itertools.pairwise(spans):
        assert before["ended"] <= after["started"], "two runs of a key executed at once"


async def assert_nothing_left(deployment: Deployment) -> None:
    """No key held or waited for, no run still stopping, no job of the function pending."""
    connection = deployment.connection
    assert await connection.fetchval("SELECT count(*) FROM reverb.stopping_runs") == 0
    left = await connection.fetch(
        "SELECT s.run_id, r.status FROM reverb.singletons s JOIN reverb.runs r ON r.id = s.run_id"
    )
    assert left == []


async def test_cancel_racing_completion_has_one_outcome_each_time(
    deployment: Deployment,
) -> None:
    """Round after round, a run's step is let finish at the moment the next event of its
    key arrives: the cancellation races the run's completion. Each run ends exactly one
    way (completed with its output, or cancelled after its step committed), the new run
    always runs, two runs of the key never execute at once, and nothing is left stuck."""
    rounds = 25
    sent = [await deployment.send("user.quick", {"user": 7, "name": "r0"})]
    for n in range(rounds):
        await gate(f"r{n}", started).wait()
        # Let the step finish and send the next event at once: the race.
        _, next_event = await asyncio.gather(
            asyncio.to_thread(gate(f"r{n}", released).set),
            deployment.send("user.quick", {"user": 7, "name": f"r{n + 1}"}),
        )
        sent.append(next_event)
    gate(f"r{rounds}", released).set()

    runs = await settled(deployment, "quick-replace", len(sent))
    by_event = {run["event_ids"][0]: run for run in runs}
    outcomes = []
    for n, event_id in enumerate(sent):
        run = by_event[event_id]
        step = await deployment.connection.fetchrow(
            "SELECT status, output FROM reverb.steps WHERE run_id = $1 AND id = 'only'", run["id"]
        )
        # Every run's step ran once and committed: none was cancelled before it started
        # (each new event came once its predecessor was in its step).
        assert step is not None and step["status"] == "completed", n
        if run["status"] == "completed":
            assert output(run) == f"r{n}"
            assert run["error"] is None
        else:
            assert run["status"] == "cancelled" and "RunCancelled" in run["error"], n
            assert run["output"] is None
        outcomes.append(run["status"])
    assert outcomes[-1] == "completed"
    assert ran == [f"r{n}" for n in range(rounds + 1)]
    await assert_one_at_a_time(deployment, "quick-replace")
    await assert_nothing_left(deployment)


async def test_a_burst_of_cancels_leaves_the_newest_run_and_no_two_at_once(
    deployment: Deployment,
) -> None:
    """Events of a key sent back to back: each cancels what came before it (queued, held
    or running); the newest always completes."""
    for n in range(12):
        gate(f"b{n}", released).set()
    sent = [await deployment.send("user.quick", {"user": 8, "name": f"b{n}"}) for n in range(12)]

    runs = await settled(deployment, "quick-replace", len(sent))
    last = next(run for run in runs if run["event_ids"][0] == sent[-1])
    assert (last["status"], output(last)) == ("completed", "b11")
    await assert_one_at_a_time(deployment, "quick-replace")
    await assert_nothing_left(deployment)
