"""Commands that talk to a running gateway over HTTP: send, runs, run, functions, events."""

from typing import Any
from urllib.parse import quote

import click
import orjson

from reverb_cli.client import ApiClient, data_option
from reverb_cli.render import (
    cancel_on_text,
    compact_json,
    duration,
    next_fire,
    run_timeline,
    short_time,
    table,
    triggers_text,
    truncate,
)
from reverb_cli.settings import ClientSettings, build

RUN_STATUSES = (
    "queued",
    "running",
    "sleeping",
    "waiting",
    "paused",
    "completed",
    "failed",
    "cancelled",
)


def client_from_settings() -> ApiClient:
    """A client of the gateway the environment names (REVERB_URL, REVERB_API_KEY)."""
    return ApiClient(build(ClientSettings))


@click.command()
@click.argument("name")
@click.option("--data", "data_text", default="{}", show_default=True, help="A JSON object.")
@click.option("--id", "event_id", default=None, help="An idempotency id for the event.")
def send(name: str, data_text: str, event_id: str | None) -> None:
    """Send an event named NAME; print its id."""
    event: dict[str, Any] = {"name": name, "data": data_option(data_text)}
    if event_id is not None:
        event["id"] = event_id
    with client_from_settings() as client:
        body = client.post("/events", event)
    for accepted in body["ids"]:
        click.echo(accepted)


@click.command()
@click.option("--function", "function_id", default=None, help="Only runs of this function.")
@click.option("--status", type=click.Choice(RUN_STATUSES), default=None, help="Only this status.")
@click.option("--event", "event_id", default=None, help="Only runs this event triggered.")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def runs(
    function_id: str | None, status: str | None, event_id: str | None, limit: int, as_json: bool
) -> None:
    """List runs, newest first."""
    params: dict[str, str | int] = {"limit": limit}
    for key, value in (("function", function_id), ("status", status), ("event", event_id)):
        if value is not None:
            params[key] = value
    with client_from_settings() as client:
        body = client.get("/runs", params)
    if as_json:
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        return
    found = body["runs"][:limit]
    if not found:
        click.echo("no runs")
        return
    rows = [
        [
            run["id"],
            run["function_id"],
            run["status"],
            short_time(run.get("created_at")),
            duration(run.get("started_at"), run.get("ended_at")),
        ]
        for run in found
    ]
    click.echo(table(["RUN", "FUNCTION", "STATUS", "CREATED", "DURATION"], rows))


@click.command()
@click.argument("run_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def run(run_id: str, as_json: bool) -> None:
    """Show a run and its steps."""
    with client_from_settings() as client:
        body = client.get(f"/runs/{quote(run_id, safe='')}")
    if as_json:
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(run_timeline(body))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def functions(as_json: bool) -> None:
    """List the registered functions, their triggers and what cancels their runs."""
    with client_from_settings() as client:
        body = client.get("/functions")
    if as_json:
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        return
    found = body["functions"]
    if not found:
        click.echo("no functions registered")
        return
    rows = [
        [
            function["id"],
            function.get("app_id", "-"),
            triggers_text(function),
            cancel_on_text(function),
            str(function["retries"]),
            "paused" if function.get("paused") else "",
            short_time(next_fire(function)),
        ]
        for function in found
    ]
    click.echo(
        table(["FUNCTION", "APP", "TRIGGERS", "CANCEL ON", "RETRIES", "PAUSED", "NEXT (UTC)"], rows)
    )


@click.command()
@click.option("--name", default=None, help="Only events with this name.")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def events(name: str | None, limit: int, as_json: bool) -> None:
    """List received events, newest first."""
    params: dict[str, str | int] = {"limit": limit}
    if name is not None:
        params["name"] = name
    with client_from_settings() as client:
        body = client.get("/events", params)
    if as_json:
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        return
    found = body["events"][:limit]
    if not found:
        click.echo("no events")
        return
    rows = [
        [
            event["id"],
            event["name"],
            short_time(event.get("received_at")),
            truncate(compact_json(event.get("data")), 60),
        ]
        for event in found
    ]
    click.echo(table(["EVENT", "NAME", "RECEIVED", "DATA"], rows))
