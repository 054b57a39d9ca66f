"""Waiting for events: step.wait_for_event, wait_for_any and wait_for_all on real PostgreSQL,
a real function host and two workers."""

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

import reverb
from reverb import Context, event
from reverb_function_host import Host
from reverb_function_host import start as start_host
from reverb_ingress_gateway import Gateway
from reverb_queue_worker import Worker
from reverb_queue_worker import start as start_worker
from reverb_store import NewEvent, insert_events
from tests.e2e.processes import eventually
from tests.integration.test_cli import run_cli
from tests.integration.test_worker_runs import host_settings, register, worker_settings

app = reverb.App("wait-tests")


def _event(found: reverb.Event | None) -> object:
    return None if found is None else {"id": found.id, "name": found.name, "data": found.data}


@app.function("await-payment", trigger=event("test.order.created"))
async def await_payment(ctx: Context) -> object:
    paid = await ctx.step.wait_for_event(
        "wait-paid", event="test.order.paid", match="data.order_id", timeout="1m"
    )
    after = await ctx.step.run("after", lambda: "after")
    return {"paid": _event(paid), "after": after}


@app.function("await-payment-briefly", trigger=event("test.order.brief"))
async def await_payment_briefly(ctx: Context) -> object:
    paid = await ctx.step.wait_for_event(
        "wait-paid", event="test.order.paid", match="data.order_id", timeout="1s"
    )
    return {"paid": _event(paid)}


@app.function("await-past-payment", trigger=event("test.order.late"))
async def await_past_payment(ctx: Context) -> object:
    paid = await ctx.step.wait_for_event(
        "wait-paid",
        event="test.order.paid",
        match="data.order_id",
        timeout="1m",
        lookback="5m",
    )
    return {"paid": _event(paid)}


@app.function("await-big-payment", trigger=event("test.order.big"))
async def await_big_payment(ctx: Context) -> object:
    paid = await ctx.step.wait_for_event(
        "wait-paid",
        event="test.order.paid",
        match="data.order_id",
        if_="async.data.amount >= event.data.minimum",
        timeout="1m",
    )
    return {"paid": _event(paid)}


@app.function("await-first", trigger=event("test.order.either"))
async def await_first(ctx: Context) -> object:
    found = await ctx.step.wait_for_any(
        "paid-or-cancelled",
        [
            reverb.Wait(event="test.order.paid", match="data.order_id"),
            reverb.Wait(event="test.order.cancelled", match="data.order_id"),
        ],
        timeout="1m",
    )
    return None if found is None else {"index": found[0], "event": _event(found[1])}


@app.function("await-both", trigger=event("test.order.both"))
async def await_both(ctx: Context) -> object:
    found = await ctx.step.wait_for_all(
        "paid-and-shipped",
        [
            reverb.Wait(event="test.order.paid", match="data.order_id"),
            reverb.Wait(event="test.order.shipped", match="data.order_id"),
        ],
        timeout="2s",
    )
    return [_event(item) for item in found]


@app.function("bad-condition", trigger=event("test.order.bad"))
async def bad_condition(ctx: Context) -> object:
    # Built at run time, so registration cannot see it: the worker refuses it.
    condition = "async.data.amount " + str(ctx.event.data["operator"])
    return await ctx.step.wait_for_event(
        "wait-paid", event="test.order.paid", if_=condition, timeout="1m"
    )


@dataclass
class Waits:
    connection: asyncpg.Connection
    workers: list[Worker]
    host: Host

    async def send(self, name: str, data: object) -> str:
        (event_id,) = await insert_events(
            self.connection, [NewEvent(name, orjson.dumps(data).decode())]
        )
        return event_id

    async def run_of(self, event_id: str) -> asyncpg.Record | None:
        return await self.connection.fetchrow(
            "SELECT * FROM reverb.runs WHERE $1 = ANY(event_ids)", event_id
        )

    async def status_is(self, event_id: str, *statuses: str, within: float = 10) -> asyncpg.Record:
        async def reached() -> bool:
            run = await self.run_of(event_id)
            return run is not None and run["status"] in statuses

        await eventually(reached, within=within, what=f"a run of {event_id} to be {statuses}")
        run = await self.run_of(event_id)
        assert run is not None
        return run

    async def output(self, event_id: str, within: float = 10) -> Any:
        run = await self.status_is(event_id, "completed", "failed", within=within)
        assert run["status"] == "completed", run["error"]
        return orjson.loads(run["output"])

    async def open_waits(self, run_id: str) -> int:
        count: int = await self.connection.fetchval(
            "SELECT count(*) FROM reverb.waits WHERE run_id = $1", run_id
        )
        return count


@pytest.fixture(scope="module")
async def host() -> AsyncIterator[Host]:
    running = await start_host(app, host_settings(), register_app=False)
    yield running
    await running.stop(0)


@pytest.fixture
async def waits(
    database_url: str, connection: asyncpg.Connection, host: Host
) -> AsyncIterator[Waits]:
    await register(connection, app, f"127.0.0.1:{host.port}")
    workers = [await start_worker(worker_settings(database_url)) for _ in range(2)]
    yield Waits(connection, workers, host)
    for worker in workers:
        await worker.stop()


async def test_a_waiting_run_resumes_with_the_matching_event(waits: Waits) -> None:
    created = await waits.send("test.order.created", {"order_id": 7})
    run = await waits.status_is(created, "waiting")
    assert await waits.open_waits(run["id"]) == 1

    await waits.send("test.order.paid", {"order_id": 8, "note": "another order"})
    paid = await waits.send("test.order.paid", {"order_id": 7, "amount": 12})

    output = await waits.output(created)
    assert output == {
        "paid": {"id": paid, "name": "test.order.paid", "data": {"order_id": 7, "amount": 12}},
        "after": "after",
    }
    assert await waits.open_waits(run["id"]) == 0
    step = await waits.connection.fetchrow(
        "SELECT kind, status FROM reverb.steps WHERE run_id = $1 AND id = 'wait-paid'", run["id"]
    )
    assert step is not None and (step["kind"], step["status"]) == ("wait_for_event", "completed")


async def test_a_run_blocked_in_a_wait_is_waiting_in_the_api_and_the_cli(
    waits: Waits, gateway: Gateway
) -> None:
    created = await waits.send("test.order.created", {"order_id": 70})
    run = await waits.status_is(created, "waiting")
    url = f"http://127.0.0.1:{gateway.http_port}"
    async with httpx.AsyncClient(base_url=url) as client:
        shown = (await client.get(f"/runs/{run['id']}")).json()
        listed = (await client.get("/runs", params={"status": "waiting"})).json()
    assert shown["status"] == "waiting"
    assert [(step["id"], step["kind"], step["status"]) for step in shown["steps"]] == [
        ("wait-paid", "wait_for_event", "waiting")
    ]
    assert [item["id"] for item in listed["runs"]] == [run["id"]]
    printed = await run_cli("runs", "--status", "waiting", env={"REVERB_URL": url})
    assert printed.code == 0, printed.stderr
    assert run["id"] in printed.stdout and "waiting" in printed.stdout


async def test_a_wait_that_times_out_returns_none(waits: Waits) -> None:
    created = await waits.send("test.order.brief", {"order_id": 1})
    run = await waits.status_is(created, "waiting")
    began = time.monotonic()

    assert await waits.output(created) == {"paid": None}
    assert time.monotonic() - began < 5
    assert await waits.open_waits(run["id"]) == 0
    # An event arriving later finds nothing to resolve.
    await waits.send("test.order.paid", {"order_id": 1})


async def test_a_wait_times_out_when_its_time_has_come_whoever_scheduled_it(
    waits: Waits,
) -> None:
    # Time driven by the test: the wait's minute passes at once (its step's wake_at and its
    # run's wake-up move to now). No worker's timer was armed for that time: a worker
    # finds it when it next looks at the due times (at most a poll interval later).
    created = await waits.send("test.order.created", {"order_id": 71})
    run = await waits.status_is(created, "waiting")
    async with waits.connection.transaction():
        await waits.connection.execute(
            "UPDATE reverb.steps SET wake_at = now() WHERE run_id = $1 AND id = 'wait-paid'",
            run["id"],
        )
        moved = await waits.connection.execute(
            "UPDATE reverb.run_wakeups SET due_at = now() WHERE run_id = $1", run["id"]
        )
    assert moved == "UPDATE 1"

    assert await waits.output(created, within=15) == {"paid": None, "after": "after"}
    assert await waits.open_waits(run["id"]) == 0


async def test_a_lookback_finds_the_earliest_event_already_accepted(waits: Waits) -> None:
    first = await waits.send("test.order.paid", {"order_id": 3, "try": 1})
    await waits.send("test.order.paid", {"order_id": 3, "try": 2})

    created = await waits.send("test.order.late", {"order_id": 3})

    output = await waits.output(created)
    assert output["paid"]["id"] == first
    run = await waits.run_of(created)
    assert run is not None and await waits.open_waits(run["id"]) == 0


async def test_without_a_lookback_an_earlier_event_is_not_seen(waits: Waits) -> None:
    await waits.send("test.order.paid", {"order_id": 4})
    # Let the earlier event's match_waits job run before the wait exists.
    await eventually(
        lambda: _no_jobs(waits.connection, "match_waits"), what="the earlier event's job"
    )
    created = await waits.send("test.order.brief", {"order_id": 4})

    assert await waits.output(created) == {"paid": None}


async def _no_jobs(connection: asyncpg.Connection, entrypoint: str) -> bool:
    count = await connection.fetchval(
        "SELECT count(*) FROM pgqueuer WHERE entrypoint = $1", entrypoint
    )
    return bool(count == 0)


async def test_a_condition_filters_the_candidates(waits: Waits) -> None:
    created = await waits.send("test.order.big", {"order_id": 5, "minimum": 100})
    await waits.status_is(created, "waiting")

    await waits.send("test.order.paid", {"order_id": 5, "amount": 20})
    await waits.send("test.order.paid", {"order_id": 5})  # no amount: not a match
    big = await waits.send("test.order.paid", {"order_id": 5, "amount": 250})

    output = await waits.output(created)
    assert output["paid"]["id"] == big


async def test_wait_for_any_resolves_with_the_first_and_removes_the_others(
    waits: Waits,
) -> None:
    created = await waits.send("test.order.either", {"order_id": 9})
    run = await waits.status_is(created, "waiting")
    assert await waits.open_waits(run["id"]) == 2

    cancelled = await waits.send("test.order.cancelled", {"order_id": 9})

    output = await waits.output(created)
    assert output["index"] == 1 and output["event"]["id"] == cancelled
    assert await waits.open_waits(run["id"]) == 0


async def test_wait_for_all_lists_what_came_and_none_for_the_rest(waits: Waits) -> None:
    created = await waits.send("test.order.both", {"order_id": 11})
    await waits.status_is(created, "waiting")

    paid = await waits.send("test.order.paid", {"order_id": 11})

    output = await waits.output(created)
    assert output[0]["id"] == paid and output[1] is None


async def test_a_bad_dynamic_condition_fails_the_run_naming_function_and_step(
    waits: Waits,
) -> None:
    created = await waits.send("test.order.bad", {"order_id": 1, "operator": ">"})

    run = await waits.status_is(created, "failed")

    error = orjson.loads(run["error"])
    step = await waits.connection.fetchrow(
        "SELECT status, error FROM reverb.steps WHERE run_id = $1", run["id"]
    )
    assert step is not None and step["status"] == "failed"
    step_error = orjson.loads(step["error"])
    assert step_error["type"] == "InvalidWait"
    assert "function 'bad-condition', step 'wait-paid': if_" in step_error["message"]
    # Not retried: the function saw StepError for the step and failed for good.
    assert error["type"] == "StepError" and run["attempt"] == 0


async def test_an_event_accepted_while_its_wait_commits_always_resolves_it(
    waits: Waits, database_url: str
) -> None:
    """Each run's event is sent from another connection the moment the run starts, so it
    lands before, while or after the run commits its wait (with a lookback, an event is
    due to resolve it in every case)."""
    sender = await asyncpg.connect(database_url)
    try:
        created = []
        for order in range(40):
            created.append(await waits.send("test.order.late", {"order_id": 1000 + order}))
            await waits.status_is(created[-1], "running", "waiting", "completed")
            data = orjson.dumps({"order_id": 1000 + order}).decode()
            await insert_events(sender, [NewEvent("test.order.paid", data)])
        for event_id in created:
            output = await waits.output(event_id, within=30)
            assert output["paid"] is not None
    finally:
        await sender.close()
