"""`reverb send`, `runs`, `run`, `functions`, `events` against a real gateway, worker and
host (in this process, on free ports), with the CLI as a subprocess the way a user runs it."""

import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from pydantic import SecretStr

import reverb
from reverb import Context, event
from reverb_function_host import HostSettings
from reverb_function_host import start as start_host
from reverb_ingress_gateway import GatewaySettings
from reverb_ingress_gateway import start as start_gateway
from reverb_queue_worker import WorkerSettings
from reverb_queue_worker import start as start_worker
from reverb_store.control.api_keys import create_api_key
from tests import children
from tests.e2e.processes import eventually
from tests.integration.test_cli import Result, assert_user_error, run_cli

app = reverb.App("cli-test")


def greeting(name: str) -> dict[str, str]:
    return {"greeting": f"hello {name}"}


def decline() -> None:
    raise reverb.NonRetriableError("card declined")


@app.function("greet", trigger=event("cli.greet"), retries=0)
async def greet(ctx: Context) -> Any:
    return await ctx.step.run("say-hello", greeting, ctx.event.data["name"])


@app.function("charge", trigger=event("cli.charge"), retries=0)
async def charge(ctx: Context) -> None:
    await ctx.step.run("charge-card", decline)


@app.function("nap", trigger=event("cli.nap"), retries=0)
async def nap(ctx: Context) -> None:
    await ctx.step.sleep("nap", "1h")


@app.function(
    "doze",
    trigger=event("cli.doze"),
    retries=0,
    cancel_on=reverb.CancelOn("cli.doze.stop", match="data.id", timeout="30m"),
)
async def doze(ctx: Context) -> None:
    await ctx.step.sleep("doze", "1h")


@dataclass
class Engine:
    url: str
    http: httpx.AsyncClient

    async def cli(self, *args: str) -> Result:
        return await run_cli(*args, env={"REVERB_URL": self.url})

    async def finished_run(self, event_id: str) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def finished() -> bool:
            runs = (await self.http.get("/runs", params={"event": event_id})).json()["runs"]
            if runs and runs[0]["status"] in ("completed", "failed"):
                found.update(runs[0])
            return bool(found)

        await eventually(finished, what=f"the run of event {event_id}")
        return found


@asynccontextmanager
async def running_engine(database_url: str, served: reverb.App) -> AsyncIterator[Engine]:
    """A gateway, a worker and a host serving `served` (registered through the gateway)."""
    gateway = await start_gateway(
        GatewaySettings(
            database_url=database_url,
            http_address="127.0.0.1:0",
            ingress_address="127.0.0.1:0",
            dev=True,
        )
    )
    ingress = f"127.0.0.1:{gateway.grpc_port}"
    host = await start_host(
        served,
        HostSettings(
            host_address="127.0.0.1:0", ingress_address=ingress, signing_key=SecretStr("k")
        ),
    )
    worker = await start_worker(
        WorkerSettings(database_url=database_url, signing_key=SecretStr("k"))
    )
    url = f"http://127.0.0.1:{gateway.http_port}"
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            yield Engine(url, http)
    finally:
        await worker.stop()
        await host.stop()
        await gateway.stop()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[Engine]:
    async with running_engine(database_url, app) as running:
        yield running


async def test_send_prints_the_event_id_and_is_idempotent_with_an_id(engine: Engine) -> None:
    sent = await engine.cli("send", "cli.greet", "--data", '{"name": "Ada"}', "--id", "greet-1")
    assert sent.code == 0, sent
    assert sent.stdout.split() == ["greet-1"]
    again = await engine.cli("send", "cli.greet", "--data", '{"name": "Ada"}', "--id", "greet-1")
    assert again.stdout.split() == ["greet-1"]

    run = await engine.finished_run("greet-1")
    runs = (await engine.http.get("/runs", params={"event": "greet-1"})).json()["runs"]
    assert len(runs) == 1, "the same event id was accepted once"
    assert run["output"] == {"greeting": "hello Ada"}


async def test_runs_lists_runs_as_a_table_with_filters(engine: Engine) -> None:
    (greet_id,) = (await engine.cli("send", "cli.greet", "--data", '{"name": "Bo"}')).stdout.split()
    (charge_id,) = (await engine.cli("send", "cli.charge")).stdout.split()
    greet_run = await engine.finished_run(greet_id)
    charge_run = await engine.finished_run(charge_id)

    listed = await engine.cli("runs")
    assert listed.code == 0, listed
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["RUN", "FUNCTION", "STATUS", "CREATED", "DURATION"]
    by_id = {row.split()[0]: row.split() for row in rows}
    assert by_id[greet_run["id"]][1:3] == ["greet", "completed"]
    assert by_id[charge_run["id"]][1:3] == ["charge", "failed"]

    failed = await engine.cli("runs", "--status", "failed")
    assert greet_run["id"] not in failed.stdout
    assert charge_run["id"] in failed.stdout
    of_greet = await engine.cli("runs", "--function", "greet", "--limit", "1")
    assert len(of_greet.stdout.splitlines()) == 2
    assert "charge" not in of_greet.stdout
    raw = await engine.cli("runs", "--json")
    assert {item["id"] for item in json.loads(raw.stdout)["runs"]} >= {
        greet_run["id"],
        charge_run["id"],
    }


async def test_run_shows_a_timeline_of_steps(engine: Engine) -> None:
    (greet_id,) = (await engine.cli("send", "cli.greet", "--data", '{"name": "Cy"}')).stdout.split()
    run_id = (await engine.finished_run(greet_id))["id"]

    shown = await engine.cli("run", run_id)
    assert shown.code == 0, shown
    lines = shown.stdout.splitlines()
    assert f"run       {run_id}" in lines
    assert "status    completed" in lines
    assert 'output    {"greeting":"hello Cy"}' in lines
    step = next(line for line in lines if line.startswith("say-hello"))
    assert step.split()[:3] == ["say-hello", "run", "completed"]
    assert step.endswith('{"greeting":"hello Cy"}')

    raw = await engine.cli("run", run_id, "--json")
    body = json.loads(raw.stdout)
    assert body["id"] == run_id
    assert [step["id"] for step in body["steps"]] == ["say-hello"]


async def test_run_shows_the_error_of_a_failed_step(engine: Engine) -> None:
    (charge_id,) = (await engine.cli("send", "cli.charge")).stdout.split()
    run_id = (await engine.finished_run(charge_id))["id"]
    shown = await engine.cli("run", run_id)
    assert "status    failed" in shown.stdout
    step = next(line for line in shown.stdout.splitlines() if line.startswith("charge-card"))
    assert "failed" in step.split()
    assert "NonRetriableError: card declined" in step


async def test_an_unknown_run_is_an_api_error(engine: Engine) -> None:
    assert_user_error(await engine.cli("run", "no-such-run"), "error: not_found: ")


async def test_functions_and_events(engine: Engine) -> None:
    listed = await engine.cli("functions")
    assert listed.code == 0, listed
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert set(rows) == {"greet", "charge", "nap", "doze"}
    assert "event cli.greet" in rows["greet"]
    assert rows["greet"].split()[1] == "cli-test"
    # The CANCEL ON column: the function's cancel_on, "-" without.
    header = listed.stdout.splitlines()[0]
    column = header.index("CANCEL ON")
    assert rows["greet"][column:].split()[0] == "-"
    assert rows["doze"][column:].startswith("cli.doze.stop match data.id within 30m ")

    await engine.cli("send", "cli.greet", "--data", '{"name": "Di"}', "--id", "listed-event")
    events = await engine.cli("events", "--name", "cli.greet")
    assert events.code == 0, events
    row = next(line for line in events.stdout.splitlines() if line.startswith("listed-event"))
    assert row.split()[1] == "cli.greet"
    assert row.endswith('{"name":"Di"}')


@pytest.fixture
async def secured_gateway(database_url: str) -> AsyncIterator[tuple[str, str]]:
    """A gateway outside dev mode, and a valid API key for it."""
    connection = await asyncpg.connect(database_url)
    try:
        _, key = await create_api_key(connection, "cli-test", ["read"])
    finally:
        await connection.close()
    gateway = await start_gateway(
        GatewaySettings(
            database_url=database_url, http_address="127.0.0.1:0", ingress_address="127.0.0.1:0"
        )
    )
    try:
        yield f"http://127.0.0.1:{gateway.http_port}", key
    finally:
        await gateway.stop()


async def test_the_api_key_is_sent_as_a_bearer_token(secured_gateway: tuple[str, str]) -> None:
    url, key = secured_gateway
    refused = await run_cli("functions", env={"REVERB_URL": url})
    assert_user_error(refused, "error: unauthenticated: ")
    wrong = await run_cli("functions", env={"REVERB_URL": url, "REVERB_API_KEY": "rvb_wrong"})
    assert_user_error(wrong, "error: unauthenticated: ")
    accepted = await run_cli("functions", env={"REVERB_URL": url, "REVERB_API_KEY": key})
    assert accepted.code == 0, accepted
    assert accepted.stdout.strip() == "no functions registered"


async def test_cancel_a_run_and_a_functions_runs_in_a_range(engine: Engine) -> None:
    async def sleeping_run(event_id: str) -> str:
        found: list[str] = []

        async def asleep() -> bool:
            runs = (await engine.http.get("/runs", params={"event": event_id})).json()["runs"]
            if runs and runs[0]["status"] == "sleeping":
                found.append(runs[0]["id"])
            return bool(found)

        await eventually(asleep, what=f"the run of event {event_id} to sleep")
        return found[0]

    for name in ("nap-1", "nap-2", "nap-3"):
        assert (await engine.cli("send", "cli.nap", "--id", name)).code == 0
    first = await sleeping_run("nap-1")
    await sleeping_run("nap-2")
    await sleeping_run("nap-3")

    one = await engine.cli("cancel", first)
    assert one.code == 0, one
    assert one.stdout.split() == [first, "cancelled"]

    bulk = await engine.cli(
        "cancel", "--function", "nap", "--from", "2000-01-01T00:00:00Z", "--to", "2100-01-01"
    )
    assert bulk.code == 0, bulk
    assert bulk.stdout.strip() == "cancelled 2 runs"
    runs = (await engine.http.get("/runs", params={"function": "nap"})).json()["runs"]
    assert [run["status"] for run in runs] == ["cancelled"] * 3

    ended = await engine.cli("cancel", first)
    assert ended.code == 0, "cancelling a cancelled run again is not an error"
    assert_user_error(await engine.cli("cancel"), "RUN_ID")
    assert_user_error(await engine.cli("cancel", "--function", "nap"), "--from")


async def test_pause_and_resume_a_function(engine: Engine) -> None:
    paused = await engine.cli("pause", "greet")
    assert paused.code == 0, paused
    assert paused.stdout.startswith("greet paused since ")
    listed = await engine.cli("functions")
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    # The PAUSED column, then NEXT (UTC) ("-": no cron trigger).
    assert rows["greet"].split()[-2:] == ["paused", "-"]
    assert "paused" not in rows["charge"].split()

    sent = await engine.cli("send", "cli.greet", "--data", '{"name": "Bo"}', "--id", "while-paused")
    assert sent.code == 0, sent

    async def skipped() -> bool:
        event = (await engine.http.get("/events/while-paused")).json()
        return bool(event["skipped"])

    await eventually(skipped, what="the event to be skipped")

    resumed = await engine.cli("resume", "greet", "--replay-skipped")
    assert resumed.code == 0, resumed
    assert resumed.stdout.strip() == (
        "greet resumed: 0 paused run(s) go on, 1 skipped run(s) started"
    )
    run = await engine.finished_run("while-paused")
    assert run["output"] == {"greeting": "hello Bo"}
    assert_user_error(await engine.cli("pause", "no-such-function"), "not_found")


async def _logged(engine: Engine, run_id: str, kind: str) -> None:
    async def written() -> bool:
        body = (await engine.http.get(f"/logs/functions/{run_id}")).json()
        return any(
            document["kind"] == kind
            for item in body.get("logs", [])
            for key, document in item.items()
            if key != "links"
        )

    await eventually(written, what=f"{kind} of run {run_id} in the logs")


async def test_logs_prints_a_runs_logs_and_filters_by_level_and_age(engine: Engine) -> None:
    greeted = await engine.finished_run(
        (await engine.cli("send", "cli.greet", "--data", '{"name": "Ada"}')).stdout.strip()
    )
    charged = await engine.finished_run((await engine.cli("send", "cli.charge")).stdout.strip())
    await _logged(engine, greeted["id"], "run.completed")
    await _logged(engine, charged["id"], "run.dead_lettered")

    own = await engine.cli("logs", "--run", greeted["id"])
    assert own.code == 0, own
    lines = own.stdout.splitlines()
    assert "run.started" in lines[0] and "run.completed" in lines[-1]
    assert all(greeted["id"] in line for line in lines)
    assert any("[say-hello]" in line and "step.completed" in line for line in lines)

    errors = await engine.cli("logs", "--level", "error", "--since", "1h")
    assert errors.code == 0, errors
    assert errors.stdout.splitlines() and all(
        "error" in line for line in errors.stdout.splitlines()
    )
    assert "StepError" in errors.stdout and greeted["id"] not in errors.stdout

    old = await engine.cli("logs", "--since", "0s")
    assert old.stdout.strip() == "no logs"
    bad = await engine.cli("logs", "--since", "a while")
    assert bad.code == 2 and "duration" in bad.stderr


async def test_logs_follow_prints_new_logs_as_they_come(engine: Engine, tmp_path: Path) -> None:
    output = tmp_path / "follow.txt"
    clean = {key: value for key, value in os.environ.items() if not key.startswith("REVERB_")}
    with output.open("wb") as sink:
        follower = await children.spawn(
            sys.executable,
            "-m",
            "reverb_cli",
            "logs",
            "--follow",
            "--interval",
            "0.1",
            env={**clean, "REVERB_URL": engine.url},
            stdout=sink,
            stderr=children.PIPE,
        )
    try:
        for name in ("Ada", "Grace"):
            sent = await engine.cli(
                "send", "cli.greet", "--data", orjson.dumps({"name": name}).decode()
            )
            run = await engine.finished_run(sent.stdout.strip())

            async def printed(run_id: str = run["id"]) -> bool:
                text = output.read_text()
                return any(run_id in line and "run.completed" in line for line in text.splitlines())

            await eventually(printed, what=f"reverb logs --follow to print run {run['id']}")
    finally:
        follower.send_signal(signal.SIGTERM)
        await follower.wait()


async def test_a_run_cancelled_by_its_cancel_on_says_by_which_event(engine: Engine) -> None:
    assert (await engine.cli("send", "cli.doze", "--data", '{"id": 7}', "--id", "doze-7")).code == 0

    async def asleep() -> bool:
        runs = (await engine.http.get("/runs", params={"event": "doze-7"})).json()["runs"]
        return bool(runs) and runs[0]["status"] == "sleeping"

    await eventually(asleep, what="the doze run to sleep")
    (run,) = (await engine.http.get("/runs", params={"event": "doze-7"})).json()["runs"]
    assert run.get("cancelled_by") is None
    stop = await engine.cli("send", "cli.doze.stop", "--data", '{"id": 7}', "--id", "stop-7")
    assert stop.code == 0, stop

    async def cancelled() -> bool:
        shown = (await engine.http.get(f"/runs/{run['id']}")).json()
        return bool(shown["status"] == "cancelled")

    await eventually(cancelled, what="the doze run to be cancelled")
    shown = await engine.cli("run", run["id"])
    assert shown.code == 0, shown
    assert "cancelled by event stop-7 (cli.doze.stop), cancel_on[0]" in shown.stdout
    body = orjson.loads((await engine.cli("run", run["id"], "--json")).stdout)
    assert body["cancelled_by"] == {
        "event_id": "stop-7",
        "event_name": "cli.doze.stop",
        "cancel_on": 0,
    }
