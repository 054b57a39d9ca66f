"""Singleton: one run at a time per key. `skip` skips a new run while one of its key is in
progress (reason `singleton`); `cancel` cancels the one in progress and starts the new one
once it has stopped.

Two workers, a host registered through the gateway (in this process, so a step can wait
for the test), events over HTTP.
"""

import asyncio
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
