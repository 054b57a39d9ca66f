"""`cancel_on`: a run cancelled by an event accepted after it was created, wherever it is
(sleeping, running: at its next step boundary), and left alone by events that do not
match, that came first, or that came after its cancel_on lapsed; runs started by cron
and by `step.invoke` too. A real gateway (the host registers through it), two workers,
a real host and PostgreSQL.
"""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

import reverb
from reverb import Context, StepError, cron, event
from reverb_function_host import start as start_host
from reverb_ingress_gateway import Gateway
from reverb_queue_worker import Worker
from reverb_queue_worker import start as start_worker
from reverb_store import execution, jobs
from tests.e2e.processes import eventually
from tests.integration.step_gates import StepGate
from tests.integration.test_worker_runs import host_settings, worker_settings

app = reverb.App("cancel-on-tests")
gate = StepGate()
executed = gate.executed
# Runs held in a gated step, released when the test ends.
held: list[str] = []

ORDER_CANCELLED = reverb.CancelOn(
    "co.order.cancelled", match="data.order_id", if_="async.data.reason != 'keep'"
)


@app.function("fulfil", trigger=event("co.order.created"), cancel_on=ORDER_CANCELLED)
async def fulfil(ctx: Context) -> str:
    await ctx.step.run("charge", lambda: "charged")
    await ctx.step.sleep("wait-for-stock", "1h")
    executed[f"{ctx.run_id}:ship"] += 1
    return "shipped"


@app.function(
    "fulfil-briefly",
    trigger=event("co.brief.created"),
    cancel_on=reverb.CancelOn("co.brief.cancelled", match="data.order_id", timeout="2s"),
)
async def fulfil_briefly(ctx: Context) -> str:
    await ctx.step.sleep("wait-for-stock", "1h")
    return "shipped"


async def blocking(run_id: str) -> str:
    held.append(run_id)
    await gate.hold(run_id, "pack")
    return "packed"


def label(run_id: str) -> str:
    executed[f"{run_id}:label"] += 1
    return "labelled"


@app.function(
    "pack",
    trigger=event("co.pack.created"),
    cancel_on=reverb.CancelOn("co.pack.cancelled", match="data.order_id"),
)
async def pack(ctx: Context) -> str:
    await ctx.step.run("pack", blocking, ctx.run_id)
    return str(await ctx.step.run("label", label, ctx.run_id))


@app.function(
    "quick",
    trigger=event("co.quick.created"),
    cancel_on=reverb.CancelOn("co.quick.cancelled", match="data.order_id"),
)
async def quick(ctx: Context) -> int:
    total = 0
    for n in range(3):
        total += await ctx.step.run("add", lambda n=n: n)
    return total


def declined() -> str:
    raise reverb.RetryAfterError("1h", "the card was declined")


@app.function(
    "charge",
    trigger=event("co.charge.created"),
    cancel_on=reverb.CancelOn("co.order.cancelled", match="data.order_id"),
)
async def charge(ctx: Context) -> str:
    return str(await ctx.step.run("charge", declined))


@app.function(
    "nightly-report",
    trigger=cron("0 3 1 1 *"),
    cancel_on=reverb.CancelOn("co.reports.stop"),
)
async def nightly_report(ctx: Context) -> str:
    await ctx.step.sleep("wait-for-data", "1h")
    return "reported"


@app.function(
    "reserve",
    trigger=event("co.never"),
    cancel_on=reverb.CancelOn("co.order.cancelled", match="data.order_id"),
)
async def reserve(ctx: Context) -> str:
    await ctx.step.sleep("hold-stock", "1h")
    return "reserved"


@app.function("checkout", trigger=event("co.checkout"))
async def checkout(ctx: Context) -> dict[str, str]:
    try:
        await ctx.step.invoke("reserve", "reserve", {"order_id": ctx.event.data["order_id"]})
    except StepError as error:
        return {"reserve": error.error_type}
    return {"reserve": "returned"}


@dataclass
class Mesh:
    connection: asyncpg.Connection
    client: httpx.AsyncClient
    workers: list[Worker]

    async def send(self, name: str, data: dict[str, Any]) -> str:
        response = await self.client.post("/events", json={"name": name, "data": data})
        assert response.status_code == 202, response.text
        return str(response.json()["ids"][0])

    async def matched(self, event_id: str) -> None:
        """Until the event's match_waits job has run."""

        async def done() -> bool:
            pending: int = await self.connection.fetchval(
                "SELECT count(*) FROM pgqueuer WHERE entrypoint = 'match_waits'"
                " AND convert_from(payload, 'UTF8')::jsonb -> 'event_ids' ? $1",
                event_id,
            )
            return pending == 0

        await eventually(done, within=20, what=f"the match_waits job of {event_id}")

    async def run_id(self, event_id: str, function_id: str) -> str:
        async def created() -> bool:
            return await self._run_id(event_id, function_id) is not None

        await eventually(created, within=20, what=f"a run of {function_id}")
        found = await self._run_id(event_id, function_id)
        assert found is not None
        return found

    async def _run_id(self, event_id: str, function_id: str) -> str | None:
        found: str | None = await self.connection.fetchval(
            "SELECT id FROM reverb.runs WHERE $1 = ANY(event_ids) AND function_id = $2",
            event_id,
            function_id,
        )
        return found

    async def run(self, run_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/runs/{run_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def status_is(self, run_id: str, *statuses: str, within: float = 20) -> dict[str, Any]:
        async def reached() -> bool:
            return (await self.run(run_id))["status"] in statuses

        await eventually(reached, within=within, what=f"run {run_id} to be {statuses}")
        return await self.run(run_id)

    async def waits_of(self, run_id: str) -> int:
        count: int = await self.connection.fetchval(
            "SELECT count(*) FROM reverb.waits WHERE run_id = $1", run_id
        )
        return count


@pytest.fixture
async def mesh(
    database_url: str, connection: asyncpg.Connection, gateway: Gateway
) -> AsyncIterator[Mesh]:
    host = await start_host(app, host_settings(ingress_address=f"127.0.0.1:{gateway.grpc_port}"))
    await asyncio.wait_for(host.registered.wait(), timeout=10)
    workers = [await start_worker(worker_settings(database_url)) for _ in range(2)]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        yield Mesh(connection, client, workers)
    for run_id in held:
        gate.released(run_id).set()
    for worker in workers:
        await worker.stop()
    await host.stop(0)


async def test_a_sleeping_run_is_cancelled_by_the_matching_event_and_shows_it(
    mesh: Mesh,
) -> None:
    created = await mesh.send("co.order.created", {"order_id": 1})
    run_id = await mesh.run_id(created, "fulfil")
    await mesh.status_is(run_id, "sleeping")
    assert await mesh.waits_of(run_id) == 1

    cancelling = await mesh.send("co.order.cancelled", {"order_id": 1, "reason": "customer"})

    run = await mesh.status_is(run_id, "cancelled")
    assert run["error"]["type"] == "RunCancelled"
    assert run["error"]["message"] == (
        f"cancelled by event {cancelling} (co.order.cancelled): cancel_on[0] of function 'fulfil'"
    )
    assert run["cancelled_by"] == {
        "event_id": cancelling,
        "event_name": "co.order.cancelled",
        "cancel_on": 0,
    }
    assert [(step["id"], step["status"]) for step in run["steps"]] == [
        ("charge", "completed"),
        ("wait-for-stock", "sleeping"),
    ]
    shown = (await mesh.client.get(f"/events/{cancelling}")).json()
    assert shown["cancelled"] == [{"run_id": run_id, "function_id": "fulfil"}]
    assert shown["runs"] == []
    # The cancel took the run's waits with it; its wake-up finds it cancelled.
    assert await mesh.waits_of(run_id) == 0
    assert executed[f"{run_id}:ship"] == 0
    # The trigger's GET /events/{id} lists the run, cancelled, and cancelled nothing.
    trigger = (await mesh.client.get(f"/events/{created}")).json()
    assert [(item["id"], item["status"]) for item in trigger["runs"]] == [(run_id, "cancelled")]
    assert trigger["cancelled"] == []


async def test_events_that_do_not_match_leave_the_run_alone(mesh: Mesh) -> None:
    created = await mesh.send("co.order.created", {"order_id": 2})
    run_id = await mesh.run_id(created, "fulfil")
    await mesh.status_is(run_id, "sleeping")

    others = [
        await mesh.send("co.order.cancelled", {"order_id": 3}),  # another order
        await mesh.send("co.order.cancelled", {"order_id": "2"}),  # "2" is not 2
        await mesh.send("co.order.cancelled", {"order_id": 2, "reason": "keep"}),  # if_ false
        await mesh.send("co.order.cancelled", {"note": "no order id"}),
        await mesh.send("co.order.refunded", {"order_id": 2}),  # another name
    ]
    for event_id in others[:4]:
        await mesh.matched(event_id)

    assert (await mesh.run(run_id))["status"] == "sleeping"
    assert await mesh.waits_of(run_id) == 1
    for event_id in others:
        assert (await mesh.client.get(f"/events/{event_id}")).json()["cancelled"] == []

    # The wait is still there for the event that does match.
    await mesh.send("co.order.cancelled", {"order_id": 2, "reason": "customer"})
    await mesh.status_is(run_id, "cancelled")


async def test_an_event_accepted_before_the_run_was_created_does_not_cancel_it(
    mesh: Mesh,
) -> None:
    early = await mesh.send("co.order.cancelled", {"order_id": 4})
    await mesh.matched(early)
    created = await mesh.send("co.order.created", {"order_id": 4})
    run_id = await mesh.run_id(created, "fulfil")
    await mesh.status_is(run_id, "sleeping")

    # Matched again now that the run exists (a job retried late): still no lookback.
    response = await mesh.client.get(f"/events/{early}")
    assert response.json()["cancelled"] == []
    assert (await execution.match_events(mesh.connection, [early])).cancelled == []
    assert (await mesh.run(run_id))["status"] == "sleeping"


async def test_a_cancel_on_lapses_after_its_timeout(mesh: Mesh) -> None:
    """Real time: the cancel_on's 2 s run out (PostgreSQL's clock), then a matching event
    arrives: it cancels nothing, and the lapsed wait is removed."""
    created = await mesh.send("co.brief.created", {"order_id": 5})
    run_id = await mesh.run_id(created, "fulfil-briefly")
    await mesh.status_is(run_id, "sleeping")
    expires_at = await mesh.connection.fetchval(
        "SELECT expires_at - created_at FROM reverb.waits WHERE run_id = $1", run_id
    )
    assert expires_at.total_seconds() == 2

    async def lapsed() -> bool:
        return bool(
            await mesh.connection.fetchval(
                "SELECT now() > expires_at FROM reverb.waits WHERE run_id = $1", run_id
            )
        )

    await eventually(lapsed, within=10, what="the cancel_on to lapse")
    late = await mesh.send("co.brief.cancelled", {"order_id": 5})
    await mesh.matched(late)

    assert (await mesh.run(run_id))["status"] == "sleeping"
    assert await mesh.waits_of(run_id) == 0


async def test_a_running_run_stops_at_its_next_step_boundary(mesh: Mesh) -> None:
    created = await mesh.send("co.pack.created", {"order_id": 6})
    run_id = await mesh.run_id(created, "pack")
    await asyncio.wait_for(gate.entered(run_id).wait(), 20)

    await mesh.send("co.pack.cancelled", {"order_id": 6})

    # Cancelled at once; the step in flight goes on.
    await mesh.status_is(run_id, "cancelled")
    gate.released(run_id).set()

    async def let_go() -> bool:
        job: int | None = await mesh.connection.fetchval(
            "SELECT job_id FROM reverb.runs WHERE id = $1", run_id
        )
        return job is None

    await eventually(let_go, within=20, what="the run's job to let it go")
    run = await mesh.run(run_id)
    assert [(step["id"], step["status"], step["output"]) for step in run["steps"]] == [
        ("pack", "completed", "packed")
    ]
    assert executed[f"{run_id}:label"] == 0
    assert run["status"] == "cancelled"


async def test_cancel_events_racing_completions_end_each_run_one_way(mesh: Mesh) -> None:
    """Many quick runs, each raced by its cancel event: a run ends completed (untouched:
    no error, no record of a cancel) or cancelled by that event, never both, and none
    keeps a wait."""
    orders = list(range(100, 130))
    created = [await mesh.send("co.quick.created", {"order_id": order}) for order in orders]
    run_ids = [await mesh.run_id(event_id, "quick") for event_id in created]
    cancels = [await mesh.send("co.quick.cancelled", {"order_id": order}) for order in orders]
    for event_id in cancels:
        await mesh.matched(event_id)

    ends = {"completed": 0, "cancelled": 0}
    for run_id, cancel in zip(run_ids, cancels, strict=True):
        run = await mesh.status_is(run_id, "completed", "cancelled")
        listed = (await mesh.client.get(f"/events/{cancel}")).json()["cancelled"]
        if run["status"] == "completed":
            assert run["output"] == 3 and run["error"] is None
            assert listed == []
        else:
            assert run["error"]["type"] == "RunCancelled" and cancel in run["error"]["message"]
            assert listed == [{"run_id": run_id, "function_id": "quick"}]
        ends[run["status"]] += 1
        assert await mesh.waits_of(run_id) == 0
    assert sum(ends.values()) == len(orders)


async def test_a_run_that_completed_first_is_untouched(mesh: Mesh) -> None:
    created = await mesh.send("co.quick.created", {"order_id": 7})
    run_id = await mesh.run_id(created, "quick")
    await mesh.status_is(run_id, "completed")
    # Its end removed its cancellation wait.
    assert await mesh.waits_of(run_id) == 0

    late = await mesh.send("co.quick.cancelled", {"order_id": 7})
    await mesh.matched(late)

    run = await mesh.run(run_id)
    assert (run["status"], run["output"], run["error"]) == ("completed", 3, None)
    assert (await mesh.client.get(f"/events/{late}")).json()["cancelled"] == []


async def test_a_paused_run_is_cancelled(mesh: Mesh) -> None:
    """A run of a paused function, parked `paused` by its claim (a wake-up due now), is
    cancelled by its event like any other."""
    created = await mesh.send("co.order.created", {"order_id": 10})
    run_id = await mesh.run_id(created, "fulfil")
    await mesh.status_is(run_id, "sleeping")
    paused = await mesh.client.post("/functions/fulfil/pause", json={})
    assert paused.status_code == 200, paused.text
    await jobs.enqueue(mesh.connection, [jobs.AdvanceRun(run_id, None)])
    await mesh.status_is(run_id, "paused")

    # Without `reason`, fulfil's if_ fails to evaluate (CEL: no such key): no match.
    unreasoned = await mesh.send("co.order.cancelled", {"order_id": 10})
    await mesh.matched(unreasoned)
    assert (await mesh.run(run_id))["status"] == "paused"
    await mesh.send("co.order.cancelled", {"order_id": 10, "reason": "customer"})

    assert (await mesh.status_is(run_id, "cancelled"))["error"]["type"] == "RunCancelled"


async def test_a_run_backing_off_before_a_retry_is_cancelled(mesh: Mesh) -> None:
    created = await mesh.send("co.charge.created", {"order_id": 9})
    run_id = await mesh.run_id(created, "charge")
    run = await mesh.status_is(run_id, "sleeping")
    assert [(step["id"], step["status"]) for step in run["steps"]] == [("charge", "retrying")]

    await mesh.send("co.order.cancelled", {"order_id": 9})

    assert (await mesh.status_is(run_id, "cancelled"))["error"]["type"] == "RunCancelled"


async def test_a_cron_run_is_cancelled_by_its_event(mesh: Mesh) -> None:
    """A cancel_on without match: any event of the name cancels the run."""
    response = await mesh.client.post("/functions/nightly-report/schedule/trigger", json={})
    assert response.status_code == 202, response.text
    [tick] = response.json()["ids"]
    run_id = await mesh.run_id(tick, "nightly-report")
    await mesh.status_is(run_id, "sleeping")

    stop = await mesh.send("co.reports.stop", {})

    run = await mesh.status_is(run_id, "cancelled")
    assert stop in run["error"]["message"]


async def test_an_invoked_run_is_cancelled_and_its_parent_sees_it(mesh: Mesh) -> None:
    """The child's trigger is its invoke's data; an event matching it cancels the child,
    and the parent's invoke step fails with RunCancelled."""
    started = await mesh.send("co.checkout", {"order_id": 8})
    parent_id = await mesh.run_id(started, "checkout")

    async def child() -> bool:
        found: str | None = await mesh.connection.fetchval(
            "SELECT id FROM reverb.runs WHERE parent_run_id = $1 AND status = 'sleeping'",
            parent_id,
        )
        return found is not None

    await eventually(child, within=20, what="the child to sleep")
    child_id = await mesh.connection.fetchval(
        "SELECT id FROM reverb.runs WHERE parent_run_id = $1", parent_id
    )

    await mesh.send("co.order.cancelled", {"order_id": 8})

    cancelled = await mesh.status_is(child_id, "cancelled")
    assert cancelled["error"]["type"] == "RunCancelled"
    parent = await mesh.status_is(parent_id, "completed")
    assert parent["output"] == {"reserve": "RunCancelled"}


async def test_a_run_whose_event_lacks_the_match_field_gets_no_cancellation_wait(
    mesh: Mesh,
) -> None:
    created = await mesh.send("co.order.created", {"sku": "no order id"})
    run_id = await mesh.run_id(created, "fulfil")
    await mesh.status_is(run_id, "sleeping")
    assert await mesh.waits_of(run_id) == 0
    flagged = await mesh.connection.fetchval(
        "SELECT cancel_waits FROM reverb.runs WHERE id = $1", run_id
    )
    assert flagged is False
    stored = await mesh.connection.fetchval(
        "SELECT cancel_on FROM reverb.functions WHERE id = 'fulfil'"
    )
    assert orjson.loads(stored)[0]["path"] == ["order_id"]
