"""Idempotency: one run per key per 24 hours; duplicates are skipped (`idempotent`).

Two workers, a host registered through the gateway, events over HTTP.
"""

from collections.abc import AsyncIterator

import asyncpg
import pytest

import reverb
from reverb import Context, event
from reverb_ingress_gateway import Gateway
from reverb_store import execution
from reverb_store.ids import EventId
from tests.integration.arrivals import Deployment, deploy, output
from tests.integration.wakeups import Heard

app = reverb.App("idempotency-tests")


@app.function("charge", trigger=event("order.placed"), idempotency="event.data.order_id")
async def charge(ctx: Context) -> object:
    return await ctx.step.run("charge", lambda: ctx.event.data["amount"])


@app.function("audit", trigger=event("order.placed"))
async def audit(ctx: Context) -> str:
    return ctx.event.id


@pytest.fixture
async def deployment(
    gateway: Gateway, database_url: str, connection: asyncpg.Connection
) -> AsyncIterator[Deployment]:
    async for running in deploy(app, gateway, database_url, connection):
        yield running


async def test_one_run_per_key_and_duplicates_are_skipped(deployment: Deployment) -> None:
    first = await deployment.send("order.placed", {"order_id": 1, "amount": 10})
    again = await deployment.send("order.placed", {"order_id": 1, "amount": 99})
    other = await deployment.send("order.placed", {"order_id": 2, "amount": 20})

    runs = await deployment.finished("charge", count=2)
    # Two workers fan the two events of key 1 out at once: whichever's transaction takes
    # the key first runs, the other is skipped (README "Debounce, idempotency, …").
    ran = {run["event_ids"][0]: output(run) for run in runs}
    assert ran[other] == 20
    [(winner, amount)] = [(event_id, value) for event_id, value in ran.items() if event_id != other]
    assert (winner, amount) in {(first, 10), (again, 99)}
    loser = again if winner == first else first
    assert await deployment.skipped(loser) == [("charge", "idempotent")]
    assert await deployment.skipped(winner) == []
    # A function of the same event without the option is not affected.
    assert len(await deployment.finished("audit", count=3)) == 3


async def test_a_key_is_taken_again_after_24_hours(deployment: Deployment) -> None:
    await deployment.send("order.placed", {"order_id": "A", "amount": 1})
    await deployment.finished("charge")
    # A day passes for the key (the clock the test drives).
    await deployment.connection.execute(
        "UPDATE reverb.idempotency_keys SET taken_at = now() - interval '24 hours 1 second'"
    )

    later = await deployment.send("order.placed", {"order_id": "A", "amount": 2})

    runs = await deployment.finished("charge", count=2)
    assert [output(run) for run in runs] == [1, 2]
    assert await deployment.skipped(later) == []


async def test_events_without_a_key_are_not_deduplicated(deployment: Deployment) -> None:
    missing = [await deployment.send("order.placed", {"amount": n}) for n in (5, 6)]

    runs = await deployment.finished("charge", count=2)
    assert sorted(output(run) for run in runs) == [5, 6]
    assert [await deployment.skipped(event_id) for event_id in missing] == [[], []]


async def test_a_retried_fan_out_keeps_the_key_for_its_own_event(
    deployment: Deployment,
) -> None:
    event_id = await deployment.send("order.placed", {"order_id": 7, "amount": 7})
    await deployment.finished("charge")

    # The same event fanned out again (a retried job): nothing new, nothing skipped.
    again = await execution.create_runs(
        deployment.connection, [EventId(event_id)], None, wakeups=Heard()
    )

    assert again == []
    assert await deployment.skipped(event_id) == []
    assert len(await deployment.runs("charge")) == 1
