"""`reverb check APP`: the drift check to run before a deploy.

Every run in flight of the app (queued, running, sleeping, waiting: a run with a
step retrying is sleeping) is read through the gateway's HTTP API (GET /runs,
GET /runs/{id} with its steps, GET /events/{id}; an API key with the read scope)
and its memo is replayed against the code APP loads, offline: no step runs
(`reverb.execution.replay`). A run is listed when the code would not reach its
recorded steps in the same order, or when the code no longer has its function.
Exit status 1 if any run is listed, 0 otherwise.
"""

import asyncio
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import click
import orjson

import reverb
from reverb import Event
from reverb.execution import ErrorInfo, Invocation, MemoizedStep, drift, replay
from reverb_cli.app_loading import AppLoadError, load_app
from reverb_cli.client import ApiClient
from reverb_cli.errors import CliError
from reverb_cli.render import table
from reverb_cli.settings import ClientSettings, build

IN_FLIGHT = "queued,running,sleeping,waiting"
_PAGE = 500
# Step statuses whose step still waits: replayed as pending, as the engine does.
_WAITING = frozenset({"sleeping", "waiting", "retrying"})


@click.command()
@click.argument("app_spec", metavar="APP")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def check(app_spec: str, as_json: bool) -> None:
    """Replay the runs in flight of APP's app against APP's code (no step runs); list
    every run whose recorded steps the code would not reach in the same order.

    APP is the module path `reverb host` takes. Exit status 1 if any run is listed.
    Reads REVERB_URL and REVERB_API_KEY (a key with the read scope)."""
    try:
        app = load_app(app_spec)
    except AppLoadError as error:
        raise CliError(str(error)) from None
    with ApiClient(build(ClientSettings)) as client:
        findings, checked = _check(client, app)
    if as_json:
        body = {"app_id": app.id, "checked": checked, "drifted": findings}
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    elif findings:
        rows = [[f["run_id"], f["function_id"], f["status"], f["reason"]] for f in findings]
        click.echo(table(["RUN", "FUNCTION", "STATUS", "WHY"], rows))
        click.echo(f"{len(findings)} of {checked} runs in flight of app {app.id!r} would drift")
    else:
        click.echo(f"{checked} runs in flight of app {app.id!r}: none would drift")
    if findings:
        raise SystemExit(1)


def _check(client: ApiClient, app: reverb.App) -> tuple[list[dict[str, str]], int]:
    findings: list[dict[str, str]] = []
    checked = 0
    for summary in _runs_in_flight(client, app.id):
        checked += 1
        run = client.get(f"/runs/{quote(summary['id'], safe='')}")
        reason = _reason(client, app, run)
        if reason is not None:
            findings.append(
                {
                    "run_id": run["id"],
                    "function_id": run["function_id"],
                    "status": run["status"],
                    "reason": reason,
                }
            )
    return findings, checked


def _runs_in_flight(client: ApiClient, app_id: str) -> Iterator[dict[str, Any]]:
    params: dict[str, str | int] = {"status": IN_FLIGHT, "limit": _PAGE}
    while True:
        body = client.get("/runs", params)
        for run in body.get("runs", []):
            if run.get("app_id") == app_id:
                yield run
        cursor = body.get("next_cursor")
        if not cursor:
            return
        params["cursor"] = cursor


def _reason(client: ApiClient, app: reverb.App, run: dict[str, Any]) -> str | None:
    definition = app.functions.get(run["function_id"])
    if definition is None:
        return "the code no longer has this function: the run would fail with FunctionRemoved"
    steps = run.get("steps", [])
    events = tuple(_event(client, event_id) for event_id in run.get("event_ids", []))
    invocation = Invocation(
        run_id=run["id"],
        function_id=run["function_id"],
        events=events,
        memo=tuple(_memo(step) for step in steps),
        attempt=int(run.get("attempt", 0)),
    )
    replayed = asyncio.run(replay(definition, invocation))
    return drift([step["id"] for step in steps], replayed)


def _memo(step: dict[str, Any]) -> MemoizedStep:
    if step.get("status") in _WAITING:
        return MemoizedStep(step["id"], pending=True)
    error = step.get("error")
    if step.get("status") == "failed" and isinstance(error, dict):
        info = ErrorInfo(str(error.get("type", "")), str(error.get("message", "")))
        return MemoizedStep(step["id"], error=info)
    return MemoizedStep(step["id"], output=orjson.dumps(step.get("output")))


def _event(client: ApiClient, event_id: str) -> Event:
    body = client.get(f"/events/{quote(event_id, safe='')}")
    data = body.get("data")
    return Event(
        id=body["id"],
        name=body["name"],
        data=data if isinstance(data, dict) else {},
        ts=datetime.fromisoformat(body["ts"]),
    )
