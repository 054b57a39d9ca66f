"""`step.invoke` goes through the invoked function's arrival options as an event's run
does (issue 11: one admission path): an idempotency key dedupes invokes, and a singleton
skips an invoke while another run of its key goes on, and a rate limit skips an invoke
beyond it; either way the caller's step fails at once with RunSkipped (it never hangs).
Two real workers, a host registered through the gateway, real PostgreSQL."""

import asyncio
import json

import asyncpg
import pytest

import reverb
from reverb import Context, event
from tests.integration.flow import flow_mesh

app = reverb.App("flow-invoke")
entered = asyncio.Event()
release = asyncio.Event()


@app.function("charge", trigger=event("flow.charge"), idempotency="event.data.order")
async def charge(ctx: Context) -> str:
    return str(ctx.event.data["order"])


async def _outcome(ctx: Context, step_id: str, function_id: str, data: dict[str, str]) -> str:
    try:
        return str(await ctx.step.invoke(step_id, function_id, data))
    except reverb.StepError as error:
        return f"{error.error_type}: {error.message}"


@app.function("checkout", trigger=event("flow.checkout"))
async def checkout(ctx: Context) -> list[str]:
    first = await _outcome(ctx, "first", "charge", {"order": "o-1"})
    again = await _outcome(ctx, "again", "charge", {"order": "o-1"})
    other = await _outcome(ctx, "other", "charge", {"order": "o-2"})
    return [first, again, other]


async def wait_here() -> str:
    entered.set()
    await release.wait()
    return "done"


@app.function("solo", trigger=event("flow.solo"), singleton=reverb.Singleton(mode="skip"))
async def solo(ctx: Context) -> str:
    return str(await ctx.step.run("work", wait_here))


@app.function("caller", trigger=event("flow.caller"))
async def caller(ctx: Context) -> str:
    return await _outcome(ctx, "solo", "solo", {})


@app.function(
    "limited",
    trigger=event("flow.limited"),
    rate_limit=reverb.RateLimit(limit=1, period="1h"),
    throttle=reverb.Throttle(limit=10, period="1h"),
)
async def limited(ctx: Context) -> str:
    return "ran"


@app.function("twice", trigger=event("flow.twice"))
async def twice(ctx: Context) -> list[str]:
    return [await _outcome(ctx, step, "limited", {}) for step in ("one", "two")]


@pytest.fixture(autouse=True)
def events() -> None:
    entered.clear()
    release.clear()


@pytest.mark.timeout(120)
async def test_an_invoke_with_a_held_idempotency_key_fails_at_once_with_run_skipped(
    database_url: str, connection: asyncpg.Connection
) -> None:
    async with flow_mesh(database_url, connection, app) as mesh:
        await mesh.send("flow.checkout", [{}])
        await mesh.all_ended("checkout", 1)
        (run,) = await mesh.runs("checkout")
        assert run["status"] == "completed"
        first, again, other = json.loads(run["output"])
        assert (first, other) == ("o-1", "o-2")
        assert again.startswith("RunSkipped: skipped: idempotent")
        # One child per key; the duplicate's invoked event lists the skip.
        children = await mesh.runs("charge")
        assert sorted(child["output"] for child in children) == ['"o-1"', '"o-2"']
        skips = await connection.fetch(
            "SELECT function_id, reason FROM reverb.event_skips s"
            " JOIN reverb.events e ON e.id = s.event_id WHERE e.name = 'reverb/function.invoked'"
        )
        assert [(row["function_id"], row["reason"]) for row in skips] == [("charge", "idempotent")]


@pytest.mark.timeout(120)
async def test_an_invoke_of_a_singleton_while_its_key_runs_fails_at_once_with_run_skipped(
    database_url: str, connection: asyncpg.Connection
) -> None:
    async with flow_mesh(database_url, connection, app) as mesh:
        await mesh.send("flow.solo", [{}])
        await asyncio.wait_for(entered.wait(), 20)
        await mesh.send("flow.caller", [{}])
        await mesh.all_ended("caller", 1)
        (run,) = await mesh.runs("caller")
        assert run["status"] == "completed"
        assert json.loads(run["output"]).startswith("RunSkipped:")
        statuses = sorted(child["status"] for child in await mesh.runs("solo"))
        assert statuses == ["cancelled", "running"]
        release.set()
        await mesh.all_ended("solo", 2)


@pytest.mark.timeout(120)
async def test_an_invoked_run_passes_the_throttle_and_the_rate_limit_of_its_function(
    database_url: str, connection: asyncpg.Connection
) -> None:
    async with flow_mesh(database_url, connection, app) as mesh:
        await mesh.send("flow.twice", [{}])
        await mesh.all_ended("twice", 1)
        (run,) = await mesh.runs("twice")
        first, second = json.loads(run["output"])
        assert first == "ran"
        assert second.startswith("RunSkipped:") and "rate_limited" in second
        passes = await connection.fetchval("SELECT count(*) FROM reverb.throttle_keys")
        assert passes == 1  # the throttle counted the invoked runs' starts
