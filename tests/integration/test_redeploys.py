"""Redeploys with runs in flight: a run sleeping across a re-registration with changed code
keeps working (its memo is matched by step id), a run whose function a redeploy removed
fails with FunctionRemoved instead of hanging, and `reverb check` lists the runs in flight
(sleeping, waiting for an event, or with a step retrying) the new code would not replay in
the same order.

Real parts: a gateway (dev mode) on free ports, function hosts registering through it, a
worker, PostgreSQL, and the CLI as a subprocess. A sleep of an hour "passes" when the test
moves its step's wake-up to now and wakes the run (the clock the test drives)."""

import textwrap
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

import reverb
from reverb import Context, event
from reverb_cli.app_loading import load_app
from reverb_function_host import Host, HostSettings
from reverb_function_host import start as start_host
from reverb_ingress_gateway import Gateway
from reverb_queue_worker import Worker
from reverb_queue_worker import start as start_worker
from reverb_store import jobs
from tests.e2e.processes import eventually
from tests.integration.test_cli import run_cli
from tests.integration.test_worker_runs import SIGNING_KEY, worker_settings

calls: Counter[str] = Counter()


def shop(version: int) -> reverb.App:
    """The app as deployed: v2 adds a step before and one after the sleep, and a function;
    v3 removes `legacy`."""
    app = reverb.App("shop")

    def charge() -> str:
        calls["charge"] += 1
        return "charged"

    @app.function("order", trigger=event("order.placed"))
    async def order(ctx: Context) -> list[Any]:
        done: list[Any] = []
        if version >= 2:
            done.append(await ctx.step.run("audit", lambda: "audited"))
        done.append(await ctx.step.run("charge", charge))
        await ctx.step.sleep("cool-off", "1h")
        done.append(await ctx.step.run("ship", lambda: "shipped"))
        if version >= 2:
            done.append(await ctx.step.run("notify", lambda: "notified"))
        return done

    if version < 3:

        @app.function("legacy", trigger=event("legacy.started"))
        async def legacy(ctx: Context) -> None:
            await ctx.step.sleep("forever", "1h")

    if version >= 2:

        @app.function("refund", trigger=event("order.refunded"))
        async def refund(ctx: Context) -> None:
            return None

    return app


@dataclass
class Deployment:
    gateway: Gateway
    connection: asyncpg.Connection
    http: httpx.AsyncClient
    deploy: Callable[[reverb.App], Awaitable[Host]]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.http_port}"

    async def send(self, name: str) -> str:
        return await self.send_data(name, {})

    async def send_data(self, name: str, data: dict[str, Any]) -> str:
        response = await self.http.post("/events", json={"name": name, "data": data})
        assert response.status_code == 202, response.text
        ids: list[str] = response.json()["ids"]
        return ids[0]

    async def run_in(self, event_id: str, *statuses: str) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def there() -> bool:
            runs = (await self.http.get("/runs", params={"event": event_id})).json()["runs"]
            if runs and runs[0]["status"] in statuses:
                found.update((await self.http.get(f"/runs/{runs[0]['id']}")).json())
            return bool(found)

        await eventually(there, within=20, what=f"the run of {event_id} to be {statuses}")
        return found

    async def wake_now(self, run_id: str) -> None:
        """An hour passes for the run: its sleep is due now, and it is woken."""
        async with self.connection.transaction():
            await self.connection.execute(
                "UPDATE reverb.steps SET wake_at = now() WHERE run_id = $1 AND status = 'sleeping'",
                run_id,
            )
            await jobs.enqueue(self.connection, [jobs.AdvanceRun(run_id)])


@pytest.fixture
def backoff_base() -> timedelta:
    """The worker's first retry delay: a test that needs a step to stay retrying
    parametrizes it to an hour."""
    return worker_settings("postgresql://unused").backoff_base


@pytest.fixture
async def deployment(
    gateway: Gateway, database_url: str, connection: asyncpg.Connection, backoff_base: timedelta
) -> AsyncIterator[Deployment]:
    hosts: list[Host] = []

    async def deploy(app: reverb.App) -> Host:
        """Stop the hosts serving the app now, then serve `app` (registered)."""
        while hosts:
            await hosts.pop().stop()
        settings = HostSettings(
            host_address="127.0.0.1:0",
            ingress_address=f"127.0.0.1:{gateway.grpc_port}",
            signing_key=SIGNING_KEY,
        )
        host = await start_host(app, settings)
        hosts.append(host)
        await host.registered.wait()
        return host

    settings = worker_settings(database_url).model_copy(update={"backoff_base": backoff_base})
    worker: Worker = await start_worker(settings)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http:
            yield Deployment(gateway, connection, http, deploy)
    finally:
        await worker.stop()
        for host in hosts:
            await host.stop()


async def test_a_sleeping_run_survives_a_redeploy_that_adds_steps(deployment: Deployment) -> None:
    calls.clear()
    await deployment.deploy(shop(1))
    first_hash = await deployment.connection.fetchval(
        "SELECT definition_hash FROM reverb.apps WHERE id = 'shop'"
    )
    event_id = await deployment.send("order.placed")
    sleeping = await deployment.run_in(event_id, "sleeping")
    assert [step["id"] for step in sleeping["steps"]] == ["charge", "cool-off"]

    await deployment.deploy(shop(2))  # a changed definition: `refund` is new
    assert first_hash != await deployment.connection.fetchval(
        "SELECT definition_hash FROM reverb.apps WHERE id = 'shop'"
    )
    await deployment.wake_now(sleeping["id"])
    run = await deployment.run_in(event_id, "completed", "failed")

    assert run["status"] == "completed", run
    assert run["output"] == ["audited", "charged", "shipped", "notified"]
    assert calls["charge"] == 1  # the recorded step was not run again
    assert sorted(step["id"] for step in run["steps"]) == [
        "audit",
        "charge",
        "cool-off",
        "notify",
        "ship",
    ]


def checkout(version: int) -> reverb.App:
    """v1 reserves, sleeps, then waits for the payment and ships. v2 inserts `audit`
    just before the sleep (before where a sleeping run stands) and `invoice` right after
    the payment's wait (after where a waiting run stands)."""
    app = reverb.App("checkout")

    def counted(name: str) -> Callable[[], str]:
        def step() -> str:
            calls[name] += 1
            return name

        return step

    @app.function("checkout", trigger=event("checkout.started"))
    async def run_checkout(ctx: Context) -> dict[str, Any]:
        done = [await ctx.step.run("reserve", counted("reserve"))]
        if version >= 2:
            done.append(await ctx.step.run("audit", counted("audit")))
        await ctx.step.sleep("cool-off", "1h")
        paid = await ctx.step.wait_for_event(
            "paid", event="checkout.paid", match="data.order", timeout="1d"
        )
        if version >= 2:
            done.append(await ctx.step.run("invoice", counted("invoice")))
        done.append(await ctx.step.run("ship", counted("ship")))
        return {"done": done, "paid": None if paid is None else paid.data}

    return app


async def _order(deployment: Deployment, order: int) -> str:
    body = {"name": "checkout.started", "data": {"order": order}}
    response = await deployment.http.post("/events", json=body)
    assert response.status_code == 202, response.text
    ids: list[str] = response.json()["ids"]
    return ids[0]


async def test_a_step_added_before_a_sleeping_runs_position_runs_once_when_it_resumes(
    deployment: Deployment,
) -> None:
    calls.clear()
    await deployment.deploy(checkout(1))
    event_id = await _order(deployment, 1)
    sleeping = await deployment.run_in(event_id, "sleeping")
    assert [step["id"] for step in sleeping["steps"]] == ["reserve", "cool-off"]

    # v2 has `audit` between `reserve` and the sleep, where the run already passed.
    await deployment.deploy(checkout(2))
    await deployment.wake_now(sleeping["id"])
    waiting = await deployment.run_in(event_id, "waiting")
    # On resuming, the new code reaches `audit` first: it runs then, once, after the
    # steps recorded before it (`reserve` is replayed, not run again).
    assert [step["id"] for step in waiting["steps"]] == ["reserve", "cool-off", "audit", "paid"]
    assert (calls["reserve"], calls["audit"]) == (1, 1)

    paid = {"name": "checkout.paid", "data": {"order": 1, "amount": 5}}
    assert (await deployment.http.post("/events", json=paid)).status_code == 202
    run = await deployment.run_in(event_id, "completed", "failed")
    assert run["status"] == "completed", run
    assert run["output"] == {
        "done": ["reserve", "audit", "invoice", "ship"],
        "paid": {"order": 1, "amount": 5},
    }
    # Each step ran once over the run's two invocations after the redeploy.
    assert calls == Counter(reserve=1, audit=1, invoice=1, ship=1)
    assert [step["id"] for step in run["steps"]] == [
        "reserve",
        "cool-off",
        "audit",
        "paid",
        "invoice",
        "ship",
    ]


async def test_a_step_added_after_a_waiting_runs_position_runs_when_it_gets_there(
    deployment: Deployment,
) -> None:
    calls.clear()
    await deployment.deploy(checkout(1))
    event_id = await _order(deployment, 2)
    sleeping = await deployment.run_in(event_id, "sleeping")
    await deployment.wake_now(sleeping["id"])
    waiting = await deployment.run_in(event_id, "waiting")
    assert [step["id"] for step in waiting["steps"]] == ["reserve", "cool-off", "paid"]

    # The redeploy lands while the run waits for its payment; v2's `invoice` comes
    # right after the wait (and `audit`, before the sleep, runs on resuming too).
    await deployment.deploy(checkout(2))
    paid = {"name": "checkout.paid", "data": {"order": 2, "amount": 7}}
    assert (await deployment.http.post("/events", json=paid)).status_code == 202
    run = await deployment.run_in(event_id, "completed", "failed")

    assert run["status"] == "completed", run
    assert run["output"] == {
        "done": ["reserve", "audit", "invoice", "ship"],
        "paid": {"order": 2, "amount": 7},
    }
    assert calls == Counter(reserve=1, audit=1, invoice=1, ship=1)
    assert [step["id"] for step in run["steps"]] == [
        "reserve",
        "cool-off",
        "paid",
        "audit",
        "invoice",
        "ship",
    ]


async def test_a_run_whose_function_was_removed_fails_with_function_removed(
    deployment: Deployment,
) -> None:
    await deployment.deploy(shop(2))
    event_id = await deployment.send("legacy.started")
    sleeping = await deployment.run_in(event_id, "sleeping")

    # v3 no longer has `legacy`: the run sleeping for an hour fails now, not in an hour.
    await deployment.deploy(shop(3))
    run = await deployment.run_in(event_id, "failed", "completed")

    assert run["id"] == sleeping["id"]
    assert run["status"] == "failed"
    assert run["error"]["type"] == "FunctionRemoved"
    assert "'legacy'" in run["error"]["message"]
    functions = (await deployment.http.get("/functions")).json()["functions"]
    assert "legacy" not in {function["id"] for function in functions}


DEPLOYED = """
import reverb
from reverb import Context, event

app = reverb.App("drift")


@app.function("signup", trigger=event("user.created"))
async def signup(ctx: Context) -> str:
    user = await ctx.step.run("{create}", lambda: {{"id": ctx.event.data["n"]}})
    {before}
    await ctx.step.sleep("wait-a-day", "1d")
    await ctx.step.run("welcome", lambda: user["id"])
    {after}
    return "done"
"""


def write_app(
    folder: Path, name: str, create: str = "create-user", after: str = "", before: str = ""
) -> Path:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(DEPLOYED.format(create=create, after=after, before=before)))
    return path


async def test_reverb_check_lists_the_runs_the_new_code_would_not_replay(
    deployment: Deployment, tmp_path: Path
) -> None:
    deployed = write_app(tmp_path, "drift_deployed")
    await deployment.deploy(load_app(str(deployed)))
    body = {"name": "user.created", "data": {"n": 7}}
    response = await deployment.http.post("/events", json=body)
    (event_id,) = response.json()["ids"]
    sleeping = await deployment.run_in(event_id, "sleeping")
    env = {"REVERB_URL": deployment.url}

    # A step added after the sleep: the run replays its recorded steps in order.
    compatible = write_app(
        tmp_path, "drift_compatible", after='await ctx.step.run("survey", lambda: 1)'
    )
    passed = await run_cli("check", str(compatible), env=env)
    assert passed.code == 0, passed
    assert "1 runs in flight of app 'drift': none would drift" in passed.stdout

    # A step added before the sleep the run is in: the engine would run it on resuming,
    # but the check cannot run it to learn its output, so it cannot replay past it: the
    # run is listed, and the message says so (README, "Redeploys").
    before = write_app(tmp_path, "drift_before", before='await ctx.step.run("audit", lambda: 1)')
    listed = await run_cli("check", str(before), env=env)
    assert listed.code == 1, listed
    assert "'wait-a-day' not reached: the code reaches new step(s) 'audit' first" in (listed.stdout)

    # The first step renamed: the recorded `create-user` would never be reached again.
    renamed = write_app(tmp_path, "drift_renamed", create="make-user")
    failed = await run_cli("check", str(renamed), env=env)
    assert failed.code == 1, failed
    assert sleeping["id"] in failed.stdout
    assert "'create-user', 'wait-a-day' not reached" in failed.stdout
    assert "'make-user'" in failed.stdout
    assert "1 of 1 runs in flight of app 'drift' would drift" in failed.stdout
    assert "Traceback" not in failed.stderr

    # The run is untouched: the check ran no step.
    after = (await deployment.http.get(f"/runs/{sleeping['id']}")).json()
    assert (after["status"], after["steps"]) == ("sleeping", sleeping["steps"])


WAITING = """
import reverb
from reverb import Context, event

app = reverb.App("approvals")


@app.function("expense", trigger=event("expense.filed"))
async def expense(ctx: Context) -> bool:
    await ctx.step.run("record", lambda: ctx.event.data["n"])
    approval = await ctx.step.wait_for_event("{wait}", "expense.approved", timeout="1d")
    {after}
    return approval is not None
"""


async def _check(deployment: Deployment, folder: Path, name: str, source: str) -> Any:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return await run_cli("check", str(path), env={"REVERB_URL": deployment.url})


async def test_reverb_check_replays_a_run_waiting_for_an_event(
    deployment: Deployment, tmp_path: Path
) -> None:
    deployed = tmp_path / "approvals_deployed.py"
    deployed.write_text(WAITING.format(wait="approval", after=""))
    await deployment.deploy(load_app(str(deployed)))
    event_id = await deployment.send_data("expense.filed", {"n": 3})
    waiting = await deployment.run_in(event_id, "waiting")
    assert [(s["id"], s["status"]) for s in waiting["steps"]] == [
        ("record", "completed"),
        ("approval", "waiting"),
    ]

    # A step added after the wait: the replay stops at the pending wait, as the run does.
    compatible = WAITING.format(wait="approval", after='await ctx.step.run("pay", lambda: 1)')
    passed = await _check(deployment, tmp_path, "approvals_compatible", compatible)
    assert passed.code == 0, passed
    assert "1 runs in flight of app 'approvals': none would drift" in passed.stdout

    # The wait renamed: the recorded wait would never be reached, the new one would wait anew.
    renamed = WAITING.format(wait="approved", after="")
    listed = await _check(deployment, tmp_path, "approvals_renamed", renamed)
    assert listed.code == 1, listed
    assert waiting["id"] in listed.stdout
    assert "'approval' not reached: the code reaches new step(s) 'approved' first" in (
        listed.stdout
    )
    assert "1 of 1 runs in flight of app 'approvals' would drift" in listed.stdout
    assert "Traceback" not in listed.stderr

    # The check neither resolved nor touched the wait.
    after = (await deployment.http.get(f"/runs/{waiting['id']}")).json()
    assert (after["status"], after["steps"]) == ("waiting", waiting["steps"])


RETRYING = """
import reverb
from reverb import Context, event

app = reverb.App("billing")


def charge() -> str:
    raise RuntimeError("card declined")


@app.function("invoice", trigger=event("invoice.due"))
async def invoice(ctx: Context) -> str:
    await ctx.step.run("create-invoice", lambda: ctx.event.data["n"])
    await ctx.step.run("{charge}", charge)
    {after}
    return "paid"
"""


@pytest.mark.parametrize("backoff_base", [timedelta(hours=1)])
async def test_reverb_check_replays_a_run_whose_step_is_retrying(
    deployment: Deployment, tmp_path: Path
) -> None:
    deployed = tmp_path / "billing_deployed.py"
    deployed.write_text(RETRYING.format(charge="charge", after=""))
    await deployment.deploy(load_app(str(deployed)))
    event_id = await deployment.send_data("invoice.due", {"n": 4})
    found: dict[str, Any] = {}

    async def retrying() -> bool:
        run = await deployment.run_in(event_id, "queued", "running", "sleeping")
        # The step's failure is checkpointed before its invocation ends, so the
        # run reads "running" with the step "retrying" for a moment; wait for
        # the invocation to have suspended the run too.
        if run["status"] == "sleeping" and [(s["id"], s["status"]) for s in run["steps"]] == [
            ("create-invoice", "completed"),
            ("charge", "retrying"),
        ]:
            found.update(run)
        return bool(found)

    # The charge failed once; its retry is an hour away (the worker's backoff).
    await eventually(retrying, within=20, what="the run to sleep until the charge's retry")

    # A step added after the retrying one: the replay stops at the pending retry.
    compatible = RETRYING.format(charge="charge", after='await ctx.step.run("receipt", lambda: 1)')
    passed = await _check(deployment, tmp_path, "billing_compatible", compatible)
    assert passed.code == 0, passed
    assert "1 runs in flight of app 'billing': none would drift" in passed.stdout

    # The retrying step renamed: its recorded attempt would never be reached again.
    renamed = RETRYING.format(charge="charge-card", after="")
    listed = await _check(deployment, tmp_path, "billing_renamed", renamed)
    assert listed.code == 1, listed
    assert found["id"] in listed.stdout
    assert "'charge' not reached: the code reaches new step(s) 'charge-card' first" in (
        listed.stdout
    )
    assert "1 of 1 runs in flight of app 'billing' would drift" in listed.stdout
    assert "Traceback" not in listed.stderr

    # The check ran no step: the retry is still the one scheduled.
    after = (await deployment.http.get(f"/runs/{found['id']}")).json()
    assert (after["status"], after["steps"]) == ("sleeping", found["steps"])
