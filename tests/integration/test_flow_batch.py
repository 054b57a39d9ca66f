"""Batch: up to `max_size` events, or whatever arrived within `timeout` of the first,
start one run (per key), whose `ctx.events` holds them all, oldest first.

Two workers, a host registered through the gateway, events over HTTP. A batch of an
hour times out when the test says so (`end_now`); one test waits for a short timeout in
real time.
"""

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
import pytest

import reverb
from reverb import Context, event
from reverb_ingress_gateway import Gateway
from tests.integration.arrivals import Deployment, deploy, output

app = reverb.App("batch-tests")


@app.function(
    "bulk-insert",
    trigger=event("row.added"),
    batch=reverb.Batch(max_size=3, timeout="1h", key="event.data.table"),
)
async def bulk_insert(ctx: Context) -> object:
    assert ctx.event == ctx.events[0]
    return [e.data["n"] for e in ctx.events]


@app.function("flush", trigger=event("line.logged"), batch=reverb.Batch(max_size=50, timeout="3s"))
async def flush(ctx: Context) -> object:
    return sorted(e.data["n"] for e in ctx.events)


@pytest.fixture
async def deployment(
    gateway: Gateway, database_url: str, connection: asyncpg.Connection
) -> AsyncIterator[Deployment]:
    async for running in deploy(app, gateway, database_url, connection):
        yield running


async def open_batch(deployment: Deployment, table: str, size: int) -> str:
    """The run of the table's open batch, once it holds `size` events."""
    query = (
        "SELECT run_id FROM reverb.batches WHERE key = $1 AND open AND cardinality(event_ids) = $2"
    )
    await deployment.until(
        lambda: deployment.connection.fetchval(query, f'"{table}"', size),
        what=f"the batch of {table!r} to hold {size} events",
    )
    run_id: str = await deployment.connection.fetchval(query, f'"{table}"', size)
    return run_id


async def test_a_full_batch_starts_at_once_and_a_partial_one_at_its_timeout(
    deployment: Deployment,
) -> None:
    for n in range(7):
        await deployment.send("row.added", {"table": "users", "n": n})
    other = await deployment.send("row.added", {"table": "orders", "n": 100})

    full = await deployment.finished("bulk-insert", count=2)
    batches = [output(run) for run in full if run["status"] == "completed"]
    # Two full batches of three, each oldest first (fan-outs of two workers may add the
    # events in another order than they were sent).
    assert [len(batch) for batch in batches] == [3, 3]
    assert all(batch == sorted(batch) for batch in batches)
    [left] = sorted(set(range(7)) - {n for batch in batches for n in batch})
    # The last one waits in its batch: queued, never started, woken only at the timeout.
    run_id = await open_batch(deployment, "users", 1)
    [held] = [run for run in await deployment.runs("bulk-insert") if run["id"] == run_id]
    assert (held["status"], held["started_at"]) == ("queued", None)
    assert await deployment.jobs_of(run_id) == 1
    due = await deployment.connection.fetchval(
        "SELECT due_at FROM reverb.batches WHERE run_id = $1", run_id
    )
    waiting, line = await deployment.waiting_on(run_id)
    assert waiting is not None and waiting["kind"] == "batch"
    assert datetime.fromisoformat(waiting["until"]) == due
    assert line.startswith("waiting   on batch until ")

    await deployment.end_now("batches", run_id)
    await deployment.end_now("batches", await open_batch(deployment, "orders", 1))

    runs = await deployment.finished("bulk-insert", count=4)
    assert sorted(output(run) for run in runs) == sorted([*batches, [left], [100]])
    # Every run lists its events, oldest first.
    by_output = {tuple(output(run)): run for run in runs}
    assert list(by_output[(100,)]["event_ids"]) == [other]
    assert await deployment.connection.fetchval("SELECT count(*) FROM reverb.batches") == 0


async def test_a_burst_is_cut_into_full_batches_without_losing_an_event(
    deployment: Deployment,
) -> None:
    await asyncio.gather(
        *(deployment.send("row.added", {"table": "burst", "n": n}) for n in range(30))
    )

    runs = await deployment.finished("bulk-insert", count=10)
    batches = [output(run) for run in runs]
    assert all(len(batch) == 3 for batch in batches)
    assert sorted(n for batch in batches for n in batch) == list(range(30))


async def test_a_short_batch_times_out_in_real_time(deployment: Deployment) -> None:
    await asyncio.gather(*(deployment.send("line.logged", {"n": n}) for n in range(5)))

    [run] = await deployment.finished("flush")
    assert (run["status"], output(run)) == ("completed", [0, 1, 2, 3, 4])
